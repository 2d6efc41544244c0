"""Time zones and the one rule that turns a local wall-clock time into an instant."""

from __future__ import annotations

import difflib
import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dispatcher.errors import ScheduleError

_SECOND = timedelta(seconds=1)
_ZONE_HINT = "use an IANA name such as Asia/Shanghai"


def to_zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`, e.g. "Asia/Shanghai"."""
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError(f"unknown timezone {name!r}", hint=_ZONE_HINT)
    try:
        return ZoneInfo(name)
    # ValueError: path-like junk ("../etc"); OSError: a directory such as "Asia".
    except (ZoneInfoNotFoundError, ValueError, OSError):
        guess = difflib.get_close_matches(name, _zone_names(), n=1)
        if guess:
            raise ScheduleError(f"unknown timezone {name!r}; did you mean {guess[0]!r}?") from None
        raise ScheduleError(f"unknown timezone {name!r}", hint=_ZONE_HINT) from None


@functools.cache
def _zone_names() -> list[str]:
    """Every IANA name this machine knows; read only to suggest one for a misspelt name."""
    return sorted(available_timezones())


def require_aware(value: datetime, name: str) -> datetime:
    """`value` in UTC; naive datetimes are refused because their instant is a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScheduleError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def wall_to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant at which the naive local time `wall` happens in `tz`.

    A time the clocks skip (spring forward) happens at the first instant after the gap; a time
    the clocks show twice (fall back) happens at its first occurrence.
    """
    local = wall.replace(tzinfo=tz, fold=0)
    before = local.utcoffset()
    after = local.replace(fold=1).utcoffset()
    assert before is not None and after is not None
    if before >= after:  # unique, or ambiguous where fold=0 is the first occurrence (PEP 495)
        return local.astimezone(UTC)
    return _gap_end(wall, before, after, tz)


def wall_instants(wall: datetime, tz: ZoneInfo) -> list[datetime]:
    """Every UTC instant at which the clocks in `tz` show the naive local time `wall`, ascending:
    none in a gap (spring forward), two in a repeated hour (fall back), else one."""
    found: list[datetime] = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) == wall and instant not in found:
            found.append(instant)
    return found


def offset_changes(day: date, tz: ZoneInfo) -> bool:
    """Whether the UTC offset of `tz` changes during the local day `day` (a DST day)."""
    start = datetime.combine(day, time()).replace(tzinfo=tz).utcoffset()
    return start != datetime.combine(day + timedelta(days=1), time()).replace(tzinfo=tz).utcoffset()


def _gap_end(wall: datetime, before: timedelta, after: timedelta, tz: ZoneInfo) -> datetime:
    """The transition instant that opens the gap containing `wall`, found by bisection.

    In a gap, `wall - after` lies before the transition and `wall - before` at or after it.
    """
    start = (wall - after).replace(tzinfo=UTC)
    lo, hi = 0, int((after - before).total_seconds())  # seconds after `start`
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (start + mid * _SECOND).astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return start + hi * _SECOND
