"""`dispatcher cron` and `dispatcher list ID --next N`: a schedule in words and its next fire times.

Both go through the parser and fire-time code the daemon uses, so what they print is what will fire.
Its own module so that `cli` stays a list of commands; it imports nothing of `cli`.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from dispatcher.schedule import Schedule

NEXT_MAX = 1000


def next_count(text: str) -> int:
    """`--next N`: a whole number from 1 to NEXT_MAX (a usage error otherwise)."""
    if not (text.isdigit() and 1 <= int(text) <= NEXT_MAX):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of fire times from 1 to {NEXT_MAX}")
    return int(text)


def cmd_cron(args: argparse.Namespace) -> int:
    from dispatcher import clock
    from dispatcher.config.model import DEFAULT_TIMEZONE
    from dispatcher.schedule import to_zone
    from dispatcher.schedule.cron import parse_cron

    schedule = parse_cron(args.expression)
    zone = to_zone(DEFAULT_TIMEZONE if args.tz is None else args.tz)
    at = args.at or clock.now()
    print_schedule(schedule, zone, at if at.tzinfo else at.replace(tzinfo=zone), args.next)
    return 0


def print_schedule(schedule: Schedule, zone: ZoneInfo, at: datetime, count: int) -> list[datetime]:
    """The schedule in words, its zone, and its next `count` fire times after `at`."""
    from dispatcher.schedule.describe import describe, fire_lines, next_fire_times
    from dispatcher.words import plural

    fires = next_fire_times(schedule, at, zone, count)
    print(f"{schedule.expression}: {describe(schedule)}")
    print(f"time zone: {zone.key} (times below are local, with their UTC offset)")
    print(f"next {plural(count, 'fire time')} after {at.astimezone(zone).isoformat(timespec='minutes')}:")
    for line in fire_lines(fires):
        print(f"  {line}")
    return fires
