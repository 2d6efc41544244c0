"""How a run ends when it does not simply succeed: partial, failed, retried, given up, quota used up;
and the admins' alert that a run failed or reached only some of its recipients."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dispatcher import clock, logs
from dispatcher.config.model import Report
from dispatcher.errors import DispatcherError
from dispatcher.run.prepare import now_in

if TYPE_CHECKING:
    from dispatcher.run.delivery import Outcome
    from dispatcher.run.services import Services
    from dispatcher.store.ledger import Run


def _quota_refused(outcome: Outcome) -> bool:
    """Some batch met 90020: the rest cannot go out before next month."""
    from dispatcher.dingtalk.errors import QUOTA_EXHAUSTED

    return any(r.get("errcode") == QUOTA_EXHAUSTED for r in outcome.batches.get("refused", []))


def partial(
    svc: Services,
    report: Report,
    run: Run,
    outcome: Outcome,
    *,
    rows: int | None,
    msg_bytes: int | None,
    quota: bool = False,
) -> str:
    """Some batches went out and some did not: record both; a retry sends only to the rest.

    `quota`: the rest met 90020, so no retry follows (each would be refused and spend a call).
    """
    fire = run.fire_time.astimezone(svc.config.report_zone(report))
    quota = quota or _quota_refused(outcome)
    retry_at = None if quota else _retry_at(report, run)
    svc.ledger.finish(
        run.id, "partial", rows=rows, msg_bytes=msg_bytes, recipients=outcome.recipients,
        task_ids=outcome.task_ids, receipts=outcome.counts, error=outcome.reason, next_retry_at=retry_at,
        batches=outcome.batches,
    )  # fmt: skip
    logs.event(
        "run.partial", logging.WARNING, report=report.id, fire_time=fire, recipients=outcome.recipients,
        refused=outcome.refused, tasks=len(outcome.task_ids), attempt=run.attempts, retry_at=retry_at,
        error=outcome.reason,
    )  # fmt: skip
    if quota:
        _quota_alert(svc, report, run, outcome.reason or "monthly API quota used up")
    elif retry_at is None:
        logs.event("run.gave_up", logging.ERROR, report=report.id, fire_time=fire, attempts=run.attempts,
                   error=outcome.reason)  # fmt: skip
        alert(svc, report, fire, outcome.reason or "partial delivery", partial=outcome)
    return "partial"


def _retry_at(report: Report, run: Run) -> datetime | None:
    if run.attempts > report.retries:
        return None
    return clock.now() + timedelta(seconds=report.retry_delay * 2 ** (run.attempts - 1))


def fail(svc: Services, report: Report, run: Run, error: str) -> str:
    from dispatcher.run.delivery import outcome_of

    fire = run.fire_time.astimezone(svc.config.report_zone(report))
    if _reached_some(run):
        # An earlier attempt reached some people: the run stays partial, whatever this attempt did.
        outcome = outcome_of(run, None, error=error)
        return partial(svc, report, run, outcome, rows=run.rows, msg_bytes=run.msg_bytes)
    retry_at = _retry_at(report, run)
    if retry_at is not None:
        svc.ledger.finish(run.id, "failed", error=error, next_retry_at=retry_at)
        logs.event("run.failed", logging.WARNING, report=report.id, fire_time=fire, attempt=run.attempts,
                   retry_at=retry_at, error=error)  # fmt: skip
        return "failed"
    svc.ledger.finish(run.id, "failed", error=error)
    logs.event(
        "run.gave_up", logging.ERROR, report=report.id, fire_time=fire, attempts=run.attempts, error=error
    )
    alert(svc, report, fire, error)
    return "failed"


def quota_exhausted(svc: Services, report: Report, run: Run, error: str) -> str:
    """90020: retrying cannot help before next month, and every retry would spend a call."""
    if _reached_some(run):
        # A retry of a partial run: who was reached stays on record, and no retry follows.
        from dispatcher.run.delivery import outcome_of

        outcome = outcome_of(run, None, error=error)
        return partial(svc, report, run, outcome, rows=run.rows, msg_bytes=run.msg_bytes, quota=True)
    svc.ledger.finish(run.id, "failed", error=error)
    _quota_alert(svc, report, run, error)
    return "failed"


def _reached_some(run: Run) -> bool:
    """Any unit of the run was accepted: people, a split slice or a group robot."""
    return bool(run.batches.get("accepted"))


def _quota_alert(svc: Services, report: Report, run: Run, error: str) -> None:
    from dispatcher.run.quota_alerts import exhausted_alert

    fire = run.fire_time.astimezone(svc.config.report_zone(report))
    logs.event("run.gave_up", logging.ERROR, report=report.id, fire_time=fire, attempts=run.attempts,
               error=error, reason="monthly API quota used up")  # fmt: skip
    month = now_in(svc.config).strftime("%Y-%m")
    allowed = svc.ledger.alert_allowed(f"quota-exhausted:{month}", every=timedelta(days=62))
    exhausted_alert(svc.client, svc.config, allowed, error)


def give_up(svc: Services, report: Report, run: Run) -> None:
    """A run that cannot be retried any more (e.g. reaped after its process died)."""
    fail(svc, report, run, run.error or "failed")


def alert(
    svc: Services,
    report: Report,
    fire: datetime,
    error: str,
    *,
    partial: Outcome | None = None,
    heading: str | None = None,
) -> None:
    """A short work notification to `admins`, at most once per report per alert_interval."""
    from dispatcher.config.model import ALERT_GROUP
    from dispatcher.dingtalk.message import markdown_msg
    from dispatcher.run.delivery import deliver, recipients_for

    if ALERT_GROUP not in svc.config.recipients:
        logs.event("alert.skipped", logging.WARNING, report=report.id, reason="no 'admins' recipient group")
        return
    every = timedelta(seconds=svc.config.daemon.alert_interval)
    if not svc.ledger.alert_allowed(report.id, every=every):
        logs.event("alert.suppressed", report=report.id, fire_time=fire, reason="one alert per interval")
        return
    heading = heading or ("报表部分送达" if partial is not None else "报表运行失败")
    msg = markdown_msg(f"{heading}：{report.title}", _alert_text(report, fire, error, partial, heading))
    try:
        deliver(svc.client, msg, recipients_for(svc.config, [ALERT_GROUP]), receipts="off")
    except DispatcherError as exc:
        logs.event("alert.failed", logging.ERROR, report=report.id, error=str(exc))
        return
    svc.metrics.alert_sent(report.id)
    logs.event("alert.sent", report=report.id, fire_time=fire)


def _alert_text(
    report: Report, fire: datetime, error: str, partial: Outcome | None = None, heading: str | None = None
) -> str:
    from dispatcher.render.format import md

    now = clock.now().astimezone(fire.tzinfo).strftime("%Y-%m-%d %H:%M:%S")
    heading = heading or ("报表部分送达" if partial is not None else "报表运行失败")
    reach = (
        f"- **送达** {partial.recipients} 人已送达，{partial.refused} 人未送达\n"
        if partial is not None
        else ""
    )
    return (
        f"### {heading}\n\n- **报表** {md(report.id)}（{md(report.title)}）\n"
        f"- **计划时间** {fire.strftime('%Y-%m-%d %H:%M:%S %Z')}\n{reach}- **错误** {md(error[:300])}\n\n"
        f"告警时间 {now}"
    )
