"""Date macros for queries and templates, computed from a run's scheduled fire time."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from dispatcher.schedule.zones import require_aware

_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)


def date_macros(fire_time: datetime, tz: ZoneInfo) -> dict[str, str]:
    """ISO dates around the local date of `fire_time` in `tz`.

    Only the scheduled fire time counts, never the clock, so a late or re-run run queries the
    same dates as an on-time one. Weeks start on Monday.
    """
    local = require_aware(fire_time, "fire_time").astimezone(tz)
    today = local.date()
    yesterday = today - _DAY
    week_start = today - timedelta(days=today.weekday())
    month_start = today.replace(day=1)
    last_month_end = month_start - _DAY
    year_start = date(today.year, 1, 1)
    dates = {
        "today": today,
        "fire_date": today,
        "yesterday": yesterday,
        "day_before_yesterday": today - 2 * _DAY,
        "same_day_last_week": today - _WEEK,
        "yesterday_last_week": yesterday - _WEEK,
        "week_start": week_start,
        "last_week_start": week_start - _WEEK,
        "last_week_end": week_start - _DAY,
        "month_start": month_start,
        "last_month_start": last_month_end.replace(day=1),
        "last_month_end": last_month_end,
        "year_start": year_start,
        "last_year_start": date(today.year - 1, 1, 1),
        "last_year_end": year_start - _DAY,
    }
    macros = {name: value.isoformat() for name, value in dates.items()}
    macros["fire_time"] = local.replace(microsecond=0).isoformat()
    return macros
