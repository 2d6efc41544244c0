"""Claims at the fire time: a burst of due reports is claimed at once while its runs queue for the
workers; queued claims are held against other replicas' reapers by a heartbeat, and handed back
at a warm shutdown. In-process daemons (as `dispatcher run` builds them) on real SQLite and
PostgreSQL ledgers and a real sandbox.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatcher import clock
from dispatcher.app import open_app
from dispatcher.config.check import load_config
from dispatcher.daemon.health import HealthState
from dispatcher.daemon.loop import Daemon
from dispatcher.run.metrics import Metrics
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.ledger import Run
from tests.daemon_harness import DEADLINE, open_ledger, project, report, runs
from tests.daemon_inprocess import FakeClock
from tests.services import postgres_url  # noqa: F401  (fixture)

RUN_TIMEOUT = 20.0


def _reports(count: int) -> dict[str, dict[str, Any]]:
    """Yearly reports owing their last fire time at start: all due at the daemon's first pass, and
    none due again while a test runs (an hourly one fired again when a test started at :59)."""
    yearly = {
        "schedule": "0 0 1 1 *",
        "run_on_start": True,
        "receipts": "off",
        "run_timeout": f"{RUN_TIMEOUT:g}s",
    }
    return {f"r{i:03d}": report(_title(i), **yearly) for i in range(count)}


def _title(i: int) -> str:
    return f"报表{i:03d}"


def _sent_once(box: Sandbox, count: int) -> None:
    titles = Counter(task["msg"]["markdown"]["title"] for task in box.tasks())
    assert titles == Counter({_title(i): 1 for i in range(count)})


@contextmanager
def daemon_in(
    config: Path, box: Sandbox, url: str, monkeypatch: pytest.MonkeyPatch, name: str
) -> Iterator[Daemon]:
    """A daemon built as `dispatcher run` builds it; the test calls `step()` itself."""
    opts = box.options
    for key, value in {"DINGTALK_API_BASE": box.url, "DINGTALK_APP_KEY": opts.app_key,
                       "DINGTALK_APP_SECRET": opts.app_secret, "DINGTALK_AGENT_ID": str(opts.agent_id),
                       "DISPATCHER_STATE_URL": url}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    with ExitStack() as stack:
        app = stack.enter_context(open_app(load_config(config), metrics=Metrics(), owner=name))
        daemon = Daemon(app, config, HealthState(started_at=time.time()))
        try:
            yield daemon
        finally:
            daemon.stop.set()
            _poll(lambda: daemon.runs.in_flight == 0, "runs to finish")
            daemon.runs.close()


def _poll(check: Callable[[], object], what: str, deadline: float = DEADLINE) -> None:
    until = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < until, f"timed out waiting for {what}"
        time.sleep(0.01)


def _drive(
    daemons: list[Daemon],
    check: Callable[[], object],
    what: str,
    fake: FakeClock | None = None,
    blocked: int = 0,
) -> None:
    """Loop passes of every daemon (on a fake clock: one second apart, each pass settled but for the
    first `blocked` daemons, whose worker is held) until `check`."""
    until = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < until, f"timed out waiting for {what}"
        for index, daemon in enumerate(daemons):
            sleep = daemon.step()
            if fake is not None and index >= blocked:
                _poll(daemon.runs.idle, "the worker pool to go idle")
        if fake is None:
            time.sleep(min(sleep, 0.02))
        else:
            fake.advance(1.0)


def _states(url: str) -> list[tuple[str, str | None]]:
    return [(r.state, r.owner) for r in runs(url)]


def _url(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return (
        f"sqlite:///{tmp_path / 'state.db'}" if store == "sqlite" else request.getfixturevalue("postgres_url")
    )


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_burst_is_claimed_at_once_while_its_runs_queue_for_two_workers(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    count, url = 60, _url(store, tmp_path, request)
    config = project(tmp_path / "p", _reports(count), daemon={"workers": 2})
    with (
        Sandbox(SandboxOptions(latency=0.05), port=0) as box,
        daemon_in(config, box, url, monkeypatch, "a") as a,
    ):
        before = clock.now()
        a.step()  # the first pass: every report is due
        after = clock.now()
        rows = runs(url)
        assert len(rows) == count, "every due fire time is claimed in the pass it became due"
        assert all(r.started_at is not None and before <= r.started_at <= after for r in rows)
        assert after - before < timedelta(seconds=2)
        assert sum(r.state == "running" for r in rows) > count // 2, "while the runs queue for 2 workers"
        _drive([a], lambda: all(r.state == "sent" for r in runs(url)), "every run to be sent")
        _sent_once(box, count)


@contextmanager
def _blocked(daemon: Daemon) -> Iterator[threading.Event]:
    """The daemon's one worker busy until the event is set: its claims wait in its queue."""
    gate = threading.Event()
    daemon.runs._pool.submit(gate.wait)
    try:
        yield gate
    finally:
        gate.set()


