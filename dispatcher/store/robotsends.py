"""The robots' shared send window: how many messages each webhook took in the last minute.

A robot accepts at most 20 messages a minute and throttles one that goes over for 10 minutes
[custom-robots-send-group-messages]. Every replica reserves its sends here, so together they stay
under the limit. A reservation is one short transaction: take the robot's lock row, count, insert.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete, insert, select, update

from dispatcher.store.db import StateStore, ensure_row
from dispatcher.store.schema import robot_locks, robot_sends


class RobotSends:
    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._known: set[str] = set()  # robots whose lock row this process has seen

    def reserve(self, key: str, now_ms: Callable[[], int], limit: int, window_ms: int) -> int | None:
        """Record one send now if fewer than `limit` fall in the last `window_ms`; else the
        milliseconds until one leaves the window.

        The time is read once the lock is held: read before, it could be older than a send
        another replica recorded while this one waited for the lock.
        """
        self._lock_row(key)
        with self._store.begin() as conn:
            # The update takes the row's write lock (the database's, on SQLite) until commit.
            conn.execute(
                update(robot_locks)
                .where(robot_locks.c.robot_key == key)
                .values(reservations=robot_locks.c.reservations + 1)
            )
            now = now_ms()
            mine = robot_sends.c.robot_key == key
            # A send stamped after now (the clock went back) counts from now: left in the future,
            # it would hold the window for as long as the step (issue 22, item 9).
            conn.execute(
                update(robot_sends).where(mine, robot_sends.c.sent_at_ms > now).values(sent_at_ms=now)
            )
            conn.execute(delete(robot_sends).where(mine, robot_sends.c.sent_at_ms <= now - window_ms))
            recent = (
                conn.execute(
                    select(robot_sends.c.sent_at_ms)
                    .where(mine, robot_sends.c.sent_at_ms > now - window_ms)
                    .order_by(robot_sends.c.sent_at_ms)
                )
                .scalars()
                .all()
            )
            if len(recent) >= limit:
                return max(int(recent[len(recent) - limit]) + window_ms - now, 1)
            conn.execute(insert(robot_sends).values(robot_key=key, sent_at_ms=now))
            return None

    def shift(self, key: str, ms: int) -> None:
        """Move `key`'s sends `ms` later: the wall clock jumped forward, their age is kept."""
        with self._store.begin() as conn:
            conn.execute(
                update(robot_sends)
                .where(robot_sends.c.robot_key == key)
                .values(sent_at_ms=robot_sends.c.sent_at_ms + ms)
            )

    def recent(self, key: str, now_ms: int, window_ms: int) -> int:
        query = select(robot_sends.c.id).where(
            robot_sends.c.robot_key == key, robot_sends.c.sent_at_ms > now_ms - window_ms
        )
        with self._store.connect() as conn:
            return len(conn.execute(query).all())

    def _lock_row(self, key: str) -> None:
        if key not in self._known:
            ensure_row(self._store, robot_locks, robot_locks.c.robot_key, key, reservations=0)
            self._known.add(key)
