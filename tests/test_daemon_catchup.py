"""Catch-up after a crash: SIGKILL a daemon, restart it ~7 s later on the same state file.

The three policies run side by side (one sandbox, state file and pair of processes each), once per
module, so the outage costs its seven seconds once. Expectations come from the ledger, not from
guesses about when a process woke up: every fire time of the outage that was certainly overdue
when the new process looked (more than the 1 s on-time slack before it was spawned) is in `gap`.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatcher import clock
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.ledger import Run
from tests import daemon_harness
from tests.daemon_harness import (
    DaemonProcess,
    Daemons,
    fire_times,
    project,
    report,
    runs,
    sent_since,
    task_fire_times,
    wait_until,
)

sandbox, state_url, daemons = daemon_harness.sandbox, daemon_harness.state_url, daemon_harness.daemons

POLICIES = ("last", "all", "none")
STEP = timedelta(seconds=2)
SLACK = timedelta(seconds=1)  # catchup.on_time_slack for a 2 s period
OUTAGE = timedelta(seconds=7)


@dataclass
class Outage:
    """One policy's crash and restart, as the ledger, the sandbox and the logs saw it."""

    last_before: datetime  # the newest ledger row when the first process died
    rows: list[Run]  # every row, oldest fire time first, after the second process stopped
    tasks: Counter[datetime]  # sandbox tasks per fire time
    restart: DaemonProcess
    gap: list[datetime]  # fire times of the outage certainly overdue at the restart

    def after(self, state: str) -> list[datetime]:
        return [t for t in fire_times(self.rows, state) if t > self.last_before]

    def row(self, fire: datetime) -> Run:
        return next(r for r in self.rows if r.fire_time == fire)


@pytest.fixture(scope="module")
def outages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outage]]:
    with ExitStack() as stack:
        crews: dict[str, tuple[Daemons, Sandbox]] = {}
        for policy in POLICIES:
            folder = tmp_path_factory.mktemp(f"catchup-{policy}")
            sandbox = stack.enter_context(Sandbox(SandboxOptions(), port=0))
            crew = Daemons(folder, sandbox, f"sqlite:///{folder / 'state.db'}")
            stack.callback(crew.close)
            crews[policy] = (crew, sandbox)
        yield _crash_and_restart(crews)


def _crash_and_restart(crews: dict[str, tuple[Daemons, Sandbox]]) -> dict[str, Outage]:
    configs = {
        policy: project(crew.folder / "p", {"tick": _tick(policy)}) for policy, (crew, _) in crews.items()
    }
    first = _start_all(crews, configs, "before")
    last_before = {}
    for policy, (crew, _) in crews.items():
        first[policy].send(signal.SIGKILL)
        first[policy].wait_exit(10)
        last_before[policy] = max(r.fire_time for r in runs(crew.state_url))
    wait_until(lambda: clock.now() >= max(last_before.values()) + OUTAGE, "the outage", timeout=30)
    spawned = {policy: clock.now() for policy in crews}
    restart = _start_all(crews, configs, "after")
    for daemon in restart.values():
        daemon.send(signal.SIGTERM)
        assert daemon.wait_exit(10) == 0
    return {
        policy: Outage(
            last_before=last_before[policy],
            rows=runs(crew.state_url),
            tasks=Counter(task_fire_times(sandbox, "心跳")),
            restart=restart[policy],
            gap=_grid(last_before[policy], spawned[policy] - SLACK),
        )
        for policy, (crew, sandbox) in crews.items()
    }


def _tick(policy: str) -> dict[str, object]:
    # A short grace keeps a fresh ledger's first start from catching up an hour of 2 s fire times.
    return report("心跳", catchup=policy, grace="30s")


def _start_all(
    crews: dict[str, tuple[Daemons, Sandbox]], configs: dict[str, Path], name: str
) -> dict[str, DaemonProcess]:
    """Start one daemon per policy; return once each has sent an on-time run, so has caught up."""
    spawned = {policy: clock.now() for policy in crews}
    started = {policy: crew.start(configs[policy], name=name) for policy, (crew, _) in crews.items()}
    for policy, (crew, _) in crews.items():
        _wait_sent_since(crew.state_url, spawned[policy], f"{policy}: a run newer than the {name} start")
    return started


def _wait_sent_since(state_url: str, since: datetime, what: str, report_id: str | None = None) -> None:
    wait_until(lambda: sent_since(state_url, since, report_id), what)


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
    # A run the SIGKILL interrupted stays `running` (until run_timeout) and may or may not have sent.
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
    daemons: Daemons, sandbox: Sandbox, state_url: str, tmp_path: Path
) -> None:
    # A yearly report's previous fire time is older than the 90-day retention most of the year;
    # pruning its only row would make every restart send it again.
    yearly = report("年报", schedule="0 0 1 1 *", run_on_start=True)
    config = project(tmp_path / "p", {"yearly": yearly, "tick": report("心跳")})
    for name in ("first", "second"):
        daemon = daemons.start(config, name=name)
        started = daemon.wait_for("daemon.started").ts
        # The loop prunes on its first tick, a second after start; wait well past it.
        _wait_sent_since(state_url, started + 2 * STEP, f"{name}: a tick run 2 periods after start", "tick")
        assert [r.state for r in runs(state_url, "yearly")] == ["sent"]
        daemon.send(signal.SIGTERM)
        assert daemon.wait_exit(10) == 0
    assert len(task_fire_times(sandbox, "年报")) == 1
