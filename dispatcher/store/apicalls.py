"""DingTalk calls that count against the organisation's monthly quota, counted in the state store.

DingTalk's standard edition allows 5,000 calls a month to every API not on its exempt list, all
apps together; past that it answers 90020 [how-to-process-api-throttling-on-the-dingtalk-server].
Tokens and the address book are exempt. Every replica adds to the same rows with one atomic
UPSERT per call, so the month's figure is the organisation's whole dispatcher traffic. Counting
never fails a delivery: a state-store failure is logged and the call goes uncounted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dispatcher import clock, logs
from dispatcher.errors import StateError
from dispatcher.store.db import StateStore
from dispatcher.store.schema import api_calls, quota_warnings

log = logging.getLogger(__name__)

COUNTED = ("asyncsend_v2", "getsendresult", "getsendprogress", "recall", "media_upload", "robot_send")
WARN_AT = 0.8  # share of the quota at which the admins hear about it, once a month

OnWarn = Callable[[str, int, int], None]  # month, calls used, quota


def month_of(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%Y-%m")


class ApiCounter:
    """Counts quota calls per calendar month and endpoint; warns once a month at 80% of `quota`."""

    def __init__(self, store: StateStore, zone: ZoneInfo, quota: int, on_warn: OnWarn | None = None) -> None:
        self.store = store
        self.zone = zone
        self.quota = quota
        self.on_warn = on_warn
        self._warned: set[str] = set()  # months this process knows were warned about
        self._lock = threading.Lock()

    def month(self) -> str:
        return month_of(clock.now(), self.zone)

    def count(self, endpoint: str) -> None:
        """One call to `endpoint`, if it counts. Never raises: a delivery outranks its tally."""
        if endpoint not in COUNTED:
            return
        month = self.month()
        try:
            with self.store.begin() as conn:
                _increment(conn, month, endpoint)
                total = self._total_if_needed(conn, month)
        except (StateError, SQLAlchemyError) as exc:
            log.warning("could not count a %s call in the state store: %s", endpoint, exc)
            return
        if total is not None and total >= WARN_AT * self.quota:
            self._warn(month, total)

    def hook(self, inner: Callable[[str, int | None, float], None] | None) -> Callable[..., None]:
        """An `on_call` hook that counts each call DingTalk answered, then calls `inner`."""

        def on_call(endpoint: str, errcode: int | None, seconds: float) -> None:
            if errcode is not None:  # no answer: the call may never have reached DingTalk
                self.count(endpoint)
            if inner is not None:
                inner(endpoint, errcode, seconds)

        return on_call

    def used(self, month: str | None = None) -> dict[str, int]:
        """Calls per endpoint in `month` (default: this one), every replica's together."""
        month = month or self.month()
        query = select(api_calls.c.endpoint, api_calls.c.calls).where(api_calls.c.month == month)
        with self.store.connect() as conn:
            return {endpoint: int(calls) for endpoint, calls in conn.execute(query).all()}

    def _total_if_needed(self, conn: Connection, month: str) -> int | None:
        if not self.quota or month in self._warned:
            return None
        query = select(api_calls.c.calls).where(api_calls.c.month == month)
        return sum(int(n) for n in conn.execute(query).scalars())

    def _warn(self, month: str, total: int) -> None:
        with self._lock:
            if month in self._warned:
                return
            self._warned.add(month)
        try:  # the raw engine: the store's guard would turn the expected IntegrityError into a StateError
            with self.store.engine.begin() as conn:
                conn.execute(quota_warnings.insert().values(month=month, used=total))
        except IntegrityError:
            return  # another replica (or an earlier run) already warned this month
        except SQLAlchemyError as exc:
            log.warning("could not record the monthly quota warning: %s", exc)
            return
        logs.event(
            "quota.warning", logging.WARNING, month=month, used=total, quota=self.quota,
            share=f"{total / self.quota:.0%}",
        )  # fmt: skip
        if self.on_warn is not None:
            # Not inside the DingTalk call that triggered it: the alert is a send of its own.
            threading.Thread(target=self._notify, args=(month, total), daemon=True).start()

    def _notify(self, month: str, total: int) -> None:
        assert self.on_warn is not None
        try:
            self.on_warn(month, total, self.quota)
        except Exception:  # an alert that fails must not take anything else down
            log.exception("the monthly quota alert failed")


def _increment(conn: Connection, month: str, endpoint: str) -> None:
    """One atomic UPSERT: concurrent replicas never lose a count."""
    row: dict[str, Any] = {"month": month, "endpoint": endpoint, "calls": 1}
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        stmt = insert(api_calls).values(row)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[api_calls.c.month, api_calls.c.endpoint],
                set_={"calls": api_calls.c.calls + 1},
            )
        )
    elif dialect in ("mysql", "mariadb"):
        conn.execute(mysql.insert(api_calls).values(row).on_duplicate_key_update(calls=api_calls.c.calls + 1))
    else:
        bump = update(api_calls).where(api_calls.c.month == month, api_calls.c.endpoint == endpoint)
        if conn.execute(bump.values(calls=api_calls.c.calls + 1)).rowcount == 0:
            conn.execute(api_calls.insert().values(row))
