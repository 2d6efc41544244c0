"""Fire times: cron rules, DST, interval alignment, and agreement between processes."""

from __future__ import annotations

import bisect
import json
import os
import random
import re
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dispatcher.errors import ScheduleError
from dispatcher.schedule import parse_duration, parse_schedule, to_zone

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
SYDNEY = ZoneInfo("Australia/Sydney")
REPO = Path(__file__).resolve().parent.parent


def fires(spec, start, end, tz=SHANGHAI):
    return list(parse_schedule(spec).fire_times(start, end, tz))


def local(tz, *args):
    return datetime(*args, tzinfo=tz)


def as_utc(t):
    # Python never finds a time inside a fall-back hour equal to one in another zone (PEP 495).
    return t.astimezone(UTC) if t is not None else None


def utc_instants(times):
    return [t.astimezone(UTC) for t in times]


# --- cron: days of the week, ranges, steps, names -------------------------------------------


def test_monday_cron_fires_on_monday_not_tuesday():
    saturday = local(SHANGHAI, 2026, 11, 28, 12, 0)
    nxt = parse_schedule("0 9 * * 1").next_fire_time(saturday, SHANGHAI)
    assert nxt == local(SHANGHAI, 2026, 11, 30, 9, 0)
    got = fires("0 9 * * 1", saturday, saturday + timedelta(days=21))
    assert [t.date() for t in got] == [date(2026, 11, 30), date(2026, 12, 7), date(2026, 12, 14)]
    assert {t.strftime("%A %H:%M") for t in got} == {"Monday 09:00"}


@pytest.mark.parametrize("sunday", ["0", "7", "sun", "SUN"])
def test_day_of_week_0_and_7_both_mean_sunday(sunday):
    saturday = local(SHANGHAI, 2026, 11, 28, 12, 0)
    got = fires(f"0 9 * * {sunday}", saturday, saturday + timedelta(days=14))
    assert [t.date() for t in got] == [date(2026, 11, 29), date(2026, 12, 6)]


@pytest.mark.parametrize("weekdays", ["1-5", "mon-fri", "MON-FRI", "Mon-Fri", "1,2,3,4,5", "mon-5"])
def test_weekday_ranges_and_names_mean_monday_to_friday(weekdays):
    saturday = local(SHANGHAI, 2026, 11, 28, 12, 0)
    got = fires(f"0 9 * * {weekdays}", saturday, saturday + timedelta(days=7))
    assert [t.day for t in got] == [30, 1, 2, 3, 4]
    assert all(t.isoweekday() <= 5 for t in got)


def test_day_of_month_and_day_of_week_both_restricted_fire_on_either():
    october = fires("0 0 13 * 5", local(SHANGHAI, 2026, 10, 1), local(SHANGHAI, 2026, 11, 1))
    assert [t.day for t in october] == [2, 9, 13, 16, 23, 30]  # Fridays, plus Tuesday the 13th


def test_starred_day_of_month_means_both_days_must_match():
    got = fires("0 0 */2 * 5", local(SHANGHAI, 2026, 10, 1), local(SHANGHAI, 2026, 11, 1))
    assert [t.day for t in got] == [9, 23]  # Fridays that fall on odd days only


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("10-50/20 * * * *", ["10:10", "10:30", "10:50", "11:10"]),
        ("*/15 * * * *", ["10:00", "10:15", "10:30", "10:45", "11:00"]),
        ("5,7 10 * * *", ["10:05", "10:07"]),
        ("58-59,1 * * * *", ["10:01", "10:58", "10:59", "11:01"]),
    ],
)
def test_minute_steps_lists_and_ranges(spec, expected):
    got = fires(spec, local(SHANGHAI, 2026, 5, 4, 9, 59), local(SHANGHAI, 2026, 5, 4, 11, 10))
    assert [t.strftime("%H:%M") for t in got] == expected


