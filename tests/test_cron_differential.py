"""Our cron parser against cronsim, an independent maintained implementation of Debian's cron.

A few hundred expressions, generated from a fixed seed out of everything both accept (`*`, values,
lists, ranges, steps on `*` and on ranges, month and day names, day-of-week 7, the
day-of-month/day-of-week OR rule), must give the same next fire times from several start instants,
compared as UTC instants, in UTC and in zones that keep one offset all year: Etc/GMT-8 (the offset
of the project's default zone, Asia/Shanghai) and Asia/Kolkata (a half-hour offset).

Not compared, on purpose:
- Zones with daylight saving: tests/test_cron_dst.py compares those around every transition,
  where cronie's rule for a `*` in the minute or hour field applies.
- What cronsim accepts and we refuse (see `test_we_refuse_what_cronsim_accepts_on_purpose`): a step
  on a single value (`5/15`, which cronsim reads as `5-59/15`), a step wider than its field, and
  cronsim's extensions (`L`, `W`, `#`, a seconds field).
- A stepped range of one value (`5-5/2`): cronsim reads it as `5/2`, i.e. `5-59/2`, where Debian
  cron and we fire at 5 only. The generator writes such a range without its step.
"""

from __future__ import annotations

import functools
import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from dispatcher.errors import ScheduleError
from dispatcher.schedule.cron import CronSchedule, parse_cron

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
cronsim = pytest.importorskip("cronsim", reason="cronsim is a test-only dependency in the dev extra")

SEED = 20261130
EXPRESSIONS = 300
FIRES = 6
STARTS = (
    datetime(2026, 11, 30, 1, 53, 24, 500_000, tzinfo=UTC),
    datetime(2027, 2, 28, 23, 59, tzinfo=UTC),  # on a minute, just before a month without the 29th
    datetime(2028, 2, 28, 16, 0, tzinfo=UTC),  # a leap year, at midnight in UTC+8
    datetime(2030, 12, 31, 23, 30, 59, tzinfo=UTC),  # the turn of a year
)
ZONES = ("UTC", "Etc/GMT-8", "Asia/Kolkata")
FIELDS = (  # low, high, names
    (0, 59, ()),
    (0, 23, ()),
    (1, 31, ()),
    (1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    (0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)


def value(rng: random.Random, low: int, high: int, names: tuple[str, ...]) -> str:
    number = rng.randint(low, high)
    if names and rng.random() < 0.4 and number - low < len(names):
        return names[number - low]
    return str(number)


def number(text: str, low: int, names: tuple[str, ...]) -> int:
    return names.index(text) + low if text in names else int(text)


def item(rng: random.Random, low: int, high: int, names: tuple[str, ...]) -> str:
    """One comma-separated item of a field, in a form both parsers accept."""
    kind = rng.choice(("value", "value", "range", "range-step", "star-step"))
    if kind == "value":
        return value(rng, low, high, names)
    if kind == "star-step":
        return f"*/{rng.randint(1, high - low + 1)}"
    first, last = sorted(
        (value(rng, low, high, names), value(rng, low, high, names)), key=lambda t: number(t, low, names)
    )
    span = f"{first}-{last}"
    if kind == "range" or number(first, low, names) == number(last, low, names):
        return span  # cronsim reads `5-5/2` as `5/2`, i.e. 5-59/2; Debian cron and we read it as 5
    return f"{span}/{rng.randint(1, high - low + 1)}"


def field(rng: random.Random, low: int, high: int, names: tuple[str, ...]) -> str:
    if rng.random() < 0.35:
        return "*"
    return ",".join(item(rng, low, high, names) for _ in range(rng.choice((1, 1, 2, 3))))


def expressions() -> list[str]:
    rng = random.Random(SEED)
    found = ["0 9 * * 1", "0 0 13 * FRI", "*/15 * * * *", "30 2 29 2 *", "0 0 31 * 7", "5 4 * * SUN-SAT/2"]
    while len(found) < EXPRESSIONS:
        found.append(" ".join(field(rng, *spec) for spec in FIELDS))
    return found


@functools.cache
def parsed(expression: str) -> CronSchedule | None:
    """Parsed once for every zone and start: parsing measures the shortest gap, which takes a while."""
    try:
        return parse_cron(expression)
    except ScheduleError:
        return None


def ours(expression: str, start: datetime, zone: ZoneInfo) -> list[datetime] | None:
    schedule = parsed(expression)
    if schedule is None:
        return None
    fires, at = [], start
    for _ in range(FIRES):
        at = schedule.next_fire_time(at, zone)
        fires.append(at.astimezone(UTC))
    return fires


def theirs(expression: str, start: datetime, zone: ZoneInfo) -> list[datetime] | None:
    try:
        it = cronsim.CronSim(expression, start.astimezone(zone) if zone.key != "UTC" else start)
    except cronsim.CronSimError:
        return None
    return [next(it).astimezone(UTC) for _ in range(FIRES)]


@pytest.mark.parametrize("zone_name", ZONES)
def test_next_fire_times_agree_with_cronsim(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    checked, disagreements = 0, []
    for expression in expressions():
        for start in STARTS:
            mine, other = ours(expression, start, zone), theirs(expression, start, zone)
            if mine != other:
                disagreements.append(
                    f"{expression!r} after {start.isoformat()}: ours {mine}, cronsim {other}"
                )
            checked += mine is not None
    assert disagreements == [], f"{len(disagreements)} disagreements, e.g.\n" + "\n".join(disagreements[:5])
    assert checked >= 0.95 * EXPRESSIONS * len(STARTS)  # nearly all of them fire: the comparison is real


@pytest.mark.parametrize(
    "expression", ["5/15 * * * *", "*/90 * * * *", "0 0 L * *", "0 0 * * 5#2", "0 0 9 * * *"]
)
def test_we_refuse_what_cronsim_accepts_on_purpose(expression: str) -> None:
    cronsim.CronSim(expression, STARTS[0])
    with pytest.raises(ScheduleError):
        parse_cron(expression)
