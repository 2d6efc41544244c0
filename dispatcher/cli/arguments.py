"""Argument types the commands share: an ISO-8601 instant (`--at`) and a backfill day (`--from`, `--to`).

argparse turns their ArgumentTypeError into a usage error (exit 2) naming the option.
"""

from __future__ import annotations

import argparse
from datetime import date, datetime


def iso_instant(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO-8601 time, e.g. 2026-11-28T09:00 or 2026-11-28T09:00:00+08:00"
        ) from None


def backfill_day(value: str) -> date:
    from dispatcher.run.backfill import FIRST_DAY, LAST_DAY, day_range

    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a day, e.g. 2026-11-01") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise argparse.ArgumentTypeError(f"{value} is out of range: {day_range()}")
    return day