@pytest.mark.parametrize(("spec", "hours"), [("0 9-17/4 * * *", [9, 13, 17]), ("0 */8 * * *", [0, 8, 16])])
def test_hour_ranges_with_steps(spec, hours):
    got = fires(spec, local(SHANGHAI, 2026, 5, 3, 23), local(SHANGHAI, 2026, 5, 4, 23))
    assert [t.hour for t in got] == hours


def test_month_names_and_macros():
    year = (local(SHANGHAI, 2026, 1, 1), local(SHANGHAI, 2027, 1, 1))
    assert [t.month for t in fires("0 0 1 JAN,jul *", *year)] == [7, 1]  # start is exclusive
    assert fires("@yearly", *year) == fires("0 0 1 1 *", *year) == [local(SHANGHAI, 2027, 1, 1)]
    assert fires("@monthly", *year) == fires("0 0 1 * *", *year)
    assert fires("@weekly", *year) == fires("0 0 * * sun", *year)
    assert fires("@daily", *year) == fires("@midnight", *year) == fires("0 0 * * *", *year)
    assert fires("@hourly", *year)[:2] == [local(SHANGHAI, 2026, 1, 1, h) for h in (1, 2)]


def test_expression_is_normalised_for_display():
    assert parse_schedule("  0   9 * *  MON ").expression == "0 9 * * mon"
    assert parse_schedule("@Daily").expression == "@daily"
    assert parse_schedule({"every": 90}).expression == "every 1m30s"
    assert parse_schedule({"every": "2h"}).expression == "every 2h"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0 9 * *", "'0 9 * *' is not a 5-field cron expression"),
        ("0 9 * * * *", "is not a 5-field cron expression"),
        ("", "'' is not a 5-field cron expression"),
        ("every 30s", "is not a 5-field cron expression"),
        ("61 9 * * *", "minute field '61' is out of range 0-59"),
        ("0 24 * * *", "hour field '24' is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field '0' is out of range 1-31"),
        ("0 0 1 13 *", "month field '13' is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field '8' is out of range 0-7"),
        ("*/0 * * * *", "must be between 1 and 60"),
        ("*/90 * * * *", "must be between 1 and 60"),
        ("5-1 * * * *", "'5-1' is a reversed range"),
        ("0 0 * * fri-mon", "'fri-mon' is a reversed range"),
        ("0 0 * * mnd", "unknown day-of-week name 'mnd'"),
        ("0 0 1 foo *", "unknown month name 'foo'"),
        ("0 0 * * monday", "unknown day-of-week name 'monday'"),
        ("x 9 * * *", "minute field 'x' is not a number"),
        ("5/15 * * * *", "a step needs a range or '*'"),
        ("1,,2 * * * *", "minute field has an empty value"),
        ("0 9 * * 1-", "day-of-week field has an empty value"),
        ("*/a * * * *", "step 'a' is not a whole number"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("@reboot", "unknown cron macro '@reboot'"),
        ("0 9 ? * 1L", "is not a number"),
        ("!@#$% ^&*( ) - + =", "is not"),
    ],
)
def test_bad_cron_expressions_name_the_problem(spec, message):
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(spec)
    assert message in str(caught.value)


def test_impossible_dates_are_refused_but_rare_ones_are_allowed():
    parse_schedule("0 0 31 * *")
    parse_schedule("0 0 30 2 mon")  # the Unix OR rule: every Monday
    nxt = parse_schedule("0 0 29 2 *").next_fire_time(local(SHANGHAI, 2026, 1, 1), SHANGHAI)
    assert nxt == local(SHANGHAI, 2028, 2, 29)


# --- DST --------------------------------------------------------------------------------------


