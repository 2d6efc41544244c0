"""The one place "now" comes from, so tests can replace it and time logic stays pure."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current instant, timezone-aware in UTC."""
    return datetime.now(UTC)
