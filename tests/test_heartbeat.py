"""Issue 9, trip 6: the daemon says when each report fires next, then shows it is alive."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from dispatcher.sandbox import Sandbox
from tests import daemon_harness
from tests.daemon_harness import project, report
from tests.daemon_inprocess import FakeClock, even_second_now, inprocess_daemon

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
sandbox, state_url = daemon_harness.sandbox, daemon_harness.state_url


def test_start_logs_each_reports_next_fire_in_its_zone_then_heartbeats_at_the_configured_interval(
    sandbox: Sandbox, state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = {
        "shanghai": report("上海", every="1h"),
        "utc": report("伦敦", schedule="30 7 * * *", timezone="UTC"),
    }
    config = project(tmp_path / "p", reports, daemon={"heartbeat": "2s"})
    with inprocess_daemon(config, sandbox, state_url, FakeClock(even_second_now()), monkeypatch) as daemon:
        daemon.run_until(lambda: len(daemon.events.events("daemon.heartbeat")) >= 2, "two heartbeats")
    first, second = daemon.events.events("daemon.heartbeat")[:2]

    fires = {line.fields["report"]: line for line in daemon.events.events("report.next_fire")}
    assert set(fires) == {"shanghai", "utc"}
    shanghai = datetime.fromisoformat(fires["shanghai"].fields["next_fire"])
    utc = datetime.fromisoformat(fires["utc"].fields["next_fire"])
    assert shanghai.utcoffset().total_seconds() == 8 * 3600 and shanghai.minute == 0
    assert utc.utcoffset().total_seconds() == 0 and (utc.hour, utc.minute) == (7, 30)
    assert fires["utc"].fields["schedule"] == "30 7 * * *"

    assert 1.0 <= (second.ts - first.ts).total_seconds() <= 6.0
    assert first.fields["reports"] == 2
    assert first.fields["in_flight"] >= 0
    assert first.fields["next_report"] == min(fires, key=lambda rid: datetime.fromisoformat(
        fires[rid].fields["next_fire"]))  # fmt: skip
    assert first.fields["state"] == "ok"


def test_the_heartbeat_is_ten_minutes_by_default_and_takes_a_duration() -> None:
    from dispatcher.config.model import DaemonConfig

    assert DaemonConfig().heartbeat == 600.0
    assert DaemonConfig(heartbeat="90s").heartbeat == 90.0
    assert DaemonConfig(max_wait="2m").max_wait == 120.0