def test_spring_forward_skipped_time_fires_once_at_end_of_gap():
    got = fires("30 2 * * *", local(NEW_YORK, 2026, 3, 6), local(NEW_YORK, 2026, 3, 10), NEW_YORK)
    assert [t.isoformat() for t in got] == [
        "2026-03-06T02:30:00-05:00",
        "2026-03-07T02:30:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]


def test_several_skipped_times_share_one_fire_at_end_of_gap():
    start, end = local(NEW_YORK, 2026, 3, 8, 1, 30), local(NEW_YORK, 2026, 3, 8, 3, 30)
    assert [t.strftime("%H:%M%z") for t in fires("0,15,30,45 2 * * *", start, end, NEW_YORK)] == [
        "03:00-0400"
    ]
    # Following the clock (`*` in the minute field), the skipped times do not fire at all.
    got = fires(
        "*/15 * * * *",
        local(NEW_YORK, 2026, 3, 8, 1, 30),
        local(NEW_YORK, 2026, 3, 8, 3, 30),
        NEW_YORK,
    )
    assert [t.strftime("%H:%M%z") for t in got] == [
        "01:45-0500",
        "03:00-0400",
        "03:15-0400",
        "03:30-0400",
    ]


def test_monday_nine_oclock_stays_local_when_the_utc_offset_changes():
    got = fires("0 9 * * 1", local(NEW_YORK, 2026, 3, 1), local(NEW_YORK, 2026, 3, 10), NEW_YORK)
    assert [(t.day, t.hour, t.astimezone(UTC).hour) for t in got] == [(2, 9, 14), (9, 9, 13)]


def test_fall_back_repeated_time_fires_once_at_first_occurrence():
    got = fires("30 1 * * *", local(NEW_YORK, 2026, 10, 31), local(NEW_YORK, 2026, 11, 3), NEW_YORK)
    assert [t.isoformat() for t in got] == [
        "2026-10-31T01:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]


@pytest.mark.parametrize(
    ("day", "expected", "wall_hours"),
    [((2026, 3, 8), 23, 23), ((2026, 11, 1), 25, 24), ((2026, 5, 4), 24, 24)],
)
def test_hourly_job_across_dst_follows_the_clock_like_cronie(day, expected, wall_hours):
    got = fires(
        "0 * * * *",
        local(NEW_YORK, *day) - timedelta(seconds=1),
        local(NEW_YORK, *day, 23, 59),
        NEW_YORK,
    )
    instants = utc_instants(got)
    assert instants == sorted(set(instants))
    # `*` in the hour field (tests/test_cron_dst.py): the skipped 02:00 does not fire, the
    # repeated 01:00 fires twice.
    assert len(got) == expected
    assert len({t.hour for t in got}) == wall_hours


def test_half_past_hourly_job_skips_the_spring_gap_like_cronie():
    got = fires("30 * * * *", local(NEW_YORK, 2026, 3, 8), local(NEW_YORK, 2026, 3, 9), NEW_YORK)
    assert len(got) == 23
    assert got[2].isoformat() == "2026-03-08T03:30:00-04:00"


def test_other_zones_follow_the_same_dst_rules():
    london = fires("30 1 * * *", local(LONDON, 2026, 3, 28), local(LONDON, 2026, 3, 31), LONDON)
    assert [t.isoformat() for t in london][1] == "2026-03-29T02:00:00+01:00"
    autumn = fires("30 2 * * *", local(SYDNEY, 2026, 4, 4), local(SYDNEY, 2026, 4, 6), SYDNEY)
    assert [t.isoformat() for t in autumn] == [
        "2026-04-04T02:30:00+11:00",
        "2026-04-05T02:30:00+11:00",
    ]
    spring = fires("30 2 * * *", local(SYDNEY, 2026, 10, 3), local(SYDNEY, 2026, 10, 5), SYDNEY)
    assert [t.isoformat() for t in spring] == [
        "2026-10-03T02:30:00+10:00",
        "2026-10-04T03:00:00+11:00",
    ]


def test_shanghai_daily_job_is_always_the_same_utc_hour():
    got = fires("0 9 * * *", local(SHANGHAI, 2026, 1, 1), local(SHANGHAI, 2027, 1, 1))
    assert len(got) == 365
    assert {t.astimezone(UTC).strftime("%H:%M") for t in got} == {"01:00"}


# --- intervals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "expected"),
    [("30s", "10:07:30"), ("15m", "10:15:00"), ("2h", "12:00:00"), ("3h", "12:00:00")],
)
def test_interval_dividing_a_day_is_aligned_to_local_midnight(every, expected):
    schedule = parse_schedule({"every": every})
    for tz in (SHANGHAI, NEW_YORK):
        nxt = schedule.next_fire_time(local(tz, 2026, 5, 4, 10, 7, 13), tz)
        assert (nxt.tzinfo, nxt.date(), nxt.strftime("%H:%M:%S")) == (
            tz,
            date(2026, 5, 4),
            expected,
        )


def test_three_hourly_interval_in_shanghai_is_not_aligned_to_utc():
    got = fires({"every": "3h"}, local(SHANGHAI, 2026, 5, 3, 23), local(SHANGHAI, 2026, 5, 4, 7))
    assert [t.hour for t in got] == [0, 3, 6]
    assert [t.astimezone(UTC).hour for t in got] == [16, 19, 22]


def test_interval_on_spring_forward_day_keeps_exact_spacing_and_restarts_at_midnight():
    got = fires({"every": "2h"}, local(NEW_YORK, 2026, 3, 7, 23), local(NEW_YORK, 2026, 3, 9, 1), NEW_YORK)
    assert [t.strftime("%d %H:%M%z") for t in got] == [
        "08 00:00-0500",
        *[f"08 {h:02}:00-0400" for h in range(3, 24, 2)],
        "09 00:00-0400",
    ]


def test_interval_on_fall_back_day_never_gains_an_extra_run():
    day = (local(NEW_YORK, 2026, 10, 31, 23), local(NEW_YORK, 2026, 11, 2, 0))
    two_hourly = fires({"every": "2h"}, *day, NEW_YORK)
    assert [t.strftime("%d %H:%M%z") for t in two_hourly] == [
        "01 00:00-0400",
        *[f"01 {h:02}:00-0500" for h in range(1, 22, 2)],
        "02 00:00-0500",
    ]
    assert [t.day for t in fires({"every": "1d"}, *day, NEW_YORK)] == [1, 2]
    gaps = {b - a for a, b in zip(utc_instants(two_hourly), utc_instants(two_hourly)[1:])}
    assert gaps == {timedelta(hours=2), timedelta(hours=3)}


@pytest.mark.parametrize("every", ["7m", 5000, "2d"])
def test_interval_not_dividing_a_day_is_aligned_to_the_unix_epoch(every):
    seconds = int(parse_duration(every))
    start = datetime(2026, 5, 4, 10, 7, 13, tzinfo=UTC)
    in_shanghai = fires({"every": every}, start, start + timedelta(days=5), SHANGHAI)
    in_new_york = fires({"every": every}, start, start + timedelta(days=5), NEW_YORK)
    assert in_shanghai and utc_instants(in_shanghai) == utc_instants(in_new_york)
    assert all(int(t.timestamp()) % seconds == 0 for t in in_shanghai)
    assert in_shanghai[0].astimezone(UTC) - start < timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("every", "message"),
    [
        (0.5, "whole number of seconds, at least 1s"),
        ("1.5s", "whole number of seconds, at least 1s"),
        ("500ms", "'500ms' is not a duration"),
        (0, "must be greater than zero"),
        ("-5m", "'-5m' is not a duration"),
        (True, "is not a duration"),
        (None, "needs a duration"),
        ("400d", "longer than a year"),
    ],
)
def test_bad_intervals_are_refused(every, message):
    with pytest.raises(ScheduleError, match=message):
        parse_schedule({"every": every})


