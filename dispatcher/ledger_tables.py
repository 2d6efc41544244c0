"""The ledger's tables: scheduled runs (one row per report and fire time), manual sends, alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Dialect, Index, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.types import TypeDecorator

from dispatcher.errors import StateError
from dispatcher.state import metadata


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite would otherwise keep whatever offset it got."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else utc(value).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _run_columns() -> list[Column[Any]]:
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("report_id", String(200), nullable=False),
        Column("fire_time", UTCDateTime(), nullable=False),
        Column("state", String(16), nullable=False),
        Column("attempts", Integer, nullable=False, default=0),
        Column("started_at", UTCDateTime()),
        Column("ended_at", UTCDateTime()),
        Column("rows", Integer),
        Column("msg_bytes", Integer),
        Column("recipients", Integer),
        Column("task_ids", Text),
        Column("receipts", Text),
        Column("error", Text),
        Column("owner", String(200)),
        Column("next_retry_at", UTCDateTime()),
        # JSON {"accepted": [{task_id, userids, dept_ids, recipients}], "refused": [{errcode, message,
        # recipients, dept_ids}]}: a retry skips whoever an accepted batch already reached.
        Column("batches", Text),  # schema version 2
    ]


runs = Table(
    "dispatcher_runs",
    metadata,
    *_run_columns(),
    UniqueConstraint("report_id", "fire_time", name="uq_dispatcher_runs_report_fire"),
    Index("ix_dispatcher_runs_state_retry", "state", "next_retry_at"),
    Index("ix_dispatcher_runs_fire_time", "fire_time"),
)

# `dispatcher send` runs: no unique fire time, so a manual send never takes the daemon's claim,
# and catch-up, retries and pruning, which read only `runs`, never mistake one for a scheduled run.
manual_runs = Table(
    "dispatcher_manual_runs",
    metadata,
    *_run_columns(),
    Index("ix_dispatcher_manual_runs_report_fire", "report_id", "fire_time"),
)
RETRYABLE_STATES = ("failed", "partial")

alerts = Table(
    "dispatcher_alerts",
    metadata,
    Column("report_id", String(200), primary_key=True),
    Column("last_alert_at", UTCDateTime(), nullable=False),
)


def utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise StateError(f"the ledger needs timezone-aware times, got naive {value.isoformat()}")
    return value.astimezone(UTC)