def test_a_live_replica_keeps_its_queued_claims_from_another_replicas_reaper_until_it_goes_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count, url = 5, f"sqlite:///{tmp_path / 'state.db'}"
    config = project(tmp_path / "p", _reports(count), daemon={"workers": 1})
    fake = FakeClock(datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr(clock, "now", fake.now)
    with Sandbox(SandboxOptions(), port=0) as box, daemon_in(config, box, url, monkeypatch, "a") as a:
        with _blocked(a) as gate:
            a.step()
            assert _states(url) == [("running", "a")] * count
            with daemon_in(config, box, url, monkeypatch, "b") as b:
                # Three run_timeouts of both replicas' loops: a's heartbeat keeps b's reaper off.
                stop_at = fake.now() + timedelta(seconds=3 * RUN_TIMEOUT)
                _drive([a, b], lambda: fake.now() >= stop_at, "three run_timeouts", fake, blocked=1)
                assert _states(url) == [("running", "a")] * count
                # a's loop goes silent (stalled or killed): run_timeout later b reaps and runs them.
                silent = fake.now()
                _drive([b], lambda: _states(url) == [("sent", "b")] * count, "b to run a's claims", fake)
                assert fake.now() - silent >= timedelta(seconds=RUN_TIMEOUT)
                assert all(r.attempts == 2 for r in runs(url))
            gate.set()  # a's worker frees up at last: its queued claims are no longer its own
            _poll(a.runs.idle, "a's queued claims to be dropped")
        assert a.runs.held() == []
        _sent_once(box, count)


def test_a_warm_shutdown_hands_back_queued_claims_and_another_daemon_runs_them_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count, url = 5, f"sqlite:///{tmp_path / 'state.db'}"
    config = project(tmp_path / "p", _reports(count), daemon={"workers": 1})
    fake = FakeClock(datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr(clock, "now", fake.now)
    with Sandbox(SandboxOptions(), port=0) as box:
        with daemon_in(config, box, url, monkeypatch, "a") as a, _blocked(a):
            a.step()
            assert _states(url) == [("running", "a")] * count
            a.stop.set()  # SIGTERM
            a.shutdown()
        released = runs(url)
        assert [(r.state, r.attempts, r.next_retry_at, r.error) for r in released] == [
            ("failed", 0, fake.now(), "released at shutdown before it started")
        ] * count
        with daemon_in(config, box, url, monkeypatch, "b") as b:
            _drive([b], lambda: _states(url) == [("sent", "b")] * count, "b to run the released claims", fake)
            assert fake.now() - released[0].ended_at <= timedelta(seconds=3), (
                "promptly, not after run_timeout"
            )  # type: ignore[operator]
        assert all(r.attempts == 1 for r in runs(url)), "the released claim never counted as an attempt"
        _sent_once(box, count)


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_two_processes_claiming_overlapping_batches_win_each_fire_time_once(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _url(store, tmp_path, request)
    fire = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    wanted = [(f"r{i:04d}", fire + timedelta(hours=h)) for i in range(600) for h in range(2)]
    with open_ledger(url) as first, open_ledger(url) as second:
        assert first.claim("r0000", fire, "c") is not None  # held before: neither batch may take it
        won: dict[str, list[Run]] = {}

        def claim(ledger: Any, owner: str, pairs: list[tuple[str, datetime]]) -> None:
            won[owner] = ledger.claim_many(pairs, owner)

        threads = [threading.Thread(target=claim, args=(first, "a", wanted)),
                   threading.Thread(target=claim, args=(second, "b", wanted[::-1]))]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
        keys = Counter((r.report_id, r.fire_time) for r in won["a"] + won["b"])
        assert set(keys) == set(wanted) - {("r0000", fire)} and set(keys.values()) == {1}
        assert all(r.state == "running" and r.attempts == 1 for r in won["a"] + won["b"])
