"""Failing reports in a running `dispatcher run`: retries with backoff, one alert per interval."""

from __future__ import annotations

from pathlib import Path

from dispatcher.sandbox import Sandbox
from tests import daemon_harness
from tests.daemon_harness import (
    ALERT_TITLE,
    APP_SECRET,
    Daemons,
    alerts_to,
    assert_consecutive,
    count_state,
    fire_times,
    project,
    report,
    runs,
    wait_until,
)

sandbox, state_url, daemons = daemon_harness.sandbox, daemon_harness.state_url, daemon_harness.daemons


def test_a_failing_source_alerts_admins_once_and_never_stops_the_other_reports(
    daemons: Daemons, sandbox: Sandbox, state_url: str, tmp_path: Path
) -> None:
    reports = {
        "broken": report("坏报表", source="gone", retries=0),
        "tick": report("心跳"),
    }
    config = project(tmp_path / "p", reports, sources={"gone": "sqlite:///missing.db"})
    daemon = daemons.start(config)
    wait_until(
        lambda: (
            count_state(state_url, "broken", "failed") >= 4 and count_state(state_url, "tick", "sent") >= 4
        ),
        "four failed broken runs and four sent tick runs",
    )
    daemon.wait_for("alert.suppressed", report="broken")

    alerts = alerts_to(sandbox)
    assert len(alerts) == 1, alerts
    assert alerts[0]["msg"]["markdown"]["title"] == f"{ALERT_TITLE}：坏报表"
    assert "missing.db" in alerts[0]["msg"]["markdown"]["text"]
    sent_alert = daemon.events("alert.sent", report="broken")
    assert len(sent_alert) == 1
    assert all(s.ts >= sent_alert[0].ts for s in daemon.events("alert.suppressed"))
    assert daemon.alive()
    assert_consecutive(fire_times(runs(state_url, "tick"), "sent"), 2)
    assert not (config.parent / "missing.db").exists(), "a missing SQLite source must not be created"
    assert APP_SECRET not in daemon.stderr()


def test_a_failing_run_is_retried_with_backoff_then_given_up_with_one_alert(
    daemons: Daemons, sandbox: Sandbox, state_url: str, tmp_path: Path
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
    daemon = daemons.start(project(tmp_path / "p", {"flaky": flaky}))
    gave_up = daemon.wait_for("run.gave_up", report="flaky")
    daemon.wait_for("alert.sent", report="flaky")

    rows = runs(state_url, "flaky")
    assert len(rows) == 1
    run = rows[0]
    assert (run.state, run.attempts, run.next_retry_at) == ("failed", 3, None)
    assert "no_such_table" in (run.error or "")
    assert gave_up.fields["attempts"] == 3

    failed = daemon.events("run.failed", report="flaky")
    retried = daemon.events("run.retrying", report="flaky")
    assert [e.fields["attempt"] for e in failed] == [1, 2]
    assert [e.fields["attempt"] for e in retried] == [2, 3]
    # retry_delay doubles: 1 s after the first attempt, 2 s after the second.
    assert (retried[0].ts - failed[0].ts).total_seconds() >= 1
    assert (retried[1].ts - failed[1].ts).total_seconds() >= 2
    assert len(alerts_to(sandbox)) == 1


def test_a_run_left_running_by_a_dead_process_is_reaped_and_retried_once(
    daemons: Daemons, sandbox: Sandbox, state_url: str, tmp_path: Path, monkeypatch
) -> None:
    from datetime import UTC, datetime, timedelta

    from dispatcher import clock
    from tests.daemon_harness import ZONE, open_ledger, task_fire_times

    fire = datetime(2026, 1, 1, 0, 0, tzinfo=ZONE)  # the yearly report's fire time this year
    yearly = report("年报", schedule="0 0 1 1 *", run_timeout="5s", retries=1, retry_delay="1s")
    config = project(tmp_path / "p", {"yearly": yearly})
    # A process claimed the run an hour ago and died: its row still says `running`.
    monkeypatch.setattr(clock, "now", lambda: datetime.now(UTC) - timedelta(hours=1))
    with open_ledger(state_url) as ledger:
        assert ledger.claim("yearly", fire, "dead-host:1") is not None
    monkeypatch.undo()

    daemon = daemons.start(config)
    daemon.wait_for("run.abandoned", report="yearly")
    daemon.wait_for("run.sent", report="yearly")
    [row] = runs(state_url, "yearly")
    assert (row.state, row.attempts) == ("sent", 2)
    assert row.owner != "dead-host:1"
    assert task_fire_times(sandbox, "年报") == [fire]
