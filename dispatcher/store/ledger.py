"""The run ledger: one row per (report, scheduled fire time), the arbiter of exactly-once delivery.

Several daemons may share one state database. Each claims a fire time by inserting its row
before running the query; the unique constraint lets exactly one insert win, and a process
that loses skips that fire time. Every write is one short transaction, so no lock is held
across a query or a delivery.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from dispatcher import clock
from dispatcher.errors import StateError
from dispatcher.redact import redact
from dispatcher.store import alerts, claims
from dispatcher.store.db import StateStore
from dispatcher.store.run import RETRYABLE_STATES, RUN_STATES, Run, RunState, Trigger
from dispatcher.store.run import run_from_row as _run
from dispatcher.store.schema import manual_runs, runs, utc

__all__ = ["RETRYABLE_STATES", "Ledger", "Run", "RunState"]

MAX_ERROR_CHARS = 2000
_MISSED_CHUNK = 500  # rows per multi-row INSERT: far below SQLite's bound-parameter limit


class Ledger:
    """Claims, outcomes, retries and alert throttling over the state store's database."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    @property
    def store(self) -> StateStore:
        """The state store, for the tables beside the ledger (alert state, run messages)."""
        return self._store

    # -- claiming --

    def claim(self, report_id: str, fire_time: datetime, owner: str) -> Run | None:
        """Take this fire time for this process; None when another process already holds it."""
        values = _started(report_id, fire_time, owner)
        with self._store.connect() as conn:
            try:
                with conn.begin():
                    key = conn.execute(runs.insert().values(values)).inserted_primary_key
            except IntegrityError:
                return None
            return _fetch(conn, key[0] if key else None)

    def claim_many(self, wanted: Iterable[tuple[str, datetime]], owner: str) -> list[Run]:
        """`claim` for many (report, fire time) pairs in few transactions: the runs this process won.

        Same race as `claim`: a fire time another process already holds is simply not returned.
        """
        rows = [_started(report_id, fire, owner) for report_id, fire in wanted]
        return [_run(row) for row in claims.insert_claims(self._store, rows)]

    def heartbeat(self, run_ids: Iterable[int], owner: str) -> int:
        """Refresh the rows `owner` still holds, so no reaper takes them; returns how many."""
        return claims.set_where_held(self._store, list(run_ids), owner, {"heartbeat_at": clock.now()})

    def confirm(self, run: Run, owner: str) -> bool:
        """Whether `owner` still holds this claim as it was made (refreshing it): a claim that waited
        for a worker may have been reaped and retried elsewhere meanwhile, if this process stalled."""
        change = (
            update(runs)
            .where(runs.c.id == run.id, runs.c.state == "running", runs.c.owner == owner,
                   runs.c.attempts == run.attempts)
            .values(heartbeat_at=clock.now())
        )  # fmt: skip
        with self._store.begin() as conn:
            return bool(conn.execute(change).rowcount == 1)

    def release(self, run_ids: Iterable[int], owner: str, error: str) -> int:
        """Hand back claims that never started: failed, retry due now, no attempt counted."""
        now = clock.now()
        values = {"state": "failed", "attempts": runs.c.attempts - 1, "error": _clean_error(error),
                  "ended_at": now, "next_retry_at": now}  # fmt: skip
        return claims.set_where_held(self._store, list(run_ids), owner, values)

    def claim_retry(self, run: Run, owner: str) -> Run | None:
        """Compare-and-set from the failed or partial attempt `run` saw; None when another process got
        there first."""
        if run.state not in RETRYABLE_STATES:
            return None
        change = (
            update(runs)
            .where(runs.c.id == run.id, runs.c.state == run.state, runs.c.attempts == run.attempts)
            .values(
                state="running",
                attempts=runs.c.attempts + 1,
                started_at=clock.now(),
                ended_at=None,
                owner=owner,
                next_retry_at=None,
            )
        )
        with self._store.begin() as conn:
            if conn.execute(change).rowcount != 1:
                return None
            return _fetch(conn, run.id)

    def claim_rerun(self, run: Run, owner: str, *, fresh: bool = False) -> Run | None:
        """Compare-and-set any finished row back to running (a backfill); None when it changed first.

        `fresh` forgets the recorded batches, so everyone is sent to again (`backfill --force`);
        otherwise a partial run sends only to whoever it has not reached, as a retry would.
        """
        if run.state == "running":
            return None
        values: dict[str, Any] = {"state": "running", "attempts": runs.c.attempts + 1,
                                  "started_at": clock.now(), "ended_at": None, "owner": owner,
                                  "next_retry_at": None}  # fmt: skip
        if fresh:
            values |= {"batches": None, "task_ids": "[]", "receipts": "{}", "recipients": None, "error": None}
        change = (
            update(runs)
            .where(runs.c.id == run.id, runs.c.state == run.state, runs.c.attempts == run.attempts)
            .values(values)
        )
        with self._store.begin() as conn:
            if conn.execute(change).rowcount != 1:
                return None
            return _fetch(conn, run.id)

    def finish(
        self,
        run_id: int,
        state: RunState,
        *,
        rows: int | None = None,
        msg_bytes: int | None = None,
        recipients: int | None = None,
        task_ids: Iterable[int] = (),
        receipts: dict[str, int] | None = None,
        error: str | None = None,
        next_retry_at: datetime | None = None,
        batches: dict[str, list[dict[str, Any]]] | None = None,
        trigger: Trigger = "schedule",
    ) -> None:
        """Record a run's outcome; `batches` None leaves the recorded batches as they are."""
        _check_state(state)
        table = manual_runs if trigger == "manual" else runs
        values = {
            "state": state,
            "ended_at": clock.now(),
            "rows": rows,
            "msg_bytes": msg_bytes,
            "recipients": recipients,
            "task_ids": json.dumps([int(t) for t in task_ids]),
            "receipts": json.dumps(dict(receipts or {}), ensure_ascii=False),
            "error": _clean_error(error),
            "next_retry_at": None if next_retry_at is None else utc(next_retry_at),
        }
        if batches is not None:
            values["batches"] = json.dumps(batches, ensure_ascii=False)
        change = update(table).where(table.c.id == run_id).values(values)
        with self._store.begin() as conn:
            if conn.execute(change).rowcount != 1:
                raise StateError(f"the ledger has no run with id {run_id}", hint="was it pruned?")

    def stop_retrying(self, run: Run, note: str) -> None:
        """No more retries for `run`; its state, recipients and batches stay as recorded.

        A partial run stays partial: the people an earlier attempt reached did get the message.
        """
        error = _clean_error(f"{run.error or ''} ({note})")
        change = (
            update(runs)
            .where(runs.c.id == run.id)
            .values(next_retry_at=None, ended_at=clock.now(), error=error)
        )
        with self._store.begin() as conn:
            conn.execute(change)

    def start_manual(self, report_id: str, fire_time: datetime, owner: str) -> Run:
        """A `dispatcher send` of this fire time: recorded in history, never a claim."""
        values = _started(report_id, fire_time, owner)
        with self._store.begin() as conn:
            key = conn.execute(manual_runs.insert().values(values)).inserted_primary_key
            return _fetch(conn, key[0] if key else None, manual_runs)

    def record_missed(self, report_id: str, fire_times: Iterable[datetime], reason: str = "missed") -> int:
        """Mark fire times nobody ran, leaving existing rows alone; returns how many rows were added."""
        now = clock.now()
        wanted = sorted({_fire(t) for t in fire_times})
        base = {"report_id": report_id, "state": "missed", "attempts": 0, "ended_at": now}
        base |= {"error": _clean_error(reason), "task_ids": "[]", "receipts": "{}"}
        added = 0
        for chunk in _chunks(wanted, _MISSED_CHUNK):
            added += self._insert_missing([{**base, "fire_time": t} for t in chunk])
        return added

    # -- reading --

    def fire_times_with_rows(self, report_id: str, since: datetime, until: datetime) -> set[datetime]:
        """Fire times in (since, until] that already have a row, whatever its state."""
        return self.fire_times_with_rows_of({report_id: since}, until)[report_id]

    def get(self, report_id: str, fire_time: datetime) -> Run | None:
        """The scheduled run of this report at this fire time, if the ledger has one."""
        query = select(runs).where(runs.c.report_id == report_id, runs.c.fire_time == _fire(fire_time))
        found = self._select(query)
        return found[0] if found else None

    def last_fire_times(self, report_ids: Sequence[str]) -> dict[str, datetime]:
        """`last_fire_time` of many reports in one query; reports without a row are left out."""
        return claims.last_fire_times(self._store, report_ids)

    def fire_times_with_rows_of(
        self, since: dict[str, datetime], until: datetime
    ) -> dict[str, set[datetime]]:
        """`fire_times_with_rows` of many reports, each from its own `since`, in one query."""
        return claims.fire_times_with_rows(self._store, since, until)

    def last_fire_time(self, report_id: str) -> datetime | None:
        return self.last_fire_times([report_id]).get(report_id)

    def due_retries(self, now: datetime | None = None) -> list[Run]:
        """Failed or partial runs whose retry time has come, oldest first."""
        query = (
            select(runs)
            .where(runs.c.state.in_(RETRYABLE_STATES), runs.c.next_retry_at <= utc(now or clock.now()))
            .order_by(runs.c.next_retry_at, runs.c.fire_time, runs.c.id)
        )
        return self._select(query)

    def history(self, report_id: str | None = None, limit: int = 20) -> list[Run]:
        """Scheduled and manual runs, newest fire time first (a manual run after its scheduled twin)."""
        found: list[Run] = []
        for table in (runs, manual_runs):
            query = select(table).order_by(table.c.fire_time.desc(), table.c.id.desc()).limit(limit)
            if report_id is not None:
                query = query.where(table.c.report_id == report_id)
            found += self._select(query, table)
        found.sort(key=lambda r: (r.fire_time, r.started_at or r.fire_time), reverse=True)
        return found[:limit]

    def last_runs(self) -> dict[str, Run]:
        """The latest row of each report."""
        latest = (
            select(runs.c.report_id, func.max(runs.c.fire_time).label("fire_time"))
            .group_by(runs.c.report_id)
            .subquery()
        )
        query = select(runs).join(
            latest, and_(runs.c.report_id == latest.c.report_id, runs.c.fire_time == latest.c.fire_time)
        )
        return {run.report_id: run for run in self._select(query)}

    # -- housekeeping --

    def reap_stale(self, timeout_for: Callable[[str], float], now: datetime | None = None) -> list[Run]:
        """Fail runs whose holder has not been heard of (claim or last heartbeat) for longer than their
        report's timeout, so they get retried."""
        now = utc(now or clock.now())
        running = self._select(select(runs).where(runs.c.state == "running"))
        reaped = []
        for run in running:
            timeout = float(timeout_for(run.report_id))
            heard = max((t for t in (run.started_at, run.heartbeat_at) if t is not None), default=None)
            if heard is not None and heard < now - timedelta(seconds=timeout):
                taken = self._reap(run, now, timeout)
                if taken is not None:
                    reaped.append(taken)
        return reaped

    def prune(self, older_than: datetime) -> int:
        """Delete rows whose fire time is before `older_than`; returns how many.

        Each report's newest row survives (catch-up plans from it: without it a restart would
        treat the report as new) and so does every run still owed a retry.
        """
        newer = runs.alias("newer")
        has_newer = (
            select(newer.c.id)
            .where(newer.c.report_id == runs.c.report_id, newer.c.fire_time > runs.c.fire_time)
            .exists()
        )
        owed = and_(runs.c.state.in_(RETRYABLE_STATES), runs.c.next_retry_at.is_not(None))
        doomed = delete(runs).where(runs.c.fire_time < utc(older_than), has_newer, ~owed)
        manual = delete(manual_runs).where(manual_runs.c.fire_time < utc(older_than))
        with self._store.begin() as conn:
            return conn.execute(doomed).rowcount + conn.execute(manual).rowcount

    def alert_allowed(
        self, report_id: str, now: datetime | None = None, every: timedelta = timedelta(hours=1)
    ) -> bool:
        """True (and remembered) for at most one caller per report per `every`, across processes."""
        return alerts.alert_allowed(self._store, report_id, utc(now or clock.now()), every)

    # -- internals --

    def _reap(self, run: Run, now: datetime, timeout: float) -> Run | None:
        error = f"abandoned: still running after {_seconds(timeout)}s (the process that ran it probably died)"
        # Matching on attempts too keeps a reaper from failing a retry that started meanwhile, and on
        # the heartbeat from failing a row its holder refreshed since it was read.
        silent = or_(runs.c.heartbeat_at.is_(None), runs.c.heartbeat_at < now - timedelta(seconds=timeout))
        change = (
            update(runs)
            .where(runs.c.id == run.id, runs.c.state == "running", runs.c.attempts == run.attempts, silent)
            .values(state="failed", error=error, ended_at=now, next_retry_at=now)
        )
        with self._store.begin() as conn:
            if conn.execute(change).rowcount != 1:
                return None
            return _fetch(conn, run.id)

    def _insert_missing(self, rows: list[dict[str, Any]]) -> int:
        """Insert the rows that do not exist yet; a concurrent insert of the same row is not an error."""
        with self._store.connect() as conn:
            dialect = conn.dialect.name
            if dialect in ("sqlite", "postgresql"):
                insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
                statement = (
                    insert(runs)
                    .values(rows)
                    .on_conflict_do_nothing(index_elements=["report_id", "fire_time"])
                )
                with conn.begin():
                    result = conn.execute(statement, execution_options={"preserve_rowcount": True})
                    return max(result.rowcount, 0)
            return sum(_insert_one(conn, row) for row in rows)

    def _select(self, query: Any, table: Table = runs) -> list[Run]:
        with self._store.connect() as conn:
            return [_run(row, table) for row in conn.execute(query)]


