"""Three `dispatcher run` replicas on one PostgreSQL state database, through a SIGKILL and a SIGSTOP.

One scenario: the three start together on an empty schema, a report fires every 2 s for 40 s, and
15 s in one replica is killed and another paused for 10 s. The ledger and the sandbox are then
compared fire time by fire time. The signals land in the middle of a 2 s period, when the victim
holds no claim: a run killed mid-flight is the reaper's case (its row stays `running` for
`run_timeout`), which this test does not wait for.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dispatcher import clock
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.ledger import Run
from tests import services
from tests.daemon_harness import (
    APP_SECRET,
    DaemonProcess,
    Daemons,
    assert_consecutive,
    fire_times,
    project,
    report,
    runs,
    task_fire_times,
    wait_until,
)

STEP = 2.0  # the report's period; fire times fall on even Unix seconds (Shanghai is UTC+8)
DISRUPT_AFTER = 15.0
PAUSE = 10.0
WINDOW = 40.0
TITLE = "心跳"

postgres_url = services.postgres_url


@dataclass
class Outcome:
    rows: list[Run]
    tasks: Counter[datetime]
    killed: DaemonProcess
    paused: DaemonProcess
    steady: DaemonProcess
    exits: dict[str, int]
    alone_since: datetime  # when `steady` was stopped and `paused` was the only replica left


@pytest.fixture
def outcome(tmp_path: Path, postgres_url: str) -> Iterator[Outcome]:
    with Sandbox(SandboxOptions(), port=0) as sandbox:
        crew = Daemons(tmp_path, sandbox, postgres_url)
        try:
            yield _scenario(crew, sandbox, postgres_url, tmp_path)
        finally:
            crew.close()


def _scenario(crew: Daemons, sandbox: Sandbox, url: str, folder: Path) -> Outcome:
    config = project(folder / "p", {"tick": report(TITLE)})
    killed, paused, steady = (crew.start(config, name=name) for name in ("killed", "paused", "steady"))
    for daemon in (killed, paused, steady):
        daemon.wait_for("daemon.started")
    wait_until(lambda: fire_times(runs(url, "tick"), "sent"), "the first delivery")
    began = time.monotonic()

    wait_until(lambda: time.monotonic() - began >= DISRUPT_AFTER, "15 s of three replicas")
    assert all(d.alive() for d in (killed, paused, steady)), "a replica died before any signal"
    _signal_between_runs(killed, signal.SIGKILL, url)
    killed.wait_exit(60)
    _signal_between_runs(paused, signal.SIGSTOP, url)
    stopped = time.monotonic()
    wait_until(lambda: time.monotonic() - stopped >= PAUSE, "the 10 s pause", timeout=PAUSE + 5)
    paused.send(signal.SIGCONT)

    wait_until(lambda: time.monotonic() - began >= WINDOW, "the 40 s window", timeout=WINDOW + 10)
    exits = {}
    steady.send(signal.SIGTERM)
    exits["steady"] = steady.wait_exit(60)
    alone_since = clock.now()
    # The paused replica alone must now carry the report: proof it resumed and keeps working.
    wait_until(lambda: len(_sent_by(url, paused, alone_since)) >= 2, "two deliveries by the resumed replica")
    paused.send(signal.SIGTERM)
    exits["paused"] = paused.wait_exit(60)
    return Outcome(
        rows=runs(url, "tick"),
        tasks=Counter(task_fire_times(sandbox, TITLE)),
        killed=killed,
        paused=paused,
        steady=steady,
        exits=exits,
        alone_since=alone_since,
    )


def _owned_by(run: Run, daemon: DaemonProcess) -> bool:
    return (run.owner or "").endswith(f":{daemon.pid}")


def _sent_by(url: str, daemon: DaemonProcess, since: datetime) -> list[Run]:
    return [
        r for r in runs(url, "tick") if r.state == "sent" and r.fire_time > since and _owned_by(r, daemon)
    ]


def _signal_between_runs(daemon: DaemonProcess, sig: signal.Signals, url: str) -> None:
    """Signal `daemon` mid-period while it holds no claim, so no fire time is left half done."""

    def delivered() -> bool:
        if not 0.7 <= time.time() % STEP <= 1.1:
            return False
        if any(r.state == "running" and _owned_by(r, daemon) for r in runs(url, "tick")):
            return False
        if time.time() % STEP > 1.5:  # the ledger read took too long; the next fire time is near
            return False
        daemon.send(sig)
        return True

    wait_until(delivered, f"a quiet moment to send {sig.name} to {daemon.name}", timeout=60, every=0.02)


def _every_fire_time_of_the_window_is_sent_exactly_once(outcome: Outcome) -> None:
    keys = [r.fire_time for r in outcome.rows]
    assert len(keys) == len(set(keys)), "two ledger rows for one fire time"
    sent = fire_times(outcome.rows, "sent")
    assert (sent[-1] - sent[0]).total_seconds() >= WINDOW, f"window too short: {sent[0]} .. {sent[-1]}"
    assert_consecutive(sent, STEP)  # no gap between the first and the last delivery


def _no_fire_time_is_missed_failed_or_left_running_while_a_replica_was_alive(outcome: Outcome) -> None:
    first_sent = fire_times(outcome.rows, "sent")[0]
    others = [(r.fire_time, r.state, r.error) for r in outcome.rows if r.state != "sent"]
    # The only non-sent rows allowed: the first start's catch-up of the hour before it ('last' policy).
    late = [row for row in others if row[0] > first_sent or row[1] != "missed"]
    assert late == [], late


def _the_sandbox_has_exactly_one_task_per_sent_fire_time_and_no_other(outcome: Outcome) -> None:
    sent = fire_times(outcome.rows, "sent")
    duplicates = {t: n for t, n in outcome.tasks.items() if n != 1}
    assert duplicates == {}, f"fire times delivered more than once: {duplicates}"
    assert sorted(outcome.tasks) == sent


def _deliveries_were_shared_and_survived_the_kill_and_the_pause(outcome: Outcome) -> None:
    owners = Counter(
        name
        for r in outcome.rows
        if r.state == "sent"
        for name, d in (("killed", outcome.killed), ("paused", outcome.paused), ("steady", outcome.steady))
        if _owned_by(r, d)
    )
    assert sum(owners.values()) == len(fire_times(outcome.rows, "sent")), "a sent row of no known replica"
    assert owners["paused"] >= 2 and owners["steady"] >= 1, owners
    alone = [r for r in outcome.rows if r.fire_time > outcome.alone_since + timedelta(seconds=STEP)]
    assert alone and all(_owned_by(r, outcome.paused) for r in alone)


def _no_replica_crashed_and_the_survivors_exit_0_on_sigterm(outcome: Outcome) -> None:
    assert outcome.exits == {"steady": 0, "paused": 0}
    assert outcome.killed.proc is not None and outcome.killed.proc.returncode == -signal.SIGKILL
    for daemon in (outcome.killed, outcome.paused, outcome.steady):
        assert len(daemon.events("daemon.started")) == 1, daemon.stderr()[-2000:]
        text = daemon.stderr()
        assert "Traceback" not in text and "state.unavailable" not in text, text[-3000:]
        assert APP_SECRET not in text + daemon.stdout()
    for daemon in (outcome.paused, outcome.steady):
        assert len(daemon.events("daemon.stopped")) == 1


@pytest.mark.slow
def test_three_replicas_through_a_kill_and_a_pause_deliver_every_fire_time_exactly_once(
    outcome: Outcome,
) -> None:
    _every_fire_time_of_the_window_is_sent_exactly_once(outcome)
    _no_fire_time_is_missed_failed_or_left_running_while_a_replica_was_alive(outcome)
    _the_sandbox_has_exactly_one_task_per_sent_fire_time_and_no_other(outcome)
    _deliveries_were_shared_and_survived_the_kill_and_the_pause(outcome)
    _no_replica_crashed_and_the_survivors_exit_0_on_sigterm(outcome)
