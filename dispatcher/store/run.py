"""A row of the run ledger as the rest of the program sees it (see store.ledger for the ledger)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import Row, Table

from dispatcher.store.schema import manual_runs, runs

RunState = Literal["running", "sent", "partial", "suppressed", "skipped", "failed", "missed"]
Trigger = Literal["schedule", "manual"]
RUN_STATES: frozenset[str] = frozenset(get_args(RunState))
RETRYABLE_STATES = ("failed", "partial")


@dataclass(frozen=True)
class Run:
    """One row of the ledger; timestamps are aware UTC."""

    id: int
    report_id: str
    fire_time: datetime
    state: RunState
    attempts: int
    started_at: datetime | None
    ended_at: datetime | None
    rows: int | None
    msg_bytes: int | None
    recipients: int | None
    task_ids: list[int]
    receipts: dict[str, int]
    error: str | None
    owner: str | None
    next_retry_at: datetime | None
    batches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    trigger: Trigger = "schedule"
    heartbeat_at: datetime | None = None  # last refresh by the daemon holding a running row

    @property
    def accepted_userids(self) -> set[str]:
        return {str(u) for b in self.batches.get("accepted", []) for u in b.get("userids", [])}

    @property
    def accepted_dept_ids(self) -> set[int]:
        return {int(d) for b in self.batches.get("accepted", []) for d in b.get("dept_ids", [])}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601 strings."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["task_ids"] = list(self.task_ids)
        out["receipts"] = dict(self.receipts)
        out["batches"] = {k: [dict(b) for b in v] for k, v in self.batches.items()}
        return out


def run_from_row(row: Row[Any], table: Table = runs) -> Run:
    values = dict(row._mapping)
    values["task_ids"] = json.loads(values["task_ids"] or "[]")
    values["receipts"] = json.loads(values["receipts"] or "{}")
    values["batches"] = json.loads(values.get("batches") or "{}")
    return Run(**values, trigger="manual" if table is manual_runs else "schedule")
