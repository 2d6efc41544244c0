"""Date macros come from the scheduled fire time in the report's zone, never from the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dispatcher import clock
from dispatcher.errors import ScheduleError
from dispatcher.schedule import date_macros, parse_schedule

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def macros_at(*args, tz=SHANGHAI):
    return date_macros(datetime(*args, tzinfo=tz), tz)


def test_every_macro_for_an_ordinary_monday():
    assert macros_at(2026, 11, 30, 9, 0, 0, 123456) == {
        "today": "2026-11-30",
        "fire_date": "2026-11-30",
        "yesterday": "2026-11-29",
        "day_before_yesterday": "2026-11-28",
        "same_day_last_week": "2026-11-23",
        "yesterday_last_week": "2026-11-22",
        "week_start": "2026-11-30",
        "last_week_start": "2026-11-23",
        "last_week_end": "2026-11-29",
        "month_start": "2026-11-01",
        "last_month_start": "2026-10-01",
        "last_month_end": "2026-10-31",
        "year_start": "2026-01-01",
        "last_year_start": "2025-01-01",
        "last_year_end": "2025-12-31",
        "fire_time": "2026-11-30T09:00:00+08:00",
    }


def test_one_second_before_and_at_local_midnight_are_different_days():
    before = macros_at(2026, 3, 31, 23, 59, 59)
    at = macros_at(2026, 4, 1, 0, 0, 0)
    assert (before["today"], before["yesterday"], before["month_start"]) == (
        "2026-03-31",
        "2026-03-30",
        "2026-03-01",
    )
    assert (at["today"], at["yesterday"], at["month_start"], at["last_month_end"]) == (
        "2026-04-01",
        "2026-03-31",
        "2026-04-01",
        "2026-03-31",
    )


def test_utc_instant_takes_the_date_of_the_report_zone():
    instant = datetime(2026, 3, 31, 16, 30, tzinfo=UTC)  # 00:30 on 1 April in Shanghai
    in_shanghai = date_macros(instant, SHANGHAI)
    assert (in_shanghai["today"], in_shanghai["fire_time"]) == (
        "2026-04-01",
        "2026-04-01T00:30:00+08:00",
    )
    assert date_macros(instant, ZoneInfo("UTC"))["today"] == "2026-03-31"
    assert date_macros(instant, NEW_YORK)["fire_time"] == "2026-03-31T12:30:00-04:00"


@pytest.mark.parametrize(
    ("year", "feb_end"), [(2026, "2026-02-28"), (2028, "2028-02-29"), (2100, "2100-02-28")]
)
def test_first_of_march_looks_back_to_the_end_of_february(year, feb_end):
    got = macros_at(year, 3, 1, 8, 0)
    assert (got["last_month_start"], got["last_month_end"]) == (f"{year}-02-01", feb_end)
    assert (got["yesterday"], got["month_start"]) == (feb_end, f"{year}-03-01")


def test_new_year_looks_back_into_the_previous_year():
    got = macros_at(2027, 1, 1, 9, 0)  # a Friday
    assert {k: got[k] for k in got if k != "fire_time"} == {
        "today": "2027-01-01",
        "fire_date": "2027-01-01",
        "yesterday": "2026-12-31",
        "day_before_yesterday": "2026-12-30",
        "same_day_last_week": "2026-12-25",
        "yesterday_last_week": "2026-12-24",
        "week_start": "2026-12-28",
        "last_week_start": "2026-12-21",
        "last_week_end": "2026-12-27",
        "month_start": "2027-01-01",
        "last_month_start": "2026-12-01",
        "last_month_end": "2026-12-31",
        "year_start": "2027-01-01",
        "last_year_start": "2026-01-01",
        "last_year_end": "2026-12-31",
    }


def test_last_week_spans_the_year_end():
    got = macros_at(2027, 1, 4, 9, 0)  # Monday
    assert (got["week_start"], got["last_week_start"], got["last_week_end"]) == (
        "2027-01-04",
        "2026-12-28",
        "2027-01-03",
    )


@pytest.mark.parametrize(
    ("day", "week_start"),
    [(29, "2026-11-23"), (30, "2026-11-30"), (28, "2026-11-23"), (24, "2026-11-23")],
)
def test_weeks_start_on_monday(day, week_start):
    got = macros_at(2026, 11, day, 12, 0)
    assert got["week_start"] == week_start
    assert got["last_week_end"] == (datetime.fromisoformat(week_start) - timedelta(days=1)).date().isoformat()


def test_fire_time_keeps_the_dst_offset_of_the_moment():
    spring = parse_schedule("30 2 * * *").next_fire_time(datetime(2026, 3, 8, tzinfo=NEW_YORK), NEW_YORK)
    assert date_macros(spring, NEW_YORK)["fire_time"] == "2026-03-08T03:00:00-04:00"
    second_pass = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST, after falling back
    assert date_macros(second_pass, NEW_YORK)["fire_time"] == "2026-11-01T01:30:00-05:00"


def test_macros_depend_on_the_fire_time_not_on_when_they_are_computed(monkeypatch):
    fire_time = datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI)
    on_time = date_macros(fire_time, SHANGHAI)
    monkeypatch.setattr(clock, "now", lambda: datetime(2031, 7, 15, 3, 0, tzinfo=UTC))
    late = date_macros(fire_time, SHANGHAI)
    assert late == on_time
    assert late["today"] == "2026-11-30"


def test_naive_fire_time_is_refused():
    with pytest.raises(ScheduleError, match="timezone-aware"):
        date_macros(datetime(2026, 11, 30, 9, 0), SHANGHAI)
