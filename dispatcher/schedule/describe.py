"""A schedule in plain English, and its next fire times: what `dispatcher cron` and `list --next` show.

Built from the parsed schedule (the sets the daemon fires on), never from the text, so the words
cannot disagree with the fire times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from dispatcher.schedule.cron import CronSchedule
from dispatcher.schedule.interval import IntervalSchedule

if TYPE_CHECKING:
    from dispatcher.schedule import Schedule

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")  # fmt: skip
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONDAY_FIRST = (1, 2, 3, 4, 5, 6, 0)
# Up to this many (hour, minute) pairs are listed as clock times; more read better as a pattern.
_MAX_CLOCK_TIMES = 4


def describe(schedule: Schedule) -> str:
    """`0 9 * * 1-5` -> "at 09:00 on Monday to Friday"; `{every: 2h}` -> "every 2h, from local midnight"."""
    if isinstance(schedule, IntervalSchedule):
        start = "local midnight" if schedule.aligned_to_midnight else "the Unix epoch (UTC)"
        return f"{schedule.expression}, counted from {start}"
    if not isinstance(schedule, CronSchedule):
        return schedule.expression
    times = _times(schedule)
    separator = " " if times[3:4].isdigit() else ", "  # "at 09:00 on Monday", "every minute, every day"
    return f"{times}{separator}{_days(schedule)}{_months(schedule)}"


def fire_lines(fires: Iterable[datetime]) -> list[str]:
    """One line per fire time: local time, weekday, UTC offset and the zone's abbreviation."""
    return [f"{f.strftime('%Y-%m-%d %H:%M')} {f.strftime('%a')}  UTC{_offset(f)} {f.tzname()}" for f in fires]


def next_fire_times(schedule: Schedule, after: datetime, tz: ZoneInfo, count: int) -> list[datetime]:
    fires: list[datetime] = []
    for _ in range(count):
        after = schedule.next_fire_time(after, tz)
        fires.append(after)
    return fires


def _offset(fire: datetime) -> str:
    text = fire.strftime("%z")  # +0200
    return f"{text[:3]}:{text[3:]}"


def _times(cron: CronSchedule) -> str:
    minutes, hours = sorted(cron.minutes), sorted(cron.hours)
    if len(minutes) * len(hours) <= _MAX_CLOCK_TIMES:
        return "at " + _join([f"{h:02d}:{m:02d}" for h in hours for m in minutes])
    every = _step(minutes, 60)
    if len(minutes) == 60:
        minute_words = "every minute"
    elif every is not None:
        minute_words = f"every {every} minutes"
    else:
        minute_words = f"at {_join([f':{m:02d}' for m in minutes])} past the hour"
    if len(hours) == 24:
        return minute_words
    if len(hours) == 1:
        return f"{minute_words} during the hour {hours[0]:02d}:00-{hours[0]:02d}:59"
    every_hours = _step(hours, 24)
    spacing = f" (every {every_hours} hours)" if every_hours else ""
    return f"{minute_words} during the hours {_ranges(hours, lambda h: f'{h:02d}')}{spacing}"


def _days(cron: CronSchedule) -> str:
    all_days, all_weekdays = len(cron.days) == 31, len(cron.weekdays) == 7
    day_words = (
        f"on {'day' if len(cron.days) == 1 else 'days'} {_ranges(sorted(cron.days), str)} of the month"
    )
    weekday_words = "on " + _ranges(
        [_MONDAY_FIRST.index(d) for d in cron.weekdays], lambda i: _WEEKDAYS[_MONDAY_FIRST[i]]
    )
    if cron.days_or_weekdays:  # both restricted: Unix cron fires when either matches
        return f"{day_words} and {weekday_words.replace('on ', 'on every ', 1)}"
    if not all_days and not all_weekdays:
        return f"{day_words} if it is {weekday_words[3:]}"
    if not all_days:
        return day_words
    if not all_weekdays:
        return weekday_words
    return "every day"


def _months(cron: CronSchedule) -> str:
    if len(cron.months) == 12:
        return ""
    return " in " + _ranges(sorted(cron.months), lambda m: _MONTHS[m - 1])


def _step(values: list[int], size: int) -> int | None:
    """N when `values` are exactly 0, N, 2N, ... (an even "every N"), else None."""
    if len(values) < 2 or values[0] != 0:
        return None
    step = values[1]
    return step if size % step == 0 and values == list(range(0, size, step)) else None


def _ranges(values: list[int], label: Callable[[int], str]) -> str:
    """[1, 2, 3, 5] -> "1 to 3 and 5"; runs of three or more become ranges."""
    groups: list[list[int]] = []
    for value in sorted(values):
        if groups and value == groups[-1][-1] + 1:
            groups[-1].append(value)
        else:
            groups.append([value])
    parts: list[str] = []
    for group in groups:
        if len(group) >= 3:
            parts.append(f"{label(group[0])} to {label(group[-1])}")
        else:
            parts += [label(v) for v in group]
    return _join(parts)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
