"""Alert state (`alert:` reports): ok or firing, since when, last notified; one decision per fire time.

Replicas share it. A decision is a compare-and-set on the state row (matching the `last_fire_time`
the decider read) plus an insert into `dispatcher_alert_events`, whose unique (report, fire time)
makes a second decision of the same fire time impossible: the loser reads the winner's event.
A retry of a run reads the event its first attempt recorded, so it delivers the same decision.

Not to be confused with `alerts.py`, which throttles failure alerts to the admins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from dispatcher import clock
from dispatcher.errors import StateError
from dispatcher.store.db import StateStore
from dispatcher.store.schema import alert_events, alert_state, utc

Event = Literal["fired", "reminded", "suppressed", "recovered", "cleared", "late"]
SENDS: frozenset[str] = frozenset({"fired", "reminded", "late"})
_ATTEMPTS = 5


@dataclass(frozen=True)
class AlertState:
    report_id: str
    state: Literal["ok", "firing"]
    since: datetime | None
    runs: int
    last_notified: datetime | None
    last_fire_time: datetime | None


@dataclass
class EventCounts:
    """An alert's recent decisions: event -> how many, and the earliest fire time among them."""

    counts: dict[str, int]
    first: datetime


@dataclass(frozen=True)
class Decision:
    """What one fire time of an alert does. `since`: when the firing began (for a recovery: began)."""

    event: Event
    since: datetime | None
    runs: int
    first: bool  # this call made the decision (False: it was made before, e.g. by another replica)

    @property
    def sends(self) -> bool:
        return self.event in SENDS


def next_state(
    old: AlertState, fire: datetime, firing: bool, repeat: float | None
) -> tuple[AlertState, Event]:
    """The pure transition: (state, fire time, rows > 0, repeat) -> new state and its event."""
    if firing and old.state == "ok":
        return AlertState(old.report_id, "firing", fire, 1, fire, fire), "fired"
    if firing:
        runs = old.runs + 1
        due = repeat is not None and (
            old.last_notified is None or fire - old.last_notified >= timedelta(seconds=repeat)
        )
        notified = fire if due else old.last_notified
        return AlertState(old.report_id, "firing", old.since, runs, notified, fire), (
            "reminded" if due else "suppressed"
        )
    if old.state == "firing":
        return AlertState(old.report_id, "ok", fire, 0, old.last_notified, fire), "recovered"
    return AlertState(old.report_id, "ok", old.since, 0, old.last_notified, fire), "cleared"


class AlertStates:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def get(self, report_id: str) -> AlertState | None:
        with self._store.connect() as conn:
            return _read(conn, report_id)

    def all(self) -> dict[str, AlertState]:
        with self._store.connect() as conn:
            return {r.report_id: _state(r._mapping) for r in conn.execute(select(alert_state))}

    def decide(self, report_id: str, fire: datetime, firing: bool, repeat: float | None) -> Decision:
        """This fire time's decision, made once across every replica and remembered."""
        fire = utc(fire).replace(microsecond=0)
        for _ in range(_ATTEMPTS):
            with self._store.connect() as conn:
                # The state before the event: read the other way round, a replica deciding this
                # fire time in between left no event yet but a state already at it, which looked
                # like a late fire time (seen on PostgreSQL in two replicas' race).
                old = _read(conn, report_id) or AlertState(report_id, "ok", None, 0, None, None)
                made = _event(conn, report_id, fire)
            if made is not None:
                return made
            if old.last_fire_time is not None and fire <= old.last_fire_time:
                # An older fire time (a backfill): it sends as a plain report and moves no state.
                return Decision("late" if firing else "cleared", None, 0, True)
            new, event = next_state(old, fire, firing, repeat)
            with self._store.connect() as conn:
                if _write(conn, old, new, event, fire):
                    since = old.since if event == "recovered" else new.since
                    return Decision(event, since, old.runs if event == "recovered" else new.runs, True)
        raise StateError(f"alert {report_id!r}: the state kept changing under this decision; try again")

    def recent(self, since: datetime) -> dict[str, EventCounts]:
        """Per report, how many of each decision since `since`, and the first one's fire time."""
        c = alert_events.c
        query = (
            select(c.report_id, c.event, func.count(), func.min(c.fire_time))
            .where(c.fire_time >= utc(since))
            .group_by(c.report_id, c.event)
        )
        found: dict[str, EventCounts] = {}
        with self._store.connect() as conn:
            for report_id, event, count, first in conn.execute(query):
                entry = found.setdefault(report_id, EventCounts({}, first))
                entry.counts[event] = int(count)
                entry.first = min(entry.first, first)
        return found

    def events(self, report_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Decisions, newest fire time first."""
        query = select(alert_events).order_by(alert_events.c.fire_time.desc()).limit(limit)
        if report_id is not None:
            query = query.where(alert_events.c.report_id == report_id)
        with self._store.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


def _write(conn: Connection, old: AlertState, new: AlertState, event: Event, fire: datetime) -> bool:
    values = {"state": new.state, "since": new.since, "runs": new.runs,
              "last_notified": new.last_notified, "last_fire_time": fire}  # fmt: skip
    row = {"report_id": old.report_id, "fire_time": fire, "event": event, "decided_at": clock.now(),
           "since": old.since if event == "recovered" else new.since,
           "runs": old.runs if event == "recovered" else new.runs}  # fmt: skip
    try:
        with conn.begin():
            if old.last_fire_time is None:
                conn.execute(alert_state.insert().values(report_id=old.report_id, **values))
            else:
                cas = update(alert_state).where(
                    alert_state.c.report_id == old.report_id,
                    alert_state.c.last_fire_time == old.last_fire_time,
                )
                if conn.execute(cas.values(values)).rowcount != 1:
                    raise _Lost
            conn.execute(alert_events.insert().values(row))
    except (IntegrityError, _Lost):
        return False
    return True


class _Lost(Exception):
    """Another replica changed the state first."""


def _read(conn: Connection, report_id: str) -> AlertState | None:
    row = conn.execute(select(alert_state).where(alert_state.c.report_id == report_id)).one_or_none()
    return None if row is None else _state(row._mapping)


def _state(values: Any) -> AlertState:
    return AlertState(values["report_id"], values["state"], values["since"], values["runs"],
                      values["last_notified"], values["last_fire_time"])  # fmt: skip


def _event(conn: Connection, report_id: str, fire: datetime) -> Decision | None:
    query = select(alert_events).where(
        alert_events.c.report_id == report_id, alert_events.c.fire_time == fire
    )
    row = conn.execute(query).one_or_none()
    if row is None:
        return None
    return Decision(row.event, row.since, row.runs, False)
