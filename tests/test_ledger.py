"""The run ledger against real SQLite files and a real PostgreSQL, threads and processes included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from dispatcher import clock
from dispatcher.errors import StateError
from dispatcher.store.db import SCHEMA_VERSION, StateStore
from dispatcher.store.ledger import Ledger
from tests.services import missing, unique_name

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("DISPATCHER_TEST_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")

# -- fixtures --


def _pg_problem() -> str | None:
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"PostgreSQL at {make_url(PG_URL).render_as_string()} unreachable: {type(exc).__name__}"
    finally:
        engine.dispose()
    return None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema per test, reached through search_path, dropped afterwards."""
    problem = _pg_problem()
    if problem:
        missing(problem + " (set DISPATCHER_TEST_POSTGRES_URL)", "start it with .ci/services")
    schema = unique_name("ledger_")
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def stores(url: str) -> Iterator[Callable[[], StateStore]]:
    """Opens as many stores on `url` as a test wants (as separate processes would) and closes them."""
    opened: list[StateStore] = []

    def open_store() -> StateStore:
        opened.append(StateStore(url))
        return opened[-1]

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def ledger(stores: Callable[[], StateStore]) -> Ledger:
    return Ledger(stores())


class FakeClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(T0)
    monkeypatch.setattr(clock, "now", fake)
    return fake


def _together(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(0..n-1) on n threads released at the same moment."""
    barrier = threading.Barrier(n)

    def go(i: int) -> Any:
        barrier.wait(timeout=30)
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def _processes(script: str, args: list[list[str]], tmp_path: Path) -> list[str]:
    """Start one process per args, wait until each is ready, release them at once; return their stdouts."""
    path = tmp_path / f"worker_{uuid.uuid4().hex[:6]}.py"
    path.write_text(script, encoding="utf-8")
    go = tmp_path / f"go_{uuid.uuid4().hex[:6]}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(path), str(go), *a],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for a in args
    ]
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready", or EOF if it crashed: either way it is past start-up
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err[-2000:]
        outputs.append(out)
    return outputs


CLAIM_WORKER = """
import json, sys, time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from dispatcher.store.ledger import Ledger
from dispatcher.store.db import SCHEMA_VERSION, StateStore

ledger = Ledger(StateStore(sys.argv[2]))
print("ready", flush=True)
while not Path(sys.argv[1]).exists():
    time.sleep(0.002)
base = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
won = [i for i in range(20) if ledger.claim("daily", base + timedelta(minutes=i), sys.argv[3])]
print(json.dumps(won), flush=True)
"""

MIGRATE_WORKER = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from dispatcher.store.ledger import Ledger
from dispatcher.store.db import SCHEMA_VERSION, StateStore

print("ready", flush=True)
while not Path(sys.argv[1]).exists():
    time.sleep(0.002)
store = StateStore(sys.argv[2])
Ledger(store).record_missed("daily", [datetime(2026, 11, 28, tzinfo=UTC)])
print(store.schema_version(), flush=True)
"""

# -- claiming --


def test_second_claim_of_a_fire_time_returns_none(ledger: Ledger, now: FakeClock) -> None:
    run = ledger.claim("daily", T0, "host-a")
    assert run is not None
    assert (run.report_id, run.fire_time, run.state, run.attempts, run.owner) == (
        "daily",
        T0,
        "running",
        1,
        "host-a",
    )
    assert run.started_at == T0 and run.ended_at is None and run.task_ids == [] and run.receipts == {}
    assert ledger.claim("daily", T0, "host-b") is None
    assert ledger.claim("weekly", T0, "host-b") is not None
    assert [r.owner for r in ledger.history("daily")] == ["host-a"]


def test_claims_from_8_threads_take_each_fire_time_exactly_once(ledger: Ledger) -> None:
    times = [T0 + timedelta(minutes=i) for i in range(20)]
    won = _together(8, lambda i: [t for t in times if ledger.claim("daily", t, f"t{i}")])
    assert sorted(t for ts in won for t in ts) == times
    assert len(ledger.history("daily", limit=100)) == 20


def test_claims_from_3_processes_take_each_fire_time_exactly_once(url: str, tmp_path: Path) -> None:
    StateStore(url).close()  # schema first: this test is about claims, not the start-up race
    outputs = _processes(CLAIM_WORKER, [[url, f"proc{i}"] for i in range(3)], tmp_path)
    won = [i for out in outputs for i in json.loads(out.splitlines()[-1])]
    assert sorted(won) == list(range(20))


def test_same_instant_in_shanghai_and_utc_is_one_fire_time(ledger: Ledger) -> None:
    local = T0.astimezone(SHANGHAI)
    assert local.hour == 9
    run = ledger.claim("daily", local, "a")
    assert run is not None and run.fire_time == T0 and run.fire_time.utcoffset() == timedelta(0)
    assert ledger.claim("daily", T0, "b") is None
    assert ledger.claim("daily", T0 + timedelta(microseconds=400_000), "c") is None


def test_timestamps_are_stored_naive_utc_and_read_back_aware_utc(
    ledger: Ledger, stores: Callable[[], StateStore], now: FakeClock
) -> None:
    now.at = datetime(2026, 11, 28, 9, 0, 5, 123456, tzinfo=SHANGHAI)
    ledger.claim("daily", datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI), "a")
    with stores().engine.connect() as conn:
        fire, started = conn.execute(text("SELECT fire_time, started_at FROM dispatcher_runs")).one()
    assert str(fire).startswith("2026-11-28 01:00:00") and str(started).startswith("2026-11-28 01:00:05")
    (run,) = ledger.history()
    assert run.started_at == now.at and run.started_at is not None
    assert run.started_at.tzinfo is UTC and run.fire_time.tzinfo is UTC


