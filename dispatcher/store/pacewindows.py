"""DingTalk's per-app sliding windows, kept here so that every replica shares one allowance.

DingTalk counts its limits per app, whatever the number of processes [call-frequency-limit]. A
reservation is one short transaction, as for the robots (`robotsends`): take the key's lock row,
read the time, forget what left the window, count, insert. Units are stamped when their request
returns (`release`); a reservation still in flight after `stale_ms` belongs to a process that
died and stops counting. Times are wall-clock milliseconds: replicas compare them across hosts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dispatcher.store.db import StateStore
from dispatcher.store.schema import pace_locks, pace_units

log = logging.getLogger(__name__)

STALE_MS = 120_000  # far beyond any request's timeout: the holder must be gone
IN_FLIGHT_POLL_MS = 50  # only in-flight units block: another replica's release cannot notify us


@dataclass(frozen=True)
class Admission:
    """Either a reservation's id, or the milliseconds worth waiting before asking again."""

    reservation: int | None
    wait_ms: int = 0


class PaceWindows:
    def __init__(self, store: StateStore, *, stale_ms: int = STALE_MS) -> None:
        self._store = store
        self.stale_ms = stale_ms
        self._known: set[str] = set()  # keys whose lock row this process has seen

    def reserve(
        self, key: str, units: int, limit: int, window_ms: int, now_ms: Callable[[], int]
    ) -> Admission:
        """Reserve `units` of `key` if they fit under `limit` in the last `window_ms`.

        The time is read once the lock is held: read before, it could be older than a release
        another replica recorded while this one waited for the lock.
        """
        self._lock_row(key)
        with self._store.begin() as conn:
            # The update takes the row's write lock (the database's, on SQLite) until commit.
            conn.execute(
                update(pace_locks)
                .where(pace_locks.c.pace_key == key)
                .values(reservations=pace_locks.c.reservations + 1)
            )
            now = now_ms()
            mine = pace_units.c.pace_key == key
            gone = or_(
                pace_units.c.released_at_ms < now - window_ms,
                and_(
                    pace_units.c.released_at_ms.is_(None), pace_units.c.reserved_at_ms < now - self.stale_ms
                ),
            )
            conn.execute(delete(pace_units).where(mine, gone))
            rows = conn.execute(
                select(pace_units.c.units, pace_units.c.reserved_at_ms, pace_units.c.released_at_ms).where(
                    mine
                )
            ).all()
            wait = _wait_ms(
                [(int(u), int(r), f) for u, r, f in rows], units, limit, window_ms, now, self.stale_ms
            )
            if wait is not None:
                return Admission(None, wait)
            inserted = conn.execute(insert(pace_units).values(pace_key=key, units=units, reserved_at_ms=now))
            assert inserted.inserted_primary_key is not None
            return Admission(int(inserted.inserted_primary_key[0]))

    def release(self, reservation: int, at_ms: int) -> None:
        """Stamp a reservation with the time its request returned.

        A failure is logged, not raised: the request is done, and an unstamped reservation only
        counts for longer (until `stale_ms`), which errs on the safe side.
        """
        try:
            with self._store.begin() as conn:
                conn.execute(
                    update(pace_units).where(pace_units.c.id == reservation).values(released_at_ms=at_ms)
                )
        except SQLAlchemyError as exc:
            log.warning("could not stamp a pacing reservation, it counts until it goes stale: %s", exc)

    def units(self, key: str) -> int:
        """Units of `key` in the table, whatever their age (tests and measurements)."""
        query = select(pace_units.c.units).where(pace_units.c.pace_key == key)
        with self._store.connect() as conn:
            return sum(conn.execute(query).scalars())

    def _lock_row(self, key: str) -> None:
        if key in self._known:
            return
        with self._store.connect() as conn:
            with conn.begin():
                found = conn.execute(select(pace_locks.c.pace_key).where(pace_locks.c.pace_key == key))
                exists = found.first() is not None
            if not exists:
                try:
                    with conn.begin():
                        conn.execute(insert(pace_locks).values(pace_key=key, reservations=0))
                except IntegrityError:
                    pass  # another replica created it first
        self._known.add(key)


def _wait_ms(
    rows: list[tuple[int, int, int | None]], units: int, limit: int, window_ms: int, now: int, stale_ms: int
) -> int | None:
    """None if `units` fit now, else how long until enough of `rows` leave the window."""
    excess = sum(row[0] for row in rows) + units - limit
    if excess <= 0:
        return None
    for count, _, released in sorted((r for r in rows if r[2] is not None), key=lambda r: r[2] or 0):
        excess -= count
        if excess <= 0:
            assert released is not None
            return released + window_ms - now + 1  # step past the closed window's edge
    oldest = min(r[1] for r in rows if r[2] is None)
    return max(1, min(IN_FLIGHT_POLL_MS, oldest + stale_ms - now + 1))
