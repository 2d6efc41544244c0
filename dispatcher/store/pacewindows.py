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

from sqlalchemy import Connection, and_, case, delete, func, insert, or_, select, update

from dispatcher.errors import StateError
from dispatcher.store.db import StateStore, ensure_row
from dispatcher.store.schema import pace_locks, pace_units

log = logging.getLogger(__name__)
_UNITS, _LOCKS = pace_units.c, pace_locks.c

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
                .values(reservations=_LOCKS.reservations + 1)
            )
            now = now_ms()
            mine = _UNITS.pace_key == key
            _clamp_to(conn, key, now)
            stale = and_(_UNITS.released_at_ms.is_(None), _UNITS.reserved_at_ms < now - self.stale_ms)
            conn.execute(delete(pace_units).where(mine, or_(_UNITS.released_at_ms < now - window_ms, stale)))
            used = conn.execute(select(func.coalesce(func.sum(_UNITS.units), 0)).where(mine)).scalar_one()
            excess = int(used) + units - limit
            if excess > 0:
                return Admission(None, self._wait_ms(conn, key, excess, window_ms, now))
            inserted = conn.execute(insert(pace_units).values(pace_key=key, units=units, reserved_at_ms=now))
            assert inserted.inserted_primary_key is not None
            return Admission(int(inserted.inserted_primary_key[0]))

    def _wait_ms(self, conn: Connection, key: str, excess: int, window_ms: int, now: int) -> int:
        """How long until `excess` units leave the window: the oldest stamped ones first.

        Each row holds at least one unit, so the first `excess` rows always suffice: a full
        window of small batches is never read whole.
        """
        stamped = (
            select(_UNITS.units, _UNITS.released_at_ms)
            .where(_UNITS.pace_key == key, _UNITS.released_at_ms.is_not(None))
            .order_by(_UNITS.released_at_ms)
            .limit(excess)
        )
        for count, released in conn.execute(stamped):
            excess -= int(count)
            if excess <= 0:
                return int(released) + window_ms - now + 1  # step past the closed window's edge
        # Only in-flight units block: poll, or wait until the oldest goes stale.
        oldest = conn.execute(
            select(func.min(_UNITS.reserved_at_ms)).where(
                _UNITS.pace_key == key, _UNITS.released_at_ms.is_(None)
            )
        ).scalar_one()
        return max(1, min(IN_FLIGHT_POLL_MS, int(oldest or now) + self.stale_ms - now + 1))

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
        except StateError as exc:
            log.warning("could not stamp a pacing reservation, it counts until it goes stale: %s", exc)

    def shift(self, key: str, ms: int) -> None:
        """Move `key`'s stamps `ms` later: the wall clock jumped forward, their age is kept."""
        with self._store.begin() as conn:
            conn.execute(
                update(pace_units)
                .where(_UNITS.pace_key == key)
                .values(reserved_at_ms=_UNITS.reserved_at_ms + ms, released_at_ms=_UNITS.released_at_ms + ms)
            )

    def units(self, key: str) -> int:
        """Units of `key` in the table, whatever their age (tests and measurements)."""
        query = select(pace_units.c.units).where(pace_units.c.pace_key == key)
        with self._store.connect() as conn:
            return sum(conn.execute(query).scalars())

    def _lock_row(self, key: str) -> None:
        if key not in self._known:
            ensure_row(self._store, pace_locks, pace_locks.c.pace_key, key, reservations=0)
            self._known.add(key)


def _clamp_to(conn: Connection, key: str, now: int) -> None:
    """Stamps after `now` (the wall clock went back, or another host's runs ahead) count from now.

    Left in the future they would hold the window for as long as the clock was stepped back:
    an hour's step stalled sending for an hour (issue 22, item 9). Counting them from now keeps
    them for one more window at most, which errs on the safe side.
    """
    released, reserved = _UNITS.released_at_ms, _UNITS.reserved_at_ms
    conn.execute(
        update(pace_units)
        .where(_UNITS.pace_key == key, or_(released > now, reserved > now))
        .values(
            released_at_ms=case((released > now, now), else_=released),
            reserved_at_ms=case((reserved > now, now), else_=reserved),
        )
    )
