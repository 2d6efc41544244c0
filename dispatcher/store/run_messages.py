"""The message each run sent, per unit (the whole report, each split_by slice), for `resend`.

Its own table keyed by the run's id, rather than a column of dispatcher_runs: old stores need no
migration, and history never reads these (possibly large) bodies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select

from dispatcher.leaks import refuse, unlabelled
from dispatcher.store.db import StateStore
from dispatcher.store.schema import run_messages


class RunMessages:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def record(
        self,
        run_id: int,
        messages: dict[str, dict[str, Any]],
        *,
        manual: bool = False,
        secrets: Iterable[str] = (),
    ) -> None:
        """unit -> msg for this run; a retry records the same messages again, replacing the old.

        A message holding one of `secrets` is refused (SecretLeakError) and nothing is recorded."""
        refuse(messages, unlabelled(secrets), f"the message of run {run_id}")
        rows = [
            {
                "run_id": run_id,
                "manual": int(manual),
                "unit": unit,
                "msg": json.dumps(msg, ensure_ascii=False),
            }
            for unit, msg in messages.items()
        ]
        mine = (run_messages.c.run_id == run_id) & (run_messages.c.manual == int(manual))
        with self._store.begin() as conn:
            conn.execute(delete(run_messages).where(mine))
            if rows:
                conn.execute(run_messages.insert(), rows)

    def get(self, run_id: int, *, manual: bool = False) -> dict[str, dict[str, Any]]:
        return {unit: json.loads(msg) for unit, msg in self.texts(run_id, manual=manual).items()}

    def texts(self, run_id: int, *, manual: bool = False) -> dict[str, str]:
        """unit -> the stored JSON text, unparsed: a reader that must not trust it parses it itself."""
        query = select(run_messages.c.unit, run_messages.c.msg).where(
            run_messages.c.run_id == run_id, run_messages.c.manual == int(manual)
        )
        with self._store.connect() as conn:
            return {str(unit): str(msg) for unit, msg in conn.execute(query)}
