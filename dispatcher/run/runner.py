"""One claimed run of one report: prepare → deliver → record; how it ends is in `outcomes`.

Preparing the message is `prepare`'s; the run's shared parts (client, ledger, sources) are `Services`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from dispatcher import logs
from dispatcher.config.model import Report
from dispatcher.errors import DeliveryError, DispatcherError, QuotaExhaustedError, StateError
from dispatcher.run.outcomes import alert, fail, partial, quota_exhausted
from dispatcher.run.prepare import Prepared, prepare, rerender
from dispatcher.run.services import Services

if TYPE_CHECKING:
    from dispatcher.dingtalk.client import DingTalkClient
    from dispatcher.render import Rendered
    from dispatcher.run.delivery import Outcome
    from dispatcher.store.ledger import Run


def execute(svc: Services, report: Report, run: Run, still_mine: Callable[[], bool] | None = None) -> str:
    """Query, render, deliver and record one claimed run.

    Failures become ledger rows; only a StateError (the ledger itself is gone) propagates.
    `still_mine` is asked before anything is sent or recorded: a run the daemon abandoned after
    its run_timeout has been failed (and maybe retried) already, so its late result is dropped.
    """
    started = time.monotonic()
    fire = run.fire_time.astimezone(svc.config.report_zone(report))
    try:
        with svc.slot(report.source):
            prepared = prepare(svc.config, svc.sources, report, fire)
        if report.alert is not None and _mine(still_mine, report, fire):
            prepared = _alert_gate(svc, prepared)
        state = _deliver(svc, report, run, prepared) if _mine(still_mine, report, fire) else "abandoned"
    except StateError:
        # The outcome could not be recorded: the row stays `running` and is reaped after
        # run_timeout, then retried with identical content (DingTalk collapses a duplicate).
        raise
    except Exception as exc:  # a bug in one run must not kill the daemon (APScheduler's run_job rule)
        state = _failed_run(svc, report, run, exc, still_mine)
    if state != "abandoned":
        svc.metrics.run_finished(report.id, state, time.monotonic() - started)
    return state


def _alert_gate(svc: Services, prepared: Prepared) -> Prepared:
    from dataclasses import replace

    from dispatcher.run.alerting import gate
    from dispatcher.store.alert_state import AlertStates

    verdict = gate(AlertStates(svc.ledger.store), prepared.report, prepared.fire_time, prepared.result.rows)
    if verdict.keep:
        return replace(prepared, note=verdict.note, alert=verdict.event)
    action: Literal["send", "skip"] = "send" if verdict.rendered is not None else "skip"
    return replace(prepared, rendered=verdict.rendered, action=action, note=verdict.note, alert=verdict.event)


def _failed_run(
    svc: Services, report: Report, run: Run, exc: Exception, still_mine: Callable[[], bool] | None
) -> str:
    fire = run.fire_time.astimezone(svc.config.report_zone(report))
    if isinstance(exc, DispatcherError):
        error = str(exc)
    else:
        logs.log.exception("run.crashed", extra={"report": report.id, "fire_time": fire})
        error = f"internal error: {type(exc).__name__}: {exc}"
    if not _mine(still_mine, report, fire):
        return "abandoned"
    if isinstance(exc, QuotaExhaustedError):
        return quota_exhausted(svc, report, run, error)
    return fail(svc, report, run, error)


def _mine(still_mine: Callable[[], bool] | None, report: Report, fire: datetime) -> bool:
    if still_mine is None or still_mine():
        return True
    logs.event("run.late_result", logging.WARNING, report=report.id, fire_time=fire,
               reason="the run was abandoned after run_timeout; its result is dropped")  # fmt: skip
    return False


def _deliver(svc: Services, report: Report, run: Run, prepared: Prepared) -> str:
    fire = prepared.fire_time
    if prepared.rendered is None:
        svc.ledger.finish(run.id, "skipped", rows=prepared.result.rows, error=prepared.note)
        logs.event("run.skipped", report=report.id, fire_time=fire, rows=prepared.result.rows,
                   alert=prepared.alert, reason=prepared.note or "no rows, on_empty skip",
                   invalid_text=prepared.result.invalid_text or None)  # fmt: skip
        return "skipped"
    rendered = prepared.rendered
    # Waiting for receipts holds this run: never longer than a quarter of the schedule's period.
    wait = min(svc.config.dingtalk.receipt_wait, report.parsed_schedule().min_period_seconds / 4)
    outcome: Outcome | None = None
    counts: dict[str, int] = {}
    if prepared.slicing is not None:
        outcome = _deliver_split(svc, report, run, prepared, wait)
        counts = outcome.counts
    elif report.to:
        outcome, counts = _to_people(svc, report, run, prepared, wait)
    outcome = _to_robots(svc, report, run, prepared, outcome) if report.robots else outcome
    assert outcome is not None  # validate requires to, split_by or robots
    outcome = _with_data_notes(outcome, prepared)
    svc.metrics.receipts(report.id, counts)
    if outcome.state == "partial":
        return partial(svc, report, run, outcome, rows=prepared.result.rows, msg_bytes=rendered.msg_bytes)
    svc.ledger.finish(
        run.id, outcome.state, rows=prepared.result.rows, msg_bytes=rendered.msg_bytes,
        recipients=outcome.recipients, task_ids=outcome.task_ids, receipts=counts,
        error="; ".join(outcome.notes) or None, batches=outcome.batches,
    )  # fmt: skip
    level = logging.WARNING if outcome.state == "suppressed" else logging.INFO
    # A delivered recovery says so: an operator reading `run.sent` would take it for the alert itself.
    recovered = outcome.state == "sent" and prepared.alert == "recovered"
    logs.event(
        "run.recovered" if recovered else f"run.{outcome.state}", level, report=report.id, fire_time=fire,
        alert=prepared.alert, rows=prepared.result.rows,
        bytes=rendered.msg_bytes, recipients=outcome.recipients, tasks=len(outcome.task_ids),
        attempt=run.attempts, reason=outcome.reason, invalid_text=prepared.result.invalid_text or None,
        **{k: v for k, v in counts.items() if v},
    )  # fmt: skip
    return outcome.state


def _with_data_notes(outcome: Outcome, prepared: Prepared) -> Outcome:
    """What the data needed to be shown, in the run's record (history's error column) first."""
    invalid = prepared.result.invalid_text
    if not invalid:
        return outcome
    note = f"{invalid} value{'s' if invalid != 1 else ''} with invalid UTF-8 shown as \ufffd"
    reason = f"{outcome.reason}; {note}" if outcome.reason else None
    return replace(outcome, notes=(note, *outcome.notes), reason=reason)


def _to_people(
    svc: Services, report: Report, run: Run, prepared: Prepared, wait: float
) -> tuple[Outcome, dict[str, int]]:
    """The work notification (and its rich parts) to `to`; the outcome and the receipt counts."""
    from dispatcher.run.delivery import deliver, outcome_of, recipients_for

    assert prepared.rendered is not None
    msg = prepared.rendered.msg
    recipients = recipients_for(svc.config, report.to)
    _record_messages(svc, run, {"": msg})
    try:
        if prepared.rich is None:
            result = deliver(svc.client, msg, recipients, report.receipts, wait, skip=run)
            outcome = outcome_of(run, result)
        else:
            result, outcome = _deliver_rich(svc.client, prepared, recipients, report.receipts, wait, run)
    except DeliveryError as exc:
        if not report.robots or isinstance(exc, QuotaExhaustedError):
            raise
        # The groups still get theirs; the retry resends the work notification alone.
        return _refused_outright(run, exc, len(recipients)), {}
    svc.metrics.delivered(report.id, result.recipients, len(result.task_ids))
    return outcome, result.counts()


def _refused_outright(run: Run, exc: DeliveryError, recipients: int) -> Outcome:
    """The work notification failed before any batch was accepted, as one refused entry of the run."""
    from dispatcher.run.delivery import outcome_of

    refused: dict[str, Any] = {
        "errcode": exc.errcode,
        "message": str(exc),
        "recipients": recipients,
        "dept_ids": [],
    }
    outcome = outcome_of(run, None, error=str(exc))
    return replace(outcome, batches={**outcome.batches, "refused": [refused]}, refused=recipients)


def _record_messages(svc: Services, run: Run, messages: dict[str, dict[str, Any]]) -> None:
    """What this run sends, kept for `resend` (which makes no new query)."""
    from dispatcher.config.secrets import credentials
    from dispatcher.store.run_messages import RunMessages

    secrets = [*svc.client.secrets.values(), *(value for _, value in credentials(svc.config))]
    RunMessages(svc.ledger.store).record(run.id, messages, secrets=secrets)


def _deliver_split(svc: Services, report: Report, run: Run, prepared: Prepared, wait: float) -> Outcome:
    """split_by: each slice to its own recipient; rows nobody can get are reported to the admins."""
    from dispatcher.run.split_delivery import Parts, deliver_split

    assert prepared.slicing is not None and prepared.rendered is not None
    parts = Parts(report, prepared.rendered.msg, prepared.slicing)
    prior = list(run.batches.get("accepted", []))
    outcome = deliver_split(
        svc.client, svc.config, prior, parts, wait, lambda m: _record_messages(svc, run, m)
    )
    svc.metrics.delivered(report.id, outcome.recipients, len(outcome.task_ids))
    if outcome.notes:
        alert(svc, report, prepared.fire_time, "; ".join(outcome.notes), heading="报表部分行无人接收")
    return outcome


def _to_robots(
    svc: Services, report: Report, run: Run, prepared: Prepared, outcome: Outcome | None
) -> Outcome:
    """The group robots not yet reached by an earlier attempt of this run."""
    from dispatcher.run.robots import done_units, merge, send_robots

    if svc.robots is None:
        raise DeliveryError(f"report {report.id!r} goes to robots, but none is set up")

    def again(budget: int) -> Rendered:
        return rerender(svc.config, prepared, budget)

    done = done_units(run)
    accepted, refused = send_robots(svc.robots, svc.config, prepared, report.robots, again, done=done)
    return merge(outcome, run, accepted, refused)


def _deliver_rich(
    client: DingTalkClient, prepared: Prepared, recipients: Any, receipts: str | None, wait: float, run: Run
) -> tuple[Any, Outcome]:
    """Text or card, image, file: each a unit of the ledger, uploads reused from the media cache."""
    from dispatcher.run.parts import build_parts, deliver_parts, failed_parts, scope_of

    assert prepared.rendered is not None
    parts = build_parts(prepared.rendered.msg, prepared.rich, client.media_id, scope_of(prepared.fire_time))
    failed = failed_parts(prepared.rich)
    result, outcome = deliver_parts(client, parts, recipients, receipts, wait, run=run, failed=failed)
    notes = prepared.rich.warnings if prepared.rich else ()
    return result, replace(outcome, notes=(*outcome.notes, *notes))
