"""Cron across daylight-saving transitions, as cronie runs it (issue 24, item 12).

cronie's rule (its man page, "special considerations"; cron.c's wildcard and fixed-time jobs): a
job with `*` at the start of its minute or hour field (`*`, `*/15`; `@hourly` too) follows the
clock as it is: it runs again in the hour the clocks repeat in autumn, and not at all in the hour
they skip in spring. Any other job runs at its wall times once: a repeated time at its first
occurrence, a skipped time once at the end of the gap. cronsim (an independent implementation of
Debian cron's rules, in the dev extra) models exactly this, so every comparison below is against
it, over the spring and autumn transitions of zones north and south, with half-hour DST and with
changes at midnight. Not compared: a half-hour change (Australia/Lord_Howe), where cronsim steps
whole hours of real time and so misses wall times that do happen (02:30 right after the spring gap,
the second 01:30); `test_a_half_hour_change_follows_the_same_rule` pins ours down by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dispatcher.daemon.catchup import plan
from dispatcher.daemon.decide import Timing, Wake, decide, start_state
from dispatcher.schedule import parse_schedule
from dispatcher.schedule.cron import MACROS, parse_cron
from tests.test_cron_differential import expressions

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
cronsim = pytest.importorskip("cronsim", reason="cronsim is a test-only dependency in the dev extra")

NEW_YORK = ZoneInfo("America/New_York")
ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",  # southern: autumn in April
    "Europe/London",
    "America/Santiago",  # the clocks change at midnight
    "America/Havana",  # at midnight in spring, at 01:00 in autumn
    "Europe/Dublin",  # tzdata's negative DST: winter is the "daylight" offset
)
CURATED = (
    "*/15 * * * *",
    "* * * * *",
    "0 * * * *",
    "30 * * * *",
    "@hourly",
    "15 */2 * * *",
    "*/5 1 * * *",
    "*/20 1-3 * * *",
    "*/10 0 * * *",
    "30 1 * * *",
    "30 2 * * *",
    "0 1,2,3 * * *",
    "0-59/10 0-23 * * *",  # neither field starts with `*`: cronie's fixed-time job
    "45 23 * * *",
    "0 0 * * *",
    "@daily",
)
WINDOW = timedelta(hours=4)


def transitions(zone: ZoneInfo, years: tuple[int, ...] = (2026, 2027)) -> list[datetime]:
    """The UTC instants at which `zone`'s offset changes in `years` (to the minute)."""
    found = []
    for year in years:
        at = datetime(year, 1, 1, tzinfo=UTC)
        end = datetime(year + 1, 1, 1, tzinfo=UTC)
        while at < end:
            step = at + timedelta(minutes=30)
            if at.astimezone(zone).utcoffset() != step.astimezone(zone).utcoffset():
                found.append(step)
            at = step
    return found


def ours(expression: str, start: datetime, end: datetime, zone: ZoneInfo) -> list[datetime]:
    return [t.astimezone(UTC) for t in parse_cron(expression).fire_times(start, end, zone)]


def theirs(expression: str, start: datetime, end: datetime, zone: ZoneInfo) -> list[datetime]:
    found = []
    for fire in cronsim.CronSim(MACROS.get(expression, expression), start.astimezone(zone)):
        if fire.astimezone(UTC) > end:
            return found
        found.append(fire.astimezone(UTC))
    return found


def cases() -> Iterator[tuple[str, datetime]]:
    for name in ZONES:
        for change in transitions(ZoneInfo(name)):
            yield name, change