@pytest.mark.parametrize("spec", [{}, {"every": "1m", "at": "09:00"}, {"cron": "0 9 * * *"}, 42, None])
def test_schedule_must_be_a_cron_string_or_every_mapping(spec):
    with pytest.raises(ScheduleError):
        parse_schedule(spec)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("10", 10),
        (10, 10),
        (2.5, 2.5),
        (" 1H 30M ", 5400),
        ("1.5m", 90),
        ("1d2h3m4s", 93784),
    ],
)
def test_parse_duration_accepts_common_forms(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["abc", "", "500ms", "30m1h", "1h1h", "-5", "1e3", "5 minutes", True, None, float("nan")],
)
def test_parse_duration_refuses_junk_with_an_example(text):
    with pytest.raises(ScheduleError, match="is not a duration; use e.g. 30s, 15m, 2h or 1d"):
        parse_duration(text)


@pytest.mark.parametrize("value", [0, "0s", -3, "0m0s"])
def test_parse_duration_refuses_zero_and_negative(value):
    with pytest.raises(ScheduleError, match="must be greater than zero"):
        parse_duration(value)


def test_min_period_tells_sub_minute_schedules_apart():
    assert parse_schedule({"every": 2}).min_period_seconds == 2
    assert parse_schedule({"every": "15m"}).min_period_seconds == 900
    assert parse_schedule("* * * * *").min_period_seconds == 60
    # A skipped DST hour can put a :59 fire and the gap's end a minute apart.
    assert parse_schedule("59 * * * *").min_period_seconds == 60
    assert parse_schedule("0 9 * * *").min_period_seconds == 22 * 3600
    assert parse_schedule("0 9 * * 1").min_period_seconds == 7 * 86400 - 7200


