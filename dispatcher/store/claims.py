"""The ledger's batched statements for a burst of due reports (see `Ledger.claim_many`).

A thousand reports due at one minute must all be claimed within a second or two: one query per
question for all of them, and claims inserted a few hundred rows per transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Row, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from dispatcher.store.db import StateStore
from dispatcher.store.schema import runs, utc

CHUNK = 500  # rows or ids per statement: far below SQLite's bound-parameter limit

T = TypeVar("T")


def last_fire_times(store: StateStore, report_ids: Sequence[str]) -> dict[str, datetime]:
    """Each report's latest fire time in the ledger; reports without a row are left out."""
    found: dict[str, datetime] = {}
    with store.connect() as conn:
        for chunk in chunks(report_ids):
            query = (
                select(runs.c.report_id, func.max(runs.c.fire_time))
                .where(runs.c.report_id.in_(chunk))
                .group_by(runs.c.report_id)
            )
            found |= {rid: utc(fire) for rid, fire in conn.execute(query) if fire is not None}
    return found


def fire_times_with_rows(
    store: StateStore, since: dict[str, datetime], until: datetime
) -> dict[str, set[datetime]]:
    """Per report, the fire times in (since[report], until] that have a row, whatever its state."""
    found: dict[str, set[datetime]] = {rid: set() for rid in since}
    with store.connect() as conn:
        for chunk in chunks(sorted(since)):
            earliest = utc(min(since[rid] for rid in chunk))
            query = select(runs.c.report_id, runs.c.fire_time).where(
                runs.c.report_id.in_(chunk), runs.c.fire_time > earliest, runs.c.fire_time <= utc(until)
            )
            for rid, fire in conn.execute(query):
                if utc(fire) > utc(since[rid]):
                    found[rid].add(utc(fire))
    return found


def insert_claims(store: StateStore, rows: list[dict[str, Any]]) -> list[Row[Any]]:
    """Insert the rows no one holds yet; returns the inserted ones (the claims this process won).

    Rows go in (report, fire time) order, so two replicas claiming the same burst on PostgreSQL
    wait for each other on the unique index in one order and cannot deadlock.
    """
    rows = sorted(rows, key=lambda row: (row["report_id"], row["fire_time"]))
    won: list[Row[Any]] = []
    with store.connect() as conn:
        dialect = conn.dialect.name
        for chunk in chunks(rows):
            with conn.begin():
                if dialect in ("sqlite", "postgresql"):
                    won += _insert_returning(conn, chunk, dialect)
                else:
                    won += [row for row in (_insert_one(conn, values) for values in chunk) if row is not None]
    return won


def set_where_held(store: StateStore, ids: Sequence[int], owner: str, values: dict[str, Any]) -> int:
    """Update the `running` rows among `ids` that `owner` still holds; returns how many."""
    changed = 0
    with store.begin() as conn:
        for chunk in chunks(sorted(ids)):
            change = (
                update(runs)
                .where(runs.c.id.in_(chunk), runs.c.state == "running", runs.c.owner == owner)
                .values(values)
            )
            changed += max(conn.execute(change).rowcount, 0)
    return changed


def chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _insert_returning(conn: Connection, rows: Sequence[dict[str, Any]], dialect: str) -> list[Row[Any]]:
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = (
        insert(runs)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=["report_id", "fire_time"])
        .returning(*runs.c)
    )
    return list(conn.execute(statement))


def _insert_one(conn: Connection, values: dict[str, Any]) -> Row[Any] | None:
    """MariaDB: one row at a time; a savepoint keeps a lost race from undoing the chunk's wins."""
    try:
        with conn.begin_nested():
            key = conn.execute(runs.insert().values(values)).inserted_primary_key
    except IntegrityError:
        return None
    return None if key is None else conn.execute(select(runs).where(runs.c.id == key[0])).one()