@pytest.mark.parametrize("zone_name", ZONES)
def test_fire_times_around_every_transition_agree_with_cronsim(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    changes = transitions(zone)
    assert len(changes) == 4  # a spring and an autumn change in each of two years
    disagreements = []
    for change in changes:
        start, end = change - WINDOW, change + WINDOW
        for expression in CURATED:
            mine, other = ours(expression, start, end, zone), theirs(expression, start, end, zone)
            if mine != other:
                disagreements.append(f"{expression!r} around {change}: ours {mine}, cronsim {other}")
    assert disagreements == [], "\n".join(disagreements[:5])


@pytest.mark.parametrize("zone_name", ["America/New_York", "Australia/Sydney", "Europe/Berlin"])
def test_generated_expressions_agree_with_cronsim_across_transitions(zone_name: str) -> None:
    """The differential test's few hundred expressions, each from just before every change.

    Not in zones that change at midnight: there cronsim, rolling to the next day, lands on the
    midnight the clocks skip and either fires at it or steps past the hour after it (`* 1 * * 0` on
    Santiago's 2026-09-06); the curated expressions above still cover those zones.
    """
    zone = ZoneInfo(zone_name)
    disagreements = []
    for change in transitions(zone, (2026,)):
        start = change - timedelta(hours=3)
        for expression in expressions():
            try:
                schedule = parse_cron(expression)
            except Exception:  # refused on purpose: see test_cron_differential
                continue
            mine, at = [], start
            for _ in range(8):
                at = schedule.next_fire_time(at, zone)
                mine.append(at.astimezone(UTC))
            it = cronsim.CronSim(expression, start.astimezone(zone))
            other = [next(it).astimezone(UTC) for _ in range(8)]
            if mine != other:
                disagreements.append(f"{expression!r} after {start}: ours {mine}, cronsim {other}")
    assert disagreements == [], "\n".join(disagreements[:5])


# -- the rule, spelt out on New York's autumn and spring days of 2026 -----------------------------


def new_york(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK, fold=fold)  # type: ignore[misc]


def local_times(expression: str, start: datetime, end: datetime) -> list[str]:
    return [t.strftime("%H:%M%z") for t in parse_schedule(expression).fire_times(start, end, NEW_YORK)]


def test_every_15_minutes_runs_through_the_repeated_autumn_hour_twice() -> None:
    got = local_times("*/15 * * * *", new_york(2026, 11, 1, 0, 50), new_york(2026, 11, 1, 2, 0))
    edt = [f"01:{m:02}-0400" for m in (0, 15, 30, 45)]
    est = [f"01:{m:02}-0500" for m in (0, 15, 30, 45)]
    assert got == [*edt, *est, "02:00-0500"]


def test_a_fixed_time_in_the_repeated_hour_runs_once_at_its_first_occurrence() -> None:
    assert local_times("30 1 * * *", new_york(2026, 10, 31), new_york(2026, 11, 2)) == [
        "01:30-0400",
        "01:30-0400",
    ]


def test_a_wildcard_hour_skips_the_spring_gap_and_a_fixed_time_runs_at_its_end() -> None:
    start, end = new_york(2026, 3, 8, 0, 59), new_york(2026, 3, 8, 4, 0)
    assert local_times("30 * * * *", start, end) == ["01:30-0500", "03:30-0400"]
    assert local_times("30 2 * * *", start, end) == ["03:00-0400"]
    assert local_times("*/5 2 * * *", start, end) == []  # a minute wildcard: nothing in the gap


def test_a_half_hour_change_follows_the_same_rule() -> None:
    zone = ZoneInfo("Australia/Lord_Howe")  # autumn: 02:00 +11 back to 01:30; spring: 02:00 on to 02:30

    def got(expression: str, start: datetime, end: datetime) -> list[str]:
        return [t.strftime("%H:%M%z") for t in parse_cron(expression).fire_times(start, end, zone)]

    autumn = (datetime(2026, 4, 5, 0, 50, tzinfo=zone), datetime(2026, 4, 5, 3, 0, tzinfo=zone))
    first, second = ["01:00+1100", "01:20+1100", "01:40+1100"], ["01:40+1030", "02:00+1030"]
    assert got("*/20 * * * *", *autumn) == [*first, *second, "02:20+1030", "02:40+1030", "03:00+1030"]
    assert got("40 1 * * *", *autumn) == ["01:40+1100"]
    spring = (datetime(2026, 10, 4, 1, 50, tzinfo=zone), datetime(2026, 10, 4, 3, 0, tzinfo=zone))
    assert got("*/20 * * * *", *spring) == ["02:40+1100", "03:00+1100"]
    assert got("20 2 * * *", *spring) == ["02:30+1100"]


def test_the_wildcard_rule_reads_the_field_as_written() -> None:
    assert parse_cron("*/15 * * * *").follows_clock and parse_cron("@hourly").follows_clock
    assert parse_cron("*/5 9 * * *").follows_clock  # `*` in the minute field is enough
    assert not parse_cron("0 9 * * *").follows_clock and not parse_cron("0-59 0-23 * * *").follows_clock


def test_previous_and_next_fire_time_know_both_occurrences() -> None:
    schedule = parse_schedule("*/15 * * * *")
    second = new_york(2026, 11, 1, 1, 0, fold=1)
    assert schedule.next_fire_time(new_york(2026, 11, 1, 1, 50), NEW_YORK).astimezone(
        UTC
    ) == second.astimezone(UTC)
    found = schedule.previous_fire_time(new_york(2026, 11, 1, 1, 10, fold=1), NEW_YORK)
    assert found is not None and found.astimezone(UTC) == second.astimezone(UTC)
    assert found.utcoffset() == timedelta(hours=-5)


# -- fire-time identity: the UTC instant, never the wall time ------------------------------------


def test_the_loop_wakes_every_report_at_each_utc_instant_through_the_repeated_hour() -> None:
    """Two fire times a wall time apart in the same zone compare by wall time in Python (PEP 495):
    `decide` must order and compare them as instants, or 01:50 EDT waits behind 01:00 EST."""
    timings = {"quarter": Timing(parse_schedule("*/15 * * * *"), NEW_YORK),
               "late": Timing(parse_schedule("50 1 * * *"), NEW_YORK)}  # fmt: skip
    now = new_york(2026, 11, 1, 0, 55).astimezone(UTC)
    state = start_state(timings, 30.0, now)
    state = decide(state, now).state  # the start-up wake-up
    woken: list[tuple[str, datetime]] = []
    end = new_york(2026, 11, 1, 2, 5, fold=1).astimezone(UTC)
    while now < end:
        decision = decide(state, now)
        woken += [(a.report_id, now) for a in decision.actions if isinstance(a, Wake)]
        state = decision.state
        now = now + timedelta(seconds=max(decision.sleep, 0.25))
    late = [t for rid, t in woken if rid == "late"]
    quarter = [t for rid, t in woken if rid == "quarter"]
    assert [t.astimezone(NEW_YORK).strftime("%H:%M%z") for t in late] == ["01:50-0400"]
    assert late[0] - new_york(2026, 11, 1, 1, 50).astimezone(UTC) < timedelta(seconds=1)
    assert [t.astimezone(NEW_YORK).strftime("%H:%M%z") for t in quarter] == [
        *[f"01:{m:02}-0400" for m in (0, 15, 30, 45)],
        *[f"01:{m:02}-0500" for m in (0, 15, 30, 45)],
        "02:00-0500",
    ]


def test_a_catch_up_over_the_repeated_hour_keeps_both_occurrences_apart() -> None:
    schedule = parse_schedule("*/15 * * * *")
    now = new_york(2026, 11, 1, 1, 45, 10, fold=1).astimezone(UTC)
    got = plan(schedule, NEW_YORK, now=now, last_recorded=new_york(2026, 11, 1, 0, 45).astimezone(UTC),
               recorded=set(), policy="all", grace=7200)  # fmt: skip
    start = new_york(2026, 11, 1, 1, 0).astimezone(UTC)
    assert [t.astimezone(UTC) for t in got.run] == [start + timedelta(minutes=15 * n) for n in range(8)]
    assert got.missed == []
    recorded = {start + timedelta(minutes=15 * n) for n in range(4)}  # the EDT hour already ran
    again = plan(schedule, NEW_YORK, now=now, last_recorded=max(recorded), recorded=recorded,
                 policy="all", grace=7200)  # fmt: skip
    assert [t.astimezone(UTC) for t in again.run] == [start + timedelta(minutes=15 * n) for n in range(4, 8)]