# --- time zones -------------------------------------------------------------------------------


def test_to_zone_accepts_iana_names():
    assert to_zone("Asia/Shanghai") == SHANGHAI
    assert to_zone("UTC").key == "UTC"


@pytest.mark.parametrize("name", ["Asia/Shangai", "../etc", "", "Asia", "/etc/passwd", "nul\0l"])
def test_to_zone_refuses_unknown_names(name):
    with pytest.raises(ScheduleError, match=re.escape(f"unknown timezone {name!r}")):
        to_zone(name)


# --- consistency, purity, efficiency ----------------------------------------------------------

PROPERTY_CASES = [
    ("*/15 * * * *", NEW_YORK),
    ("30 2 * * *", NEW_YORK),
    ("30 1 * * *", NEW_YORK),
    ("0 9 * * 1", NEW_YORK),
    ("0 0 13 * 5", SHANGHAI),
    ({"every": "7m"}, NEW_YORK),
    ({"every": "2h"}, NEW_YORK),
    ({"every": "1d"}, SYDNEY),
    ({"every": "30s"}, SHANGHAI),
]


@pytest.mark.parametrize(("spec", "tz"), PROPERTY_CASES)
@pytest.mark.parametrize(
    "window_start", [datetime(2026, 3, 7, 12, tzinfo=UTC), datetime(2026, 10, 31, 12, tzinfo=UTC)]
)
def test_next_previous_and_fire_times_agree(spec, tz, window_start):
    schedule = parse_schedule(spec)
    window_end = window_start + timedelta(days=3)
    pad = timedelta(days=8)  # every case fires at least weekly
    all_fires = utc_instants(schedule.fire_times(window_start - pad, window_end + pad, tz))
    inside = [t for t in all_fires if window_start < t <= window_end]
    assert utc_instants(schedule.fire_times(window_start, window_end, tz)) == inside
    assert all_fires == sorted(set(all_fires))
    rng = random.Random(f"{spec}{window_start}")
    probes = [window_start + timedelta(seconds=rng.uniform(0, 3 * 86400)) for _ in range(60)]
    probes += inside[:: max(1, len(inside) // 40)]
    probes += [t - timedelta(microseconds=1) for t in inside[:: max(1, len(inside) // 20)]]
    for probe in probes:
        later = all_fires[bisect.bisect_right(all_fires, probe)]
        earlier = all_fires[bisect.bisect_right(all_fires, probe) - 1]
        assert schedule.next_fire_time(probe, tz).astimezone(UTC) == later, probe
        assert as_utc(schedule.previous_fire_time(probe, tz)) == earlier, probe
    for fire in inside[:: max(1, len(inside) // 40)]:
        assert as_utc(schedule.previous_fire_time(fire, tz)) == fire
        assert schedule.next_fire_time(fire, tz) > fire


def test_fire_times_are_returned_in_the_requested_zone():
    schedule = parse_schedule("0 9 * * *")
    nxt = schedule.next_fire_time(datetime(2026, 5, 4, tzinfo=UTC), SHANGHAI)
    assert nxt.tzinfo is SHANGHAI and nxt.isoformat() == "2026-05-04T09:00:00+08:00"
    with pytest.raises(ScheduleError, match="timezone-aware"):
        schedule.next_fire_time(datetime(2026, 5, 4), SHANGHAI)


def test_rare_yearly_cron_is_found_without_scanning_minute_by_minute(monkeypatch: pytest.MonkeyPatch):
    from dispatcher.schedule import cron

    # Counted, not timed: a minute-by-minute search over the eight years between two 29 Februaries
    # would look at about four million wall times; the walk looks only at days of February.
    looked: list[date] = []
    matches_day = cron.CronSchedule.matches_day
    monkeypatch.setattr(
        cron.CronSchedule, "matches_day", lambda self, day: looked.append(day) or matches_day(self, day)
    )
    schedule = parse_schedule("0 0 29 2 *")
    nxt = schedule.next_fire_time(local(SHANGHAI, 2096, 3, 1), SHANGHAI)
    prev = schedule.previous_fire_time(local(SHANGHAI, 2103, 12, 31), SHANGHAI)
    assert (nxt, prev) == (local(SHANGHAI, 2104, 2, 29), local(SHANGHAI, 2096, 2, 29))
    assert looked and {day.month for day in looked} == {2}
    assert len(looked) < 2 * 9 * 29


def test_previous_fire_time_is_none_when_the_calendar_runs_out():
    assert parse_schedule("0 0 29 2 *").previous_fire_time(datetime(3, 1, 1, tzinfo=UTC), SHANGHAI) is None


def test_ten_thousand_interval_fires_take_well_under_a_second():
    schedule = parse_schedule({"every": "30s"})
    start = local(NEW_YORK, 2026, 3, 6).astimezone(UTC)  # UTC: real, not wall-clock, arithmetic
    began = time.perf_counter()
    got = list(schedule.fire_times(start, start + timedelta(seconds=30 * 10_000), NEW_YORK))
    elapsed = time.perf_counter() - began
    assert len(got) == 10_000  # spans the 23-hour 2026-03-08 without losing a beat
    assert {b - a for a, b in zip(utc_instants(got), utc_instants(got)[1:])} == {timedelta(seconds=30)}
    assert elapsed < 0.5


CHILD = """
import json, sys
from datetime import datetime
from zoneinfo import ZoneInfo
from dispatcher.schedule import parse_schedule
after = datetime.fromisoformat(sys.argv[1])
out = {}
for spec, zone in json.loads(sys.argv[2]):
    schedule, tz, times = parse_schedule(spec), ZoneInfo(zone), []
    t = after
    for _ in range(20):
        t = schedule.next_fire_time(t, tz)
        times.append(t.isoformat())
    out[json.dumps(spec)] = times
print(json.dumps(out))
"""


def test_separate_processes_compute_identical_fire_times():
    specs = [
        [{"every": "7m"}, "Asia/Shanghai"],
        [{"every": "45s"}, "America/New_York"],
        ["*/20 1-3 * * *", "America/New_York"],
        [{"every": "2h"}, "America/New_York"],
    ]
    after = "2026-03-07T23:01:02.345678+00:00"
    outputs = []
    for seed, system_tz in (("1", "Asia/Shanghai"), ("2", "America/Los_Angeles")):
        env = {**os.environ, "PYTHONHASHSEED": seed, "TZ": system_tz, "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, after, json.dumps(specs)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 4 and all(len(times) == 20 for times in outputs[0].values())
    assert outputs[0][json.dumps({"every": "7m"})][0] == "2026-03-08T07:03:00+08:00"
