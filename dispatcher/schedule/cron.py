"""Unix crontab expressions (vixie/cronie rules) and their fire times in a time zone.

Daylight saving follows cronie (its man page's "special considerations", cron.c's wildcard and
fixed-time jobs): a schedule whose minute or hour field starts with `*` (`*`, `*/15`, `@hourly`)
follows the clock as it is, so it fires again in the hour the clocks repeat and not at all in the
hour they skip; any other schedule fires at each of its wall times once, a repeated time at its
first occurrence and a skipped time at the first instant after the gap. cronsim models the same
rule and is the differential test's reference (tests/test_cron_dst.py).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from dispatcher.errors import ScheduleError
from dispatcher.schedule.zones import offset_changes, require_aware, wall_instants, wall_to_instant

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# The next Feb 29 can be 8 years away (2096 -> 2104); nothing valid is sparser.
HORIZON = timedelta(days=3300)
# Largest DST change any zone uses today (Antarctica/Troll moves by 2 h): the most by which a
# clock change can shorten the real gap between two fire times.
_MAX_CLOCK_CHANGE = 7200
_DAY = timedelta(days=1)
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class _Field(NamedTuple):
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES, 1),
    _Field("day-of-week", 0, 7, _DAY_NAMES, 0),  # 7 is Sunday too, as in vixie cron
)


@dataclass(frozen=True)
class CronSchedule:
    """A 5-field crontab line. Build it with `parse_cron`."""

    expression: str
    minutes: frozenset[int] = field(repr=False)
    hours: frozenset[int] = field(repr=False)
    days: frozenset[int] = field(repr=False)
    months: frozenset[int] = field(repr=False)
    weekdays: frozenset[int] = field(repr=False)  # 0 = Sunday ... 6 = Saturday
    days_or_weekdays: bool = field(repr=False)  # both days restricted: either may match (Unix)
    follows_clock: bool = field(default=False, repr=False)  # cronie's "wildcard" job: see the docstring
    min_period_seconds: float = field(init=False, compare=False)
    _times: tuple[int, ...] = field(init=False, repr=False, compare=False)  # minutes of the day

    def __post_init__(self) -> None:
        times = tuple(sorted(h * 60 + m for h in self.hours for m in self.minutes))
        object.__setattr__(self, "_times", times)
        object.__setattr__(self, "min_period_seconds", self._min_period())

    def next_fire_time(self, after: datetime, tz: ZoneInfo) -> datetime:
        """The first fire time strictly after `after`, in `tz`."""
        start = require_aware(after, "after")
        try:
            for fire in self._walk(start, tz, _local_day(start + HORIZON, tz)):
                return fire.astimezone(tz)
        except OverflowError:  # the search ran past year 9999
            pass
        raise ScheduleError(f"'{self.expression}' does not fire within 9 years after {after}")

    def previous_fire_time(self, at: datetime, tz: ZoneInfo) -> datetime | None:
        """The last fire time at or before `at`, in `tz`; None if none within ~9 years."""
        end = require_aware(at, "at")
        last_day = _local_day(end, tz) + _DAY
        # Widen the look-back until it holds a fire time, so dense schedules stay cheap.
        for window in (timedelta(hours=1), _DAY, timedelta(days=32), timedelta(days=400), HORIZON):
            try:
                found = _last(self._walk(end - window, tz, last_day), end)
            except OverflowError:  # the look-back ran past year 1
                return None
            if found is not None:
                return found.astimezone(tz)
        return None

    def fire_times(self, start: datetime, end: datetime, tz: ZoneInfo) -> Iterator[datetime]:
        """Every fire time t with start < t <= end, ascending, in `tz`."""
        stop = require_aware(end, "end")
        for fire in self._walk(require_aware(start, "start"), tz, _local_day(stop, tz) + _DAY):
            if fire > stop:
                return
            yield fire.astimezone(tz)

    def matches_day(self, day: date) -> bool:
        return _matches_day(day, self.days, self.months, self.weekdays, self.days_or_weekdays)

    def _walk(self, after: datetime, tz: ZoneInfo, last_day: date) -> Iterator[datetime]:
        """Fire instants (UTC) strictly after `after`, ascending, on local days up to `last_day`.

        Mapping wall times to instants never goes backwards, so wall times before `after`'s own
        wall time cannot fire later than it and are skipped; gap times that land on the same
        instant are yielded once.
        """
        local = after.astimezone(tz)
        day, first = local.date(), local.hour * 60 + local.minute
        latest = after
        while day <= last_day:
            if day.month not in self.months:
                day, first = _next_month(day), 0
                continue
            if self.matches_day(day):
                for fire in self._day_fires(day, first, tz):
                    if fire > latest:
                        latest = fire
                        yield fire
            day, first = day + _DAY, 0

    def _day_fires(self, day: date, first: int, tz: ZoneInfo) -> Iterator[datetime]:
        """The instants of one matching day's wall times from minute `first` on, ascending.

        A schedule that follows the clock, on a day the offset changes, fires at every instant its
        wall times happen (none in a gap, two in a repeated hour): in the repeated hour instants
        are not in wall-time order, so the whole day is taken and sorted.
        """
        if self.follows_clock and offset_changes(day, tz):
            walls = (datetime.combine(day, time(*divmod(minute, 60))) for minute in self._times)
            yield from sorted(instant for wall in walls for instant in wall_instants(wall, tz))
            return
        for minute in self._times[bisect.bisect_left(self._times, first) :]:
            yield wall_to_instant(datetime.combine(day, time(*divmod(minute, 60))), tz)

    def _min_period(self) -> float:
        """A lower bound on the real gap between fire times, DST included."""
        times = self._times
        day_gap = _min_day_gap(self.days, self.months, self.weekdays, self.days_or_weekdays)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        nominal = 60 * min([*gaps, day_gap * 1440 + times[0] - times[-1]])
        return float(max(60, nominal - _MAX_CLOCK_CHANGE))


@functools.lru_cache(maxsize=1024)  # 5,000 reports share a handful of expressions
def parse_cron(expression: str) -> CronSchedule:
    """Parse a 5-field crontab expression or one of the @-macros (@daily, @hourly, ...)."""
    text = " ".join(expression.split()).lower()
    if text.startswith("@"):
        if text not in MACROS:
            names = "@hourly, @daily, @weekly, @monthly or @yearly"
            raise ScheduleError(f"unknown cron macro '{expression.strip()}'; use {names}")
        fields = MACROS[text].split()
    else:
        fields = text.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"'{expression.strip()}' is not a 5-field cron expression",
            hint="minute hour day-of-month month day-of-week, e.g. '0 9 * * 1'; "
            "for an interval write {every: 30s}",
        )
    minutes, hours, days, months, weekdays = (
        _parse_field(text, spec) for text, spec in zip(fields, _FIELDS, strict=True)
    )
    days_star, weekdays_star = fields[2].startswith("*"), fields[4].startswith("*")
    schedule = CronSchedule(
        expression=text,
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=frozenset(d % 7 for d in weekdays),
        days_or_weekdays=not days_star and not weekdays_star,
        follows_clock=fields[0].startswith("*") or fields[1].startswith("*"),
    )
    if weekdays_star and not any(d <= _LONGEST_MONTH[m - 1] for m in months for d in days):
        raise ScheduleError(f"'{text}' never fires: none of its months has day {fields[2]}")
    return schedule


def _parse_field(text: str, spec: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(item, spec))
    return frozenset(values)


def _parse_item(item: str, spec: _Field) -> range:
    span, slash, step_text = item.partition("/")
    step = _parse_step(step_text, spec) if slash else 1
    if span == "*":
        return range(spec.low, spec.high + 1, step)
    first_text, dash, last_text = span.partition("-")
    first = _parse_value(first_text, spec)
    if not dash:
        if slash:
            raise ScheduleError(
                f"{spec.name} field '{item}': a step needs a range or '*'",
                hint=f"write */{step_text} or {first}-{spec.high}/{step_text}",
            )
        return range(first, first + 1)
    last = _parse_value(last_text, spec)
    if first > last:
        raise ScheduleError(f"{spec.name} field '{item}' is a reversed range; write it low-high")
    return range(first, last + 1, step)


def _parse_step(text: str, spec: _Field) -> int:
    if not (text.isdigit() and text.isascii()):
        raise ScheduleError(f"{spec.name} field step '{text}' is not a whole number")
    step = int(text)
    if not 1 <= step <= spec.high - spec.low + 1:
        # A step wider than the field fires once and is almost always a misread "every N".
        raise ScheduleError(
            f"{spec.name} field step '/{text}' must be between 1 and {spec.high - spec.low + 1}",
            hint="for an interval cron cannot express, write {every: 90m}",
        )
    return step


def _parse_value(text: str, spec: _Field) -> int:
    if text.isdigit() and text.isascii():
        value = int(text)
        if not spec.low <= value <= spec.high:
            raise ScheduleError(f"{spec.name} field '{text}' is out of range {spec.low}-{spec.high}")
        return value
    if spec.names and text.isalpha():
        if text not in spec.names:
            raise ScheduleError(
                f"unknown {spec.name} name '{text}'", hint=f"use one of {', '.join(spec.names)}"
            )
        return spec.names.index(text) + spec.name_base
    if not text:
        raise ScheduleError(f"{spec.name} field has an empty value")
    kind = "a number or a name" if spec.names else "a number"
    raise ScheduleError(f"{spec.name} field '{text}' is not {kind}")


def _matches_day(
    day: date, days: frozenset[int], months: frozenset[int], weekdays: frozenset[int], either: bool
) -> bool:
    if day.month not in months:
        return False
    in_days = day.day in days
    in_weekdays = day.isoweekday() % 7 in weekdays
    return (in_days or in_weekdays) if either else (in_days and in_weekdays)


def _last(fires: Iterator[datetime], end: datetime) -> datetime | None:
    found = None
    for fire in fires:
        if fire > end:
            break
        found = fire
    return found


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _local_day(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


@functools.lru_cache(maxsize=256)
def _min_day_gap(days: frozenset[int], months: frozenset[int], weekdays: frozenset[int], either: bool) -> int:
    """Fewest days between two matching days over 2000-2028, which holds every calendar
    pattern (all 14 year types and Feb 29 gaps), so the figure is exact.

    The matching days are one bit per day of those 29 years, built from the calendar's masks
    (_calendar_masks); the closest two set bits are `gap` apart when the mask shifted by `gap`
    overlaps itself. Walking the 10,600 days for each pattern was half of parsing a team's
    cron lines (issue 28).
    """
    by_month, by_day, by_weekday = _calendar_masks()
    in_months = _union(by_month, months)
    in_days, in_weekdays = _union(by_day, days), _union(by_weekday, weekdays)
    mask = in_months & ((in_days | in_weekdays) if either else (in_days & in_weekdays))
    for gap in range(1, 366 * 8):
        if mask & (mask >> gap):
            return gap
    return 366 * 8


def _union(masks: dict[int, int], values: frozenset[int]) -> int:
    found = 0
    for value in values:
        found |= masks.get(value, 0)
    return found


@functools.lru_cache(maxsize=1)
def _calendar_masks() -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """Bit i is set in by_month[m], by_day[d] and by_weekday[w] when day i (from 2000-01-01, to
    2028-12-31) is in month m, on day d of its month, on weekday w (0 = Sunday)."""
    by_month: dict[int, int] = {}
    by_day: dict[int, int] = {}
    by_weekday: dict[int, int] = {}
    day, index = date(2000, 1, 1), 0
    while day.year < 2029:
        bit = 1 << index
        by_month[day.month] = by_month.get(day.month, 0) | bit
        by_day[day.day] = by_day.get(day.day, 0) | bit
        weekday = day.isoweekday() % 7
        by_weekday[weekday] = by_weekday.get(weekday, 0) | bit
        day, index = day + _DAY, index + 1
    return by_month, by_day, by_weekday
