"""Failing reports in a running daemon: retries with backoff, one alert per interval.

In-process on a fake clock (tests/daemon_inprocess.py): backoffs and reaping cost no real seconds.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dispatcher.sandbox import Sandbox
from tests import daemon_harness
from tests.daemon_harness import (
    ALERT_TITLE,
    APP_SECRET,
    alerts_to,
    assert_consecutive,
    count_state,
    fire_times,
    project,
    report,
    runs,
)
from tests.daemon_inprocess import FakeClock, even_second_now, inprocess_daemon, text

pytestmark = pytest.mark.calendar  # a yearly report: .ci/calendar runs it again in other years

sandbox, state_url = daemon_harness.sandbox, daemon_harness.state_url


def test_a_failing_source_alerts_admins_once_and_never_stops_the_other_reports(
    sandbox: Sandbox, state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = {
        "broken": report("坏报表", source="gone", retries=0),
        "tick": report("心跳"),
    }
    config = project(tmp_path / "p", reports, sources={"gone": "sqlite:///missing.db"})
    with inprocess_daemon(config, sandbox, state_url, FakeClock(even_second_now()), monkeypatch) as daemon:
        daemon.run_until(
            lambda: (
                count_state(state_url, "broken", "failed") >= 4
                and count_state(state_url, "tick", "sent") >= 4
                and daemon.events.events("alert.suppressed", report="broken")
            ),
            "four failed broken runs, four sent tick runs and a suppressed alert",
        )
        events = daemon.events

    alerts = alerts_to(sandbox)
    assert len(alerts) == 1, alerts
    assert alerts[0]["msg"]["markdown"]["title"] == f"{ALERT_TITLE}：坏报表"
    assert "missing.db" in alerts[0]["msg"]["markdown"]["text"]
    sent_alert = events.events("alert.sent", report="broken")
    assert len(sent_alert) == 1
    assert all(s.ts >= sent_alert[0].ts for s in events.events("alert.suppressed"))
    assert_consecutive(fire_times(runs(state_url, "tick"), "sent"), 2)
    assert not (config.parent / "missing.db").exists(), "a missing SQLite source must not be created"
    assert APP_SECRET not in text(events)


def test_a_failing_run_is_retried_with_backoff_then_given_up_with_one_alert(
    sandbox: Sandbox, state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A yearly cron with run_on_start: exactly one fire time, run at once.
    flaky = report(
        "重试报表",
        schedule="0 0 1 1 *",
        run_on_start=True,
        sql="SELECT n FROM no_such_table",
        retries=2,
        retry_delay="1s",
    )
    config = project(tmp_path / "p", {"flaky": flaky})
    with inprocess_daemon(config, sandbox, state_url, FakeClock(even_second_now()), monkeypatch) as daemon:
        daemon.run_until(lambda: daemon.events.events("alert.sent", report="flaky"), "the alert")
        events = daemon.events
    [gave_up] = events.events("run.gave_up", report="flaky")

    rows = runs(state_url, "flaky")
    assert len(rows) == 1
    run = rows[0]
    assert (run.state, run.attempts, run.next_retry_at) == ("failed", 3, None)
    assert "no_such_table" in (run.error or "")
    assert gave_up.fields["attempts"] == 3

    failed = events.events("run.failed", report="flaky")
    retried = events.events("run.retrying", report="flaky")
    assert [e.fields["attempt"] for e in failed] == [1, 2]
    assert [e.fields["attempt"] for e in retried] == [2, 3]
    # retry_delay doubles: 1 s after the first attempt, 2 s after the second.
    assert (retried[0].ts - failed[0].ts).total_seconds() >= 1
    assert (retried[1].ts - failed[1].ts).total_seconds() >= 2
    assert len(alerts_to(sandbox)) == 1


def test_a_run_left_running_by_a_dead_process_is_reaped_and_retried_once(
    sandbox: Sandbox, state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import datetime

    from dispatcher import clock
    from tests.daemon_harness import ZONE, open_ledger, task_fire_times

    yearly = report("年报", schedule="0 0 1 1 *", run_timeout="5s", retries=1, retry_delay="1s")
    config = project(tmp_path / "p", {"yearly": yearly})
    fake = FakeClock(even_second_now())
    fire = datetime(fake.now().astimezone(ZONE).year, 1, 1, tzinfo=ZONE)  # this year's fire time
    # A process claimed the run an hour ago and died: its row still says `running`.
    monkeypatch.setattr(clock, "now", lambda: fake.now() - timedelta(hours=1))
    with open_ledger(state_url) as ledger:
        assert ledger.claim("yearly", fire, "dead-host:1") is not None
    monkeypatch.undo()

    with inprocess_daemon(config, sandbox, state_url, fake, monkeypatch) as daemon:
        daemon.run_until(lambda: daemon.events.events("run.sent", report="yearly"), "the retried run")
        assert daemon.events.events("run.abandoned", report="yearly")
    [row] = runs(state_url, "yearly")
    assert (row.state, row.attempts) == ("sent", 2)
    assert row.owner != "dead-host:1"
    assert task_fire_times(sandbox, "年报") == [fire]
