"""Every table of the state store, and the one way it stores time.

Tables carry a `dispatcher_` prefix so the store can share a database with other applications.
This module imports nothing else of the store: everything in `dispatcher.store` builds on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from dispatcher.errors import StateError

SCHEMA_VERSION = 3

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Takes and returns aware UTC; what reaches the column is the same UTC wall-clock time either way.

    `timezone=True` keeps the column type stores of schema version 1 created for the userid cache
    (TIMESTAMP WITH TIME ZONE on PostgreSQL), so existing databases need no migration. SQLite and
    MySQL keep no offset in either kind, so naive values read back are taken as UTC.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self, timezone: bool = False) -> None:
        super().__init__(timezone=timezone)
        self.timezone = timezone

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        aware = utc(value)
        return aware if self.timezone else aware.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise StateError(f"the state store needs timezone-aware times, got naive {value.isoformat()}")
    return value.astimezone(UTC)


meta_table = Table(
    "dispatcher_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

userid_cache = Table(
    "dispatcher_userid_cache",
    metadata,
    Column("app_key", String(128), primary_key=True),
    Column("mobile", String(32), primary_key=True),
    Column("userid", String(128), nullable=False),
    Column("resolved_at", UTCDateTime(timezone=True), nullable=False),
)


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
    # Refreshed every few seconds by the daemon holding a `running` row (claimed and queued, or
    # executing): the reaper judges a row by it, so a claim waiting for a worker is not reaped.
    Column("heartbeat_at", UTCDateTime()),  # schema version 3
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

# The last failure alert per report: throttles alerts across every replica.
alerts = Table(
    "dispatcher_alerts",
    metadata,
    Column("report_id", String(200), primary_key=True),
    Column("last_alert_at", UTCDateTime(), nullable=False),
)

api_calls = Table(
    "dispatcher_api_calls",
    metadata,
    Column("month", String(7), primary_key=True),  # "2026-11" in the config's time zone
    Column("endpoint", String(64), primary_key=True),
    Column("calls", Integer, nullable=False),
)

# One row per month whose 80% warning went out: the primary key makes "once" hold across replicas.
quota_warnings = Table(
    "dispatcher_quota_warnings",
    metadata,
    Column("month", String(7), primary_key=True),
    Column("used", Integer, nullable=False),
)

# Alerts (`alert:` in reports.yaml): each alert's current state, shared by replicas. `last_fire_time`
# is the fire time of the last decision: a compare-and-set on it decides each fire time once.
alert_state = Table(
    "dispatcher_alert_state",
    metadata,
    Column("report_id", String(200), primary_key=True),
    Column("state", String(16), nullable=False),  # ok | firing
    Column("since", UTCDateTime()),
    Column("runs", Integer, nullable=False),  # firing runs since `since`
    Column("last_notified", UTCDateTime()),
    Column("last_fire_time", UTCDateTime(), nullable=False),
)

# One decision per (alert, fire time): fired, reminded, suppressed, recovered or cleared.
alert_events = Table(
    "dispatcher_alert_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("report_id", String(200), nullable=False),
    Column("fire_time", UTCDateTime(), nullable=False),
    Column("event", String(16), nullable=False),
    Column("since", UTCDateTime()),
    Column("runs", Integer, nullable=False),
    Column("decided_at", UTCDateTime(), nullable=False),
    UniqueConstraint("report_id", "fire_time", name="uq_dispatcher_alert_events_report_fire"),
)

# The message a run sent, per unit of the run (see the ledger's `batches`): `resend` sends it again
# without a new query. Keyed by the run's row in dispatcher_runs (or dispatcher_manual_runs).
run_messages = Table(
    "dispatcher_run_messages",
    metadata,
    Column("run_id", Integer, primary_key=True),
    Column("manual", Integer, primary_key=True),  # 1: the run is in dispatcher_manual_runs
    Column("unit", String(250), primary_key=True),
    Column("msg", Text, nullable=False),
)

# Group robot messages per webhook (keyed by a hash of its token, never the token): the
# 20-a-minute window that every replica shares. A robot's row in dispatcher_robot_locks is
# updated first in each reservation, which serialises the replicas' count-then-insert.
robot_sends = Table(
    "dispatcher_robot_sends",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("robot_key", String(64), nullable=False),
    Column("sent_at_ms", BigInteger, nullable=False),
    Index("ix_dispatcher_robot_sends_key_at", "robot_key", "sent_at_ms"),
)
robot_locks = Table(
    "dispatcher_robot_locks",
    metadata,
    Column("robot_key", String(64), primary_key=True),
    Column("reservations", BigInteger, nullable=False),
)

# DingTalk's per-app limits (calls per second per API, recipients per minute), shared by every
# replica: one row per reservation, stamped when its request returned (NULL while in flight). A
# key's row in dispatcher_pace_locks is updated first in each reservation, as for the robots.
pace_units = Table(
    "dispatcher_pace_units",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pace_key", String(200), nullable=False),
    Column("units", Integer, nullable=False),
    Column("reserved_at_ms", BigInteger, nullable=False),
    Column("released_at_ms", BigInteger),
    Index("ix_dispatcher_pace_units_key", "pace_key", "released_at_ms"),
)
pace_locks = Table(
    "dispatcher_pace_locks",
    metadata,
    Column("pace_key", String(200), primary_key=True),
    Column("reservations", BigInteger, nullable=False),
)

# Uploaded media per app and content hash: a retry or another batch reuses the media_id instead of
# spending another upload of the monthly quota (rich reports: charts and attachments).
media_cache = Table(
    "dispatcher_media_cache",
    metadata,
    Column("app_key", String(128), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Column("media_id", String(255), nullable=False),
    Column("uploaded_at", UTCDateTime(), nullable=False),
)

# version -> columns it added to tables an older version already had
ADDED_COLUMNS: dict[int, tuple[tuple[str, str, str], ...]] = {
    2: (("dispatcher_runs", "batches", "TEXT"),),
    3: (("dispatcher_runs", "heartbeat_at", "TIMESTAMP"),),
}
