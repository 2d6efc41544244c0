"""`{every: N}` schedules: fixed spacing, aligned to local midnight or to the Unix epoch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from dispatcher.errors import ScheduleError
from dispatcher.schedule.durations import format_duration, parse_duration
from dispatcher.schedule.zones import require_aware, wall_to_instant

DAY_SECONDS = 86400
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = timedelta(days=1)
_MAX_SECONDS = 366 * DAY_SECONDS


@dataclass(frozen=True)
class IntervalSchedule:
    """Fire every `seconds` seconds. Build it with `parse_interval`."""

    seconds: int

    @property
    def expression(self) -> str:
        return f"every {format_duration(self.seconds)}"

    @property
    def min_period_seconds(self) -> float:
        return float(self.seconds)

    @property
    def aligned_to_midnight(self) -> bool:
        """True when the interval divides a day, so fire times repeat at the same local times."""
        return DAY_SECONDS % self.seconds == 0

    def next_fire_time(self, after: datetime, tz: ZoneInfo) -> datetime:
        """The first fire time strictly after `after`, in `tz`."""
        instant = require_aware(after, "after")
        if not self.aligned_to_midnight:
            return (EPOCH + ((instant - EPOCH) // self._step + 1) * self._step).astimezone(tz)
        day, midnight, next_midnight = _day_of(instant, tz)
        k = (instant - midnight) // self._step + 1
        if k < self._count(midnight, next_midnight):
            return (midnight + k * self._step).astimezone(tz)
        return next_midnight.astimezone(tz)

    def previous_fire_time(self, at: datetime, tz: ZoneInfo) -> datetime | None:
        """The last fire time at or before `at`, in `tz`."""
        instant = require_aware(at, "at")
        if not self.aligned_to_midnight:
            return (EPOCH + ((instant - EPOCH) // self._step) * self._step).astimezone(tz)
        day, midnight, next_midnight = _day_of(instant, tz)
        k = min((instant - midnight) // self._step, self._count(midnight, next_midnight) - 1)
        return (midnight + k * self._step).astimezone(tz)

    def fire_times(self, start: datetime, end: datetime, tz: ZoneInfo) -> Iterator[datetime]:
        """Every fire time t with start < t <= end, ascending, in `tz`."""
        first, stop = require_aware(start, "start"), require_aware(end, "end")
        if not self.aligned_to_midnight:
            k = (first - EPOCH) // self._step + 1
            while (fire := EPOCH + k * self._step) <= stop:
                yield fire.astimezone(tz)
                k += 1
            return
        day, midnight, next_midnight = _day_of(first, tz)
        k = (first - midnight) // self._step + 1
        while midnight <= stop:
            for i in range(k, self._count(midnight, next_midnight)):
                fire = midnight + i * self._step
                if fire > stop:
                    return
                yield fire.astimezone(tz)
            day, midnight, k = day + _DAY, next_midnight, 0
            next_midnight = _midnight(day + _DAY, tz)

    @property
    def _step(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def _count(self, midnight: datetime, next_midnight: datetime) -> int:
        """Fire times in one local day: those before the next midnight, and never more than on
        an ordinary day, so a 25-hour day does not gain an extra run (`every: 1d` stays daily)."""
        fitting = -((midnight - next_midnight) // self._step)  # ceil(day length / step)
        return min(fitting, DAY_SECONDS // self.seconds)


def parse_interval(value: object) -> IntervalSchedule:
    """`value` is the `every` of `{every: 30s}`: a duration string or a number of seconds."""
    if not isinstance(value, str | int | float):
        raise ScheduleError(f"{{every: {value!r}}} needs a duration such as 30s, 15m or 2h")
    seconds = parse_duration(value)
    if seconds > _MAX_SECONDS:
        raise ScheduleError(f"{{every: {value}}} is longer than a year; use a cron expression")
    if seconds < 1 or seconds != int(seconds):
        raise ScheduleError(
            f"{{every: {value}}} must be a whole number of seconds, at least 1s",
            hint="sub-second intervals are not supported",
        )
    return IntervalSchedule(int(seconds))


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return wall_to_instant(datetime(day.year, day.month, day.day), tz)


def _day_of(instant: datetime, tz: ZoneInfo) -> tuple[date, datetime, datetime]:
    """The local day holding `instant`, with the UTC instants of its midnight and the next."""
    day = instant.astimezone(tz).date()
    midnight = _midnight(day, tz)
    while instant < midnight:  # only where a midnight itself falls in a DST change
        day -= _DAY
        midnight = _midnight(day, tz)
    next_midnight = _midnight(day + _DAY, tz)
    while instant >= next_midnight:
        day, midnight = day + _DAY, next_midnight
        next_midnight = _midnight(day + _DAY, tz)
    return day, midnight, next_midnight
