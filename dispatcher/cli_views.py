"""What `list`, `history` and `preview` show of alerts and split_by reports.

Its own module so that `cli` stays a list of commands; it imports nothing of `cli`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from dispatcher.config import Config
    from dispatcher.prepare import Prepared
    from dispatcher.store.ledger import Run


def alert_states(config: Config, at: datetime) -> dict[str, str]:
    """Each alert's state as `list` shows it: `firing since 09:30 (2 runs)`."""
    from dispatcher.alerting import state_text
    from dispatcher.app import open_store
    from dispatcher.store.alert_state import AlertStates

    if not any(r.alert for r in config.reports.values()):
        return {}
    with open_store(config, create=False) as store:
        states = AlertStates(store).all() if store is not None else {}
    return {rid: state_text(state, at) for rid, state in states.items()}


def as_recipient(prepared: Prepared, value: str) -> Prepared:
    """The slice of `value` in place of the whole report: what that recipient would get."""
    from dataclasses import replace

    spec, slicing = prepared.report.split_by, prepared.slicing
    if spec is None or slicing is None:
        if spec is None:
            raise DispatcherError(f"report {prepared.report.id!r} has no split_by; --as needs one")
        return prepared  # no rows: nothing for anybody
    found = slicing.find(value, spec.kind)
    if found is None:
        raise DispatcherError(
            f"no rows with {spec.column} = {value!r} in this run",
            hint="preview --json lists every value (slices)",
        )
    return replace(prepared, rendered=found.rendered, slicing=None)


def alert_events(store: Any, runs: list[Run]) -> dict[tuple[str, datetime], str]:
    """(report, fire time) -> the alert's transition at that fire time (fired, recovered, ...)."""
    from dispatcher.store.alert_state import AlertStates

    ids = {r.report_id for r in runs}
    found = [e for rid in ids for e in AlertStates(store).events(rid, limit=len(runs) + 50)]
    return {(e["report_id"], e["fire_time"]): e["event"] for e in found}
