"""The daemon through New York's repeated autumn hour, in-process on a fake clock (issue 24, item 12).

An every-15-minutes report runs at 01:00, 01:15, 01:30 and 01:45 EDT and again at the same wall times
in EST: eight ledger rows keyed by their UTC instants, eight messages, and none of the second hour's
refused by DingTalk's same-content-once-a-day rule (its footer names the offset).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dispatcher.cli.main import main
from dispatcher.sandbox import Sandbox
from tests import daemon_harness
from tests.daemon_harness import project, report, runs
from tests.daemon_inprocess import FakeClock, Stepper, inprocess_daemon

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
sandbox, state_url = daemon_harness.sandbox, daemon_harness.state_url
NEW_YORK = ZoneInfo("America/New_York")
FIRST = datetime(2026, 11, 1, 1, 0, tzinfo=NEW_YORK).astimezone(UTC)  # 01:00 EDT
EXPECTED = [FIRST + timedelta(minutes=15 * n) for n in range(8)]  # to 01:45 EST


def quarter_hourly(folder: Path) -> Path:
    entry = report("刻钟报", schedule="*/15 * * * *", timezone="America/New_York")
    return project(folder, {"quarter": entry})


def run_to(stepper: Stepper, end: datetime) -> None:
    """Step the daemon, jumping the fake clock from one fire time to the next."""
    while stepper.fake.now() < end:
        sleep = stepper.daemon.step()
        stepper.settle()
        soonest = min(stepper.daemon.state.next_fire.values())
        stepper.fake.instant = max(stepper.fake.now() + timedelta(seconds=max(sleep, 0.001)), soonest)


def test_the_daemon_runs_both_occurrences_of_the_repeated_hour(
    tmp_path: Path, sandbox: Sandbox, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeClock(FIRST - timedelta(minutes=5))
    with inprocess_daemon(quarter_hourly(tmp_path / "p"), sandbox, state_url, fake, monkeypatch) as daemon:
        run_to(daemon, EXPECTED[-1] + timedelta(seconds=30))
        lines = daemon.events.lines
    rows = [r for r in runs(state_url, "quarter") if r.fire_time >= FIRST]
    assert [r.fire_time for r in rows] == EXPECTED
    assert [r.state for r in rows] == ["sent"] * 8, [(r.fire_time, r.state, r.error) for r in rows]
    footers = [t["msg"]["markdown"]["text"].rsplit("数据截至 ", 1)[1] for t in sandbox.tasks()]
    assert footers[-8:] == [
        *[f"2026-11-01 01:{m:02} (UTC-04:00)" for m in (0, 15, 30, 45)],
        *[f"2026-11-01 01:{m:02} (UTC-05:00)" for m in (0, 15, 30, 45)],
    ]
    assert not [line for line in lines if line.event in ("run.claimed_elsewhere", "run.missed")]


def test_list_shows_the_second_occurrence_with_its_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = quarter_hourly(tmp_path / "p")
    assert main(["list", "--json", "-c", str(path), "--at", "2026-11-01T01:50:00-04:00"]) == 0
    out = capsys.readouterr().out
    assert '"next_fire_time": "2026-11-01T01:00:00-05:00"' in out
