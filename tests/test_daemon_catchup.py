"""Catch-up after a crash: a daemon stops, another starts 7 s later on the same state file.

In-process, on a fake clock (tests/daemon_inprocess.py): the outage's seven seconds cost nothing.
The three policies run side by side (one sandbox and state file each), once per module.
Expectations come from the ledger, not from guesses about when a daemon woke up: every fire time
of the outage that was certainly overdue when the new daemon looked (more than the 1 s on-time
slack before it started) is in `gap`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.ledger import Run
from tests import daemon_harness
from tests.daemon_harness import fire_times, project, report, runs, sent_since, task_fire_times
from tests.daemon_inprocess import Events, FakeClock, Stepper, even_second_now, inprocess_daemon

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
sandbox, state_url = daemon_harness.sandbox, daemon_harness.state_url

POLICIES = ("last", "all", "none")
STEP = timedelta(seconds=2)
SLACK = timedelta(seconds=1)  # catchup.on_time_slack for a 2 s period
OUTAGE = timedelta(seconds=7)


@dataclass
class Outage:
    """One policy's crash and restart, as the ledger, the sandbox and the logs saw it."""

    last_before: datetime  # the newest ledger row when the first daemon stopped
    rows: list[Run]  # every row, oldest fire time first, after the second daemon stopped
    tasks: Counter[datetime]  # sandbox tasks per fire time
    restart: Events
    gap: list[datetime]  # fire times of the outage certainly overdue at the restart

    def after(self, state: str) -> list[datetime]:
        return [t for t in fire_times(self.rows, state) if t > self.last_before]

    def row(self, fire: datetime) -> Run:
        return next(r for r in self.rows if r.fire_time == fire)


@pytest.fixture(scope="module")
def outages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outage]]:
    found = {}
    for policy in POLICIES:
        folder = tmp_path_factory.mktemp(f"catchup-{policy}")
        with Sandbox(SandboxOptions(), port=0) as box, pytest.MonkeyPatch.context() as mp:
            found[policy] = _crash_and_restart(policy, folder, box, f"sqlite:///{folder / 'state.db'}", mp)
    yield found


def _crash_and_restart(policy: str, folder: Path, box: Sandbox, url: str, mp: pytest.MonkeyPatch) -> Outage:
    config = project(folder / "p", {"tick": _tick(policy)})
    fake = FakeClock(even_second_now())
    with inprocess_daemon(config, box, url, fake, mp, name="before") as before:
        _start(before, url, "before")
        before.run_for(4)
    last_before = max(r.fire_time for r in runs(url))
    # Half a second off the grid, as a real restart is: a fire time a whole slack old is still on time.
    fake.instant = max(fake.instant, last_before + OUTAGE + timedelta(seconds=0.5))
    spawned = fake.now()
    with inprocess_daemon(config, box, url, fake, mp, name="after") as after:
        _start(after, url, "after")
        events = after.events
    return Outage(
        last_before=last_before,
        rows=runs(url),
        tasks=Counter(task_fire_times(box, "心跳")),
        restart=events,
        gap=_grid(last_before, spawned - SLACK),
    )


def _tick(policy: str) -> dict[str, object]:
    # A short grace keeps a fresh ledger's first start from catching up an hour of 2 s fire times.
    return report("心跳", catchup=policy, grace="30s")


def _start(daemon: Stepper, url: str, name: str) -> None:
    """Step until the daemon has sent an on-time run, so has caught up."""
    spawned = daemon.fake.now()
    daemon.run_until(lambda: sent_since(url, spawned), f"a run newer than the {name} start")


def _grid(after: datetime, until: datetime) -> list[datetime]:
    """Fire times of a 2 s schedule in (after, until]; `after` is itself a fire time."""
    times, t = [], after + STEP
    while t <= until:
        times.append(t)
        t += STEP
    return times


@pytest.mark.parametrize("policy", POLICIES)
def test_every_fire_time_after_a_crash_gets_exactly_one_row_and_missed_ones_come_first(
    outages: dict[str, Outage], policy: str
) -> None:
    o = outages[policy]
    assert len(o.gap) >= 3, "the outage should span at least three fire times"
    after = [r for r in o.rows if r.fire_time > o.last_before]
    assert len({r.fire_time for r in o.rows}) == len(o.rows)
    assert [r.fire_time for r in after] == _grid(o.last_before, after[-1].fire_time)
    assert {r.state for r in after} <= {"sent", "missed"}
    missed, sent = o.after("missed"), o.after("sent")
    assert not missed or max(missed) < min(sent)
    missed_logged = sum(int(e.fields["count"]) for e in o.restart.events("run.missed", report="tick"))
    assert missed_logged == len(missed)


@pytest.mark.parametrize("policy", POLICIES)
def test_the_sandbox_has_one_message_per_sent_fire_time_and_none_for_missed_ones(
    outages: dict[str, Outage], policy: str
) -> None:
    o = outages[policy]
    assert set(o.tasks.values()) == {1}
    sent, running = fire_times(o.rows, "sent"), fire_times(o.rows, "running")
    # A run a crash interrupted stays `running` (until run_timeout) and may or may not have sent.
    assert set(sent) <= set(o.tasks) <= set(sent) | set(running)
    assert not set(o.tasks) & set(o.after("missed"))


def test_catchup_last_runs_only_the_newest_overdue_fire_time(outages: dict[str, Outage]) -> None:
    o = outages["last"]
    missed, sent = o.after("missed"), o.after("sent")
    caught_up = sent[0]
    started = o.row(caught_up).started_at
    assert started is not None
    late = started - caught_up
    assert late > SLACK, f"the first run after the crash should be the catch-up, not an on-time run: {late}"
    assert set(o.gap[:-1]) <= set(missed)
    assert set(o.gap) & set(sent) <= {o.gap[-1]}
    assert missed and caught_up == max(missed) + STEP  # the newest overdue, right after the missed ones


def test_catchup_all_runs_every_overdue_fire_time_oldest_first(outages: dict[str, Outage]) -> None:
    o = outages["all"]
    assert o.after("missed") == []
    assert set(o.gap) <= set(o.after("sent"))
    started = [o.row(t).started_at or datetime.max.replace(tzinfo=UTC) for t in o.gap]
    assert started == sorted(started)


def test_catchup_none_records_the_whole_outage_as_missed(outages: dict[str, Outage]) -> None:
    o = outages["none"]
    assert set(o.gap) <= set(o.after("missed"))
    assert not set(o.gap) & set(o.tasks)


def test_a_restart_does_not_resend_a_run_on_start_report_older_than_retention(
    sandbox: Sandbox, state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A yearly report's previous fire time is older than the 90-day retention most of the year;
    # pruning its only row would make every restart send it again.
    yearly = report("年报", schedule="0 0 1 1 *", run_on_start=True)
    config = project(tmp_path / "p", {"yearly": yearly, "tick": report("心跳")})
    fake = FakeClock(even_second_now())
    for name in ("first", "second"):
        with inprocess_daemon(config, sandbox, state_url, fake, monkeypatch, name=name) as daemon:
            started = fake.now()
            # The loop prunes on its first pass; a tick run two periods later is well past it.
            daemon.run_until(lambda: sent_since(state_url, started + 2 * STEP, "tick"), f"{name}: a tick run")
            assert [r.state for r in runs(state_url, "yearly")] == ["sent"]
    assert len(task_fire_times(sandbox, "年报")) == 1
