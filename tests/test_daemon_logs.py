"""The daemon's log reads as its operator's day: timestamps in a chosen or the report's time zone
(`--log-tz`), no matplotlib font-cache chatter, and a recovered alert logged as a recovery.

Real `dispatcher run` processes against a sandbox on an ephemeral port, and a real SQLite source.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dispatcher import logs
from dispatcher.sandbox import Sandbox
from tests import daemon_harness
from tests.daemon_harness import REPO, Daemons, project, report

sandbox, state_url, daemons = daemon_harness.sandbox, daemon_harness.state_url, daemon_harness.daemons

KOLKATA = timedelta(hours=5, minutes=30)  # no daylight saving: the test holds on any date
SHANGHAI = timedelta(hours=8)


def test_a_recovered_alert_is_logged_as_recovered_in_its_reports_zone(
    sandbox: Sandbox, state_url: str, tmp_path: Path, daemons: Daemons
) -> None:
    alarm = report("积压告警", sql="SELECT x FROM t", timezone="Asia/Kolkata",
                   alert={"recovery": True})  # fmt: skip
    config = project(tmp_path, {"backlog": alarm})
    daemon = daemons.start(config, "--log-tz", "report")
    fired = daemon.wait_for("run.sent", report="backlog")
    conn = sqlite3.connect(tmp_path / "src.db")
    conn.execute("DELETE FROM t")  # the query returns no rows: the alert recovers
    conn.commit()
    conn.close()
    recovered = daemon.wait_for("run.recovered", report="backlog")
    assert recovered.fields["alert"] == "recovered"
    sent = daemon.events("run.sent", report="backlog")
    assert len(sent) == 1 and sent[0].fields["alert"] == "fired", "a recovery is not logged as sent"
    assert fired.ts.utcoffset() == recovered.ts.utcoffset() == KOLKATA
    started = daemon.events("daemon.started") or daemon.events("report.next_fire")
    assert started and started[0].ts.utcoffset() == SHANGHAI  # no report: the config's timezone


def _line(zone: object) -> str:
    logs.setup("text", zone=zone)  # type: ignore[arg-type]
    handler = logging.getLogger().handlers[0]
    record = logging.LogRecord("dispatcher.daemon", logging.INFO, "", 0, "run.sent", (), None)
    record.created = datetime(2026, 11, 28, 1, 0, tzinfo=UTC).timestamp()
    record.event_fields = {"report": "daily"}
    try:
        return handler.format(record)
    finally:
        logs.setup("text")


def test_log_tz_shows_every_timestamp_in_one_zone_and_defaults_to_utc() -> None:
    from zoneinfo import ZoneInfo

    assert _line(UTC).startswith("2026-11-28T01:00:00.000+00:00 ")
    assert _line(ZoneInfo("Asia/Shanghai")).startswith("2026-11-28T09:00:00.000+08:00 ")
    per_report = {"daily": ZoneInfo("Asia/Kolkata")}
    assert _line(lambda rid: per_report.get(rid, UTC)).startswith("2026-11-28T06:30:00.000+05:30 ")


def test_an_unknown_log_tz_is_refused_with_what_to_write(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dispatcher", "run", "--log-tz", "Asia/Shanghia"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Asia/Shanghia" in result.stderr and "Asia/Shanghai" in result.stderr
    assert "report" in result.stderr and "Traceback" not in result.stderr


def test_matplotlib_building_its_font_cache_stays_out_of_the_log(tmp_path: Path) -> None:
    """A fresh MPLCONFIGDIR makes matplotlib build its font cache, as on a new server's first chart."""
    code = (
        "import logging\n"
        "from dispatcher import logs\n"
        "logs.setup('text')\n"
        "logging.getLogger('fontTools.ttLib').warning('fontTools chatter')\n"
        "logging.getLogger('matplotlib.font_manager').warning('Matplotlib is building the font cache')\n"
        "import matplotlib.font_manager\n"
        "logs.event('run.sent', report='daily')\n"
    )
    env = {"MPLCONFIGDIR": str(tmp_path / "mpl"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mpl").exists(), "matplotlib built no cache: the test proves nothing"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and " run.sent " in lines[0], result.stderr
