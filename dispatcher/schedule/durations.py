"""Durations as users write them: 30s, 15m, 2h, 1d, 1h30m, or a plain number of seconds."""

from __future__ import annotations

import math
import re

from dispatcher.errors import ScheduleError

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_NUMBER = r"\d+(?:\.\d+)?"
# Units largest first, each at most once, so "30m1h" or "1h1h" are refused rather than guessed.
_DURATION = re.compile("".join(rf"(?:({_NUMBER})\s*{unit}\s*)?" for unit in _UNITS), re.I | re.A)
_PLAIN = re.compile(_NUMBER, re.ASCII)


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`: a number of seconds or a string such as "90s", "15m", "1h30m", "10"."""
    seconds = _seconds(value)
    if not seconds > 0:
        raise ScheduleError(f"duration {_show(value)} must be greater than zero")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest text for a whole number of seconds: 90 -> "1m30s", 7200 -> "2h"."""
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _seconds(value: object) -> float:
    if isinstance(value, bool):  # YAML `yes` is not a duration, though bool subclasses int
        raise _not_a_duration(value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _not_a_duration(value)
        return float(value)
    if not isinstance(value, str):
        raise _not_a_duration(value)
    text = value.strip()
    if _PLAIN.fullmatch(text):
        return float(text)
    match = _DURATION.fullmatch(text)
    if not text or match is None or not any(match.groups()):
        raise _not_a_duration(value)
    parts = zip(match.groups(), _UNITS.values(), strict=True)
    return sum(float(count) * size for count, size in parts if count)


def _not_a_duration(value: object) -> ScheduleError:
    return ScheduleError(f"{_show(value)} is not a duration; use e.g. 30s, 15m, 2h or 1d")


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else f"'{value}'"