def test_naive_datetimes_are_refused(ledger: Ledger) -> None:
    with pytest.raises(StateError, match="timezone-aware"):
        ledger.claim("daily", datetime(2026, 11, 28, 1, 0), "a")
    with pytest.raises(StateError, match="timezone-aware"):
        ledger.prune(datetime(2026, 11, 28))


def test_concurrent_retries_of_one_failed_run_have_one_winner(ledger: Ledger, now: FakeClock) -> None:
    run = ledger.claim("daily", T0, "a")
    assert run is not None
    assert ledger.claim_retry(run, "early") is None  # still running: nothing to retry
    ledger.finish(run.id, "failed", error="boom", next_retry_at=T0)
    failed = ledger.history()[0]
    now.at = T0 + timedelta(minutes=5)
    results = _together(6, lambda i: ledger.claim_retry(failed, f"r{i}"))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    won = winners[0]
    assert (won.state, won.attempts, won.started_at, won.next_retry_at) == ("running", 2, now.at, None)
    assert ledger.claim_retry(failed, "late") is None


# -- outcomes --


def test_finish_records_outcome_and_keeps_secrets_out_of_the_error(ledger: Ledger, now: FakeClock) -> None:
    run = ledger.claim("daily", T0, "a")
    assert run is not None
    now.at = T0 + timedelta(seconds=7)
    error = "GET /gettoken?appkey=k&appsecret=SuperSecretValue42 failed " + "x" * 5000
    ledger.finish(run.id, "sent", rows=3, msg_bytes=812, recipients=2, task_ids=[11, 12],
                  receipts={"read": 1, "unread": 1}, error=error)  # fmt: skip
    done = ledger.history()[0]
    assert (done.state, done.rows, done.msg_bytes, done.recipients) == ("sent", 3, 812, 2)
    assert (done.task_ids, done.receipts, done.ended_at) == ([11, 12], {"read": 1, "unread": 1}, now.at)
    assert done.error is not None and len(done.error) == 2000
    assert "SuperSecretValue42" not in done.error and "appsecret=***" in done.error
    as_json = json.loads(json.dumps(done.to_dict()))
    assert as_json["fire_time"] == "2026-11-28T01:00:00+00:00" and as_json["task_ids"] == [11, 12]


def test_finish_refuses_unknown_runs_and_states(ledger: Ledger) -> None:
    run = ledger.claim("daily", T0, "a")
    assert run is not None
    with pytest.raises(StateError, match="no run with id"):
        ledger.finish(run.id + 1000, "sent")
    with pytest.raises(StateError, match="unknown run state"):
        ledger.finish(run.id, "done")  # type: ignore[arg-type]


