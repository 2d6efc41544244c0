"""Which fire times a report owes: a pure function of the schedule, the ledger's rows and "now".

Called when a report's job wakes up (on time, after a start, or after the process was paused), so
on-time runs and catch-up are one mechanism. Policies, within the report's `grace` window:

- `last`: run the most recent overdue fire time; record older ones as missed.
- `all`: run every overdue fire time, oldest first.
- `none`: record every overdue fire time as missed.

Fire times older than `grace` are always recorded as missed. A fire time counts as *on time*, not
overdue, within `min(30 s, half the schedule's period)` of its moment: it always runs. A report
the ledger has never seen owes only its latest fire time (any age with `run_on_start`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Literal
from zoneinfo import ZoneInfo

from dispatcher.schedule import Schedule

Policy = Literal["last", "all", "none"]
MAX_BACKLOG = 1000  # fire times looked at per wake-up; older ones are neither run nor recorded


@dataclass(frozen=True)
class Plan:
    run: list[datetime] = field(default_factory=list)  # oldest first
    missed: list[datetime] = field(default_factory=list)


def on_time_slack(schedule: Schedule) -> float:
    return min(30.0, schedule.min_period_seconds / 2)


def lookback(schedule: Schedule, grace: float) -> float:
    """How far back (seconds) a wake-up looks for owed fire times: the ledger is read as far."""
    return max(grace, on_time_slack(schedule), schedule.min_period_seconds * MAX_BACKLOG)


def plan(
    schedule: Schedule,
    tz: ZoneInfo,
    *,
    now: datetime,
    last_recorded: datetime | None,
    recorded: set[datetime],
    policy: Policy,
    grace: float,
    run_on_start: bool = False,
) -> Plan:
    """Split the fire times since the last ledger row (or the latest one, for a new report)."""
    slack = on_time_slack(schedule)
    if last_recorded is None:
        times = _latest(schedule, tz, now, max(grace, slack), run_on_start)
    else:
        reach = lookback(schedule, grace)
        times = _newest(schedule, tz, max(last_recorded, now - timedelta(seconds=reach)), now)
    # Keyed by the UTC instant: in a repeated hour two fire times share a wall time, and datetimes of
    # one zone compare (and hash) by wall time (PEP 495).
    pending = [u for u in map(_utc, times) if u not in recorded]
    return _split(pending, now, slack, grace, policy, force_last=last_recorded is None and run_on_start)


def _latest(
    schedule: Schedule, tz: ZoneInfo, now: datetime, window: float, run_on_start: bool
) -> list[datetime]:
    """A report the ledger has never seen owes at most its latest fire time: its history before
    this daemon knew it is neither run nor recorded as missed."""
    previous = schedule.previous_fire_time(now, tz)
    if previous is None or ((now - previous).total_seconds() > window and not run_on_start):
        return []
    return [previous]


def _split(
    pending: list[datetime], now: datetime, slack: float, grace: float, policy: Policy, force_last: bool
) -> Plan:
    age = {t: (now - t).total_seconds() for t in pending}
    on_time = [t for t in pending if age[t] <= slack]
    overdue = [
        t for t in pending if slack < age[t] and (age[t] <= grace or (force_last and t == pending[-1]))
    ]
    stale = [t for t in pending if t not in on_time and t not in overdue]
    if policy == "all":
        run, skipped = overdue, []
    elif policy == "last":
        run, skipped = overdue[-1:], overdue[:-1]
    else:
        run, skipped = [], overdue
    return Plan(run=[*run, *on_time], missed=sorted([*stale, *skipped], key=_utc))


def _newest(schedule: Schedule, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Fire times in (start, end], keeping only the newest MAX_BACKLOG."""
    times = schedule.fire_times(start, end, tz)
    window: list[datetime] = []
    for chunk in iter(lambda: list(islice(times, 10_000)), []):
        window = (window + chunk)[-MAX_BACKLOG:]
    return window


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)
