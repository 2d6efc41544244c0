"""Fire times: pure functions of (schedule, time zone, instant).

Every process (replicas, restarts, catch-up) computes the same fire times because nothing here
reads the clock or depends on when the process started.

Schedules
---------
A report's `schedule` is either a cron string or `{every: <duration>}`.

**Cron** follows Unix crontab (vixie cron / cronie): five fields, `minute hour day-of-month
month day-of-week`, with `*`, lists `1,3`, ranges `1-5`, steps `*/15` and `10-50/20`, month
names `jan`-`dec` and day names `sun`-`sat` (any case, also in ranges such as `mon-fri`).
Day-of-week 0 and 7 are both Sunday, 1 is Monday. When both day-of-month and day-of-week are
restricted (neither starts with `*`), a day matches if *either* matches: `0 0 13 * 5` fires on
every 13th and on every Friday. Otherwise both must match. The macros `@hourly`, `@daily`
(`@midnight`), `@weekly`, `@monthly` and `@yearly` (`@annually`) stand for their usual lines.
Refused, with a message naming the problem: a field count other than five, values out of
range, reversed ranges (`5-1`), a step of 0 or wider than its field (`*/90` in the minute
field: cron cannot say "every 90 minutes"; use `{every: 90m}`), a step on a single value
(`5/15`; write `5-59/15`), unknown names, and lines that can never fire (`0 0 30 2 *`).

**Time zones and daylight saving.** Cron times are wall-clock times in the report's time zone,
and daylight saving follows cronie's rule for its two kinds of job:

- A schedule whose minute or hour field starts with `*` (`*/15 * * * *`, `30 * * * *`,
  `*/5 9 * * *`, `@hourly`) follows the clock as it is: it fires at every instant the clock
  shows one of its wall times. A time the clocks show twice (01:30 on 2026-11-01 in
  America/New_York) fires twice, at 01:30 EDT and at 01:30 EST; a time the clocks skip (02:30
  on 2026-03-08) does not fire. So `*/15 * * * *` fires every 15 minutes of real time through
  the autumn change, and `30 * * * *` fires 25 times that day and 23 times on the spring one.
- Any other schedule (`30 1 * * *`, `0 9 * * 1`, `0-59/10 0-23 * * *`, `@daily`) fires at each
  of its wall times once: a repeated time at its first occurrence (EDT), a skipped time at the
  first instant after the gap (03:00 EDT), once even if several skipped times fall there. So
  `30 2 * * *` fires exactly once every day, and `0 9 * * 1` fires at 09:00 local every Monday
  whatever the UTC offset.

Two fire times can therefore share a wall time: a fire time's identity is its UTC instant.

**Intervals** (`{every: 30s}`, `15m`, `2h`, `1d`, `1h30m`, or a number of seconds; at least
1 s, whole seconds only, at most 366 days):

- If the interval divides a day (30s, 15m, 2h, 1d, ...), fire times are the report's local
  midnight plus whole multiples of the interval in elapsed real time: `every 2h` fires at
  00:00, 02:00, 04:00 ... local. Each local day restarts at its own midnight. On a day with
  a DST change, spacing stays exact within the day, and the day ends early or late: in
  New York on 2026-03-08 (23 hours) `every 2h` fires at 00:00 EST, then 03:00, 05:00 ...
  23:00 EDT (22 h after midnight), then 00:00 the next day, one hour later. On 2026-11-01
  (25 hours) it fires at 00:00 EDT, 01:00 EST, 03:00 ... 21:00 EST and then 00:00; a day
  never gets more runs than an ordinary day has, so `every 1d` fires once, at midnight.
- Otherwise (7m, 5000s, 2d, ...) fire times are the Unix epoch plus whole multiples of the
  interval: aligned in UTC, independent of the time zone.

Fire times are returned as aware datetimes in the report's zone. Compare or subtract them in
UTC (`.astimezone(UTC)` or `.timestamp()`): Python compares two datetimes of the *same* zone
by wall time and ignores `fold`, which is wrong across a fall-back hour.

May import: the top-level helpers only.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from dispatcher.errors import ScheduleError
from dispatcher.schedule.cron import CronSchedule, parse_cron
from dispatcher.schedule.durations import format_duration, parse_duration
from dispatcher.schedule.interval import IntervalSchedule, parse_interval
from dispatcher.schedule.macros import date_macros
from dispatcher.schedule.zones import to_zone

__all__ = [
    "CronSchedule",
    "IntervalSchedule",
    "Schedule",
    "date_macros",
    "format_duration",
    "parse_duration",
    "parse_schedule",
    "to_zone",
]

_SPEC_HINT = "write a cron string such as '0 9 * * 1' or {every: 30s}"


class Schedule(Protocol):
    @property
    def expression(self) -> str:
        """Canonical text for display: "0 9 * * 1", "@daily", "every 30s"."""

    @property
    def min_period_seconds(self) -> float:
        """A lower bound on the real gap between two fire times (DST included for cron)."""

    def next_fire_time(self, after: datetime, tz: ZoneInfo) -> datetime: ...

    def previous_fire_time(self, at: datetime, tz: ZoneInfo) -> datetime | None: ...

    def fire_times(self, start: datetime, end: datetime, tz: ZoneInfo) -> Iterator[datetime]: ...


# Parsed schedules, keyed by their text: a config of 5,000 reports has hundreds of distinct lines,
# and `list`, the daemon and a reload ask for each report's schedule again and again; past
# parse_cron's own LRU size, a pass over every report missed it every time (issue 28). Schedules
# are immutable, so reports share them. Capped, as reloads may bring new texts.
_PARSED: dict[Hashable, Schedule] = {}
_PARSED_MAX = 65_536


def parse_schedule(spec: str | dict[str, Any]) -> Schedule:
    """A cron string (or @-macro), or a mapping `{"every": "30s"}`; each distinct text parsed once
    per process (a failure is not kept)."""
    key = _key(spec)
    if key is None:
        return _parse_schedule(spec)
    found = _PARSED.get(key)
    if found is None:
        found = _parse_schedule(spec)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = found
    return found


def _key(spec: Any) -> Hashable | None:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict) and list(spec) == ["every"] and isinstance(spec["every"], str | int | float):
        return ("every", type(spec["every"]).__name__, spec["every"])
    return None


def _parse_schedule(spec: str | dict[str, Any]) -> Schedule:
    if isinstance(spec, str):
        if spec.strip().lower().startswith("every "):
            raise ScheduleError(
                f"'{spec.strip()}' is not a 5-field cron expression",
                hint=f"for an interval write {{every: {spec.strip()[5:].strip() or '30s'}}}",
            )
        return parse_cron(spec)
    if isinstance(spec, dict):
        if list(spec) != ["every"]:
            keys = ", ".join(map(str, spec)) or "nothing"
            message = f"a schedule mapping takes only 'every', got {keys}"
            raise ScheduleError(message, hint=_SPEC_HINT)
        return parse_interval(spec["every"])
    message = f"schedule {spec!r} is neither a cron string nor {{every: ...}}"
    raise ScheduleError(message, hint=_SPEC_HINT)