def test_record_missed_adds_only_fire_times_without_rows(ledger: Ledger) -> None:
    ledger.claim("daily", T0, "a")
    times = [T0 + timedelta(minutes=i) for i in range(3)]
    assert ledger.record_missed("daily", times, reason="daemon was down") == 2
    assert ledger.record_missed("daily", times) == 0
    by_time = {r.fire_time: r for r in ledger.history("daily")}
    assert by_time[T0].state == "running"
    assert [(by_time[t].state, by_time[t].error) for t in times[1:]] == [("missed", "daemon was down")] * 2


def test_concurrent_record_missed_inserts_each_fire_time_once(
    ledger: Ledger, stores: Callable[[], StateStore]
) -> None:
    other = Ledger(stores())
    times = [T0 + timedelta(seconds=2 * i) for i in range(600)]  # more than one insert batch
    added = _together(4, lambda i: (ledger, other)[i % 2].record_missed("daily", times[i * 100 :]))
    assert sum(added) == 600
    assert len(ledger.fire_times_with_rows("daily", T0 - timedelta(1), T0 + timedelta(1))) == 600


# -- reading --


def test_fire_times_with_rows_excludes_since_and_includes_until(ledger: Ledger) -> None:
    times = [T0 + timedelta(hours=i) for i in range(4)]
    ledger.record_missed("daily", times)
    ledger.record_missed("weekly", [T0 + timedelta(hours=1, minutes=30)])
    found = ledger.fire_times_with_rows("daily", times[0], times[2].astimezone(SHANGHAI))
    assert found == {times[1], times[2]}
    assert all(t.tzinfo is UTC for t in found)


def test_last_fire_time_is_the_latest_of_the_report_whatever_its_state(ledger: Ledger) -> None:
    assert ledger.last_fire_time("daily") is None
    ledger.claim("daily", T0, "a")
    ledger.record_missed("daily", [T0 + timedelta(hours=2)])
    ledger.claim("weekly", T0 + timedelta(days=3), "a")
    assert ledger.last_fire_time("daily") == T0 + timedelta(hours=2)


def test_history_is_newest_first_limited_and_filtered(ledger: Ledger) -> None:
    ledger.record_missed("daily", [T0 + timedelta(hours=i) for i in range(5)])
    ledger.record_missed("weekly", [T0 + timedelta(minutes=90)])
    assert [r.fire_time for r in ledger.history("daily", limit=3)] == [
        T0 + timedelta(hours=h) for h in (4, 3, 2)
    ]
    assert [r.report_id for r in ledger.history(limit=4)] == ["daily", "daily", "daily", "weekly"]


def test_last_runs_hold_the_latest_row_of_each_report(ledger: Ledger) -> None:
    ledger.record_missed("daily", [T0, T0 + timedelta(days=1)])
    ledger.claim("weekly", T0 - timedelta(days=7), "a")
    latest = ledger.last_runs()
    assert {k: (r.fire_time, r.state) for k, r in latest.items()} == {
        "daily": (T0 + timedelta(days=1), "missed"),
        "weekly": (T0 - timedelta(days=7), "running"),
    }


# -- housekeeping --


def test_reap_stale_fails_runs_older_than_their_reports_timeout_once(ledger: Ledger, now: FakeClock) -> None:
    fast, slow = ledger.claim("fast", T0, "dead"), ledger.claim("slow", T0, "dead")
    assert fast is not None and slow is not None
    timeouts = {"fast": 60.0, "slow": 600.0}
    assert ledger.reap_stale(timeouts.__getitem__, now=T0 + timedelta(seconds=60)) == []
    now.at = T0 + timedelta(seconds=120)
    reaped = _together(3, lambda i: ledger.reap_stale(timeouts.__getitem__))
    (run,) = [r for rs in reaped for r in rs]
    assert (run.id, run.state, run.next_retry_at) == (fast.id, "failed", now.at)
    assert run.error == "abandoned: still running after 60s (the process that ran it probably died)"
    assert {r.report_id: r.state for r in ledger.history()} == {"fast": "failed", "slow": "running"}
    assert [r.id for r in ledger.due_retries()] == [fast.id]