def _insert_one(conn: Connection, row: dict[str, Any]) -> int:
    try:
        with conn.begin():
            conn.execute(runs.insert().values(row))
    except IntegrityError:
        return 0
    return 1


def _fetch(conn: Connection, run_id: int | None, table: Table = runs) -> Run:
    row = None if run_id is None else conn.execute(select(table).where(table.c.id == run_id)).one_or_none()
    if row is None:
        raise StateError(f"run {run_id} vanished from the ledger while being written")
    return _run(row, table)


def _started(report_id: str, fire_time: datetime, owner: str) -> dict[str, Any]:
    """The row of a run that starts now: a scheduled claim and a manual send begin alike."""
    return {
        "report_id": report_id,
        "fire_time": _fire(fire_time),
        "state": "running",
        "attempts": 1,
        "started_at": clock.now(),
        "owner": owner,
        "task_ids": "[]",
        "receipts": "{}",
    }


def _fire(value: datetime) -> datetime:
    # Fire times are whole seconds; dropping stray microseconds keeps uniqueness exact on every backend.
    return utc(value).replace(microsecond=0)


def _check_state(state: str) -> None:
    if state not in RUN_STATES:
        raise StateError(f"unknown run state {state!r}", hint=f"one of: {', '.join(sorted(RUN_STATES))}")


def _clean_error(error: str | None) -> str | None:
    # Callers promise no secrets; redacting anyway costs little and a leak would cost much.
    return None if error is None else redact(error)[:MAX_ERROR_CHARS]


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _chunks(items: Sequence[datetime], size: int) -> Iterator[Sequence[datetime]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