def test_due_retries_are_failed_runs_whose_time_has_come_oldest_first(ledger: Ledger) -> None:
    ids = {}
    for name, retry_in in [("b", 20), ("a", 10), ("later", 90), ("sent", 0)]:
        run = ledger.claim(name, T0, "x")
        assert run is not None
        ids[name] = run.id
        state = "sent" if name == "sent" else "failed"
        ledger.finish(run.id, state, next_retry_at=T0 + timedelta(minutes=retry_in))
    due = ledger.due_retries(now=T0 + timedelta(minutes=30))
    assert [r.id for r in due] == [ids["a"], ids["b"]]
    assert ledger.due_retries(now=T0) == []


def test_prune_deletes_only_rows_fired_before_the_cutoff(ledger: Ledger) -> None:
    ledger.record_missed("daily", [T0 + timedelta(days=i) for i in range(5)])
    assert ledger.prune(T0 + timedelta(days=2)) == 2
    assert [r.fire_time for r in ledger.history()][-1] == T0 + timedelta(days=2)
    assert ledger.prune(T0) == 0


def test_alert_allowed_once_per_hour_per_report(ledger: Ledger, now: FakeClock) -> None:
    assert ledger.alert_allowed("daily") is True
    assert ledger.alert_allowed("weekly") is True
    now.at = T0 + timedelta(minutes=30)
    assert ledger.alert_allowed("daily") is False
    now.at = T0 + timedelta(minutes=61)
    assert ledger.alert_allowed("daily") is True
    assert ledger.alert_allowed("daily", now=T0 + timedelta(minutes=100)) is False
    assert ledger.alert_allowed("daily", now=T0 + timedelta(minutes=100), every=timedelta(minutes=30))


def test_alert_allowed_once_across_ledgers_on_one_database(
    ledger: Ledger, stores: Callable[[], StateStore]
) -> None:
    other = Ledger(stores())
    assert ledger.alert_allowed("daily", now=T0) is True
    assert other.alert_allowed("daily", now=T0 + timedelta(minutes=5)) is False
    later = T0 + timedelta(hours=2)
    allowed = _together(6, lambda i: (ledger, other)[i % 2].alert_allowed("daily", now=later))
    assert sorted(allowed) == [False] * 5 + [True]
    first = T0 + timedelta(hours=5)
    fresh = _together(6, lambda i: (ledger, other)[i % 2].alert_allowed("weekly", now=first))
    assert sorted(fresh) == [False] * 5 + [True]


# -- start-up race --


def test_four_processes_opening_an_empty_store_at_once_all_start(url: str, tmp_path: Path) -> None:
    outputs = _processes(MIGRATE_WORKER, [[url]] * 4, tmp_path)
    assert [out.split()[-1] for out in outputs] == [str(SCHEMA_VERSION)] * 4
    store = StateStore(url)
    try:
        assert len(Ledger(store).history()) == 1
    finally:
        store.close()


def test_prune_keeps_each_reports_newest_row_and_runs_owed_a_retry(ledger: Ledger) -> None:
    ledger.record_missed("yearly", [T0])  # the only row of a rare report: catch-up plans from it
    ledger.record_missed("daily", [T0 + timedelta(days=i) for i in range(3)])
    owed = ledger.claim("retrying", T0, "me")
    assert owed is not None
    ledger.finish(owed.id, "failed", error="boom", next_retry_at=T0 + timedelta(days=400))
    newer = ledger.claim("retrying", T0 + timedelta(days=1), "me")
    assert newer is not None
    ledger.finish(newer.id, "sent")
    assert ledger.prune(T0 + timedelta(days=365)) == 2  # daily's two older rows only
    left = {(r.report_id, r.fire_time) for r in ledger.history(limit=100)}
    assert left == {
        ("yearly", T0),
        ("daily", T0 + timedelta(days=2)),
        ("retrying", T0),
        ("retrying", T0 + timedelta(days=1)),
    }
