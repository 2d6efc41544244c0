"""One run of one report: fire time → dates → query → render → deliver → record.

Everything here is a function of the report and its *scheduled* fire time, never of the wall
clock, so a run caught up late or re-run next week queries the same dates as the on-time run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dispatcher import clock, logs
from dispatcher.config import Config, Report
from dispatcher.errors import (
    DeliveryError,
    DispatcherError,
    QueryError,
    QuotaExhaustedError,
    RenderError,
    ScheduleError,
    StateError,
)
from dispatcher.params import default_period, render_params, render_value
from dispatcher.query import QueryResult, Sources, SourceSpec, run_query
from dispatcher.schedule import date_macros, to_zone
from dispatcher.store.db import resolve_sqlite_url

if TYPE_CHECKING:
    from dispatcher.delivery import Outcome
    from dispatcher.dingtalk.client import DingTalkClient
    from dispatcher.health import Metrics
    from dispatcher.render import Rendered
    from dispatcher.rich import RichParts
    from dispatcher.robot.deliver import RobotSender
    from dispatcher.split import Slicing
    from dispatcher.store.ledger import Ledger, Run


@dataclass(frozen=True)
class Prepared:
    """A report's message for one fire time, ready to deliver (or a decision not to)."""

    report: Report
    fire_time: datetime
    params: dict[str, Any]
    result: QueryResult
    rendered: Rendered | None
    action: Literal["send", "skip"]
    note: str | None = None  # why an alert sends or skips (see alerting)
    slicing: Slicing | None = None  # split_by: one message per recipient (see split)
    rich: RichParts | None = None  # the chart and attachment, for reports that have them


def build_sources(config: Config) -> Sources:
    specs = {
        name: SourceSpec(name, resolve_sqlite_url(url, config.base_dir))
        for name, url in config.sources.items()
    }
    return Sources(specs, on_missing_sqlite=lambda path: _make_demo(path, config))


def _make_demo(path: Path, config: Config) -> bool:
    """The shipped demo database is generated on first use; any other missing file is an error."""
    from dispatcher.demo import DEMO_FILENAME, ensure_demo_sqlite

    if path.name != DEMO_FILENAME:
        return False
    ensure_demo_sqlite(path, now_in(config).date())
    return path.exists()


def fire_time_at(config: Config, report: Report, at: datetime) -> datetime:
    """The report's last scheduled fire time at or before `at`, in the report's timezone."""
    tz = config.report_zone(report)
    fire = report.parsed_schedule().previous_fire_time(at, tz)
    if fire is None:
        raise ScheduleError(f"report {report.id!r} has no fire time at or before {at.isoformat()}")
    return fire


def next_fire_time(config: Config, report: Report, after: datetime) -> datetime:
    tz = config.report_zone(report)
    return report.parsed_schedule().next_fire_time(after, tz)


def prepare(config: Config, sources: Sources, report: Report, fire_time: datetime) -> Prepared:
    """Query and render the report as the run scheduled at `fire_time` would."""
    tz = config.report_zone(report)
    macros = date_macros(fire_time, tz)
    params = render_params(report.params, macros, report.id, config.path.name)
    result = run_query(
        sources,
        report.source,
        config.query_text(report),
        params,
        max_rows=report.max_rows,
        max_bytes=report.max_bytes,
        timeout=report.query_timeout,
        report=report.id,
    )
    if result.rows == 0 and report.on_empty != "send":
        if report.on_empty == "error":
            raise QueryError("the query returned no rows and on_empty is 'error'", report=report.id)
        return Prepared(report, fire_time, params, result, None, "skip")
    if report.split_by is not None:
        return _split(config, report, fire_time, macros, params, result)
    from dispatcher.rich import prepare_rich, with_notes

    rich = prepare_rich(config, sources, report, fire_time, macros, result)
    rendered = _render(config, report, fire_time, macros, params, result)
    if rich is not None:
        rendered = with_notes(rendered, rich.warnings, config.dingtalk.max_msg_bytes)
    return Prepared(report, fire_time, params, result, rendered, "send", rich=rich)


def _split(
    config: Config,
    report: Report,
    fire_time: datetime,
    macros: dict[str, str],
    params: dict[str, Any],
    result: QueryResult,
) -> Prepared:
    """split_by: the slices, and the whole report when `to` gets it (else the largest slice stands
    for the run's message, as its size is the one that matters)."""
    slicing = _slices(config, report, fire_time, macros, params, result)
    if report.to:
        rendered: Rendered | None = _render(config, report, fire_time, macros, params, result)
    else:
        rendered = max((s.rendered for s in slicing.slices), key=lambda r: r.msg_bytes, default=None)
    note = None if rendered is not None else f"no row has a recipient ({slicing.empty_rows} rows without one)"
    action: Literal["send", "skip"] = "send" if rendered is not None else "skip"
    return Prepared(report, fire_time, params, result, rendered, action, note, slicing)


def _slices(
    config: Config,
    report: Report,
    fire_time: datetime,
    macros: dict[str, str],
    params: dict[str, Any],
    result: QueryResult,
) -> Slicing:
    from dataclasses import replace

    from dispatcher.split import build

    assert report.split_by is not None

    def one(frame: Any, key: str) -> Rendered:
        return _render(
            config, report, fire_time, {**macros, "split_value": key}, params, replace(result, frame=frame)
        )

    return build(result.frame, report.split_by, report.id, one)


def _render(
    config: Config,
    report: Report,
    fire_time: datetime,
    macros: dict[str, str],
    params: dict[str, Any],
    result: QueryResult,
    max_msg_bytes: int | None = None,
) -> Rendered:
    from dispatcher.render import RenderOptions, render

    period = render_value(report.period, macros, f"reports.{report.id}.period", config.path.name)
    options = RenderOptions(
        title=report.title,
        fire_time=fire_time,
        footer_seconds=report.parsed_schedule().min_period_seconds < 60,
        period=period if report.period is not None else default_period(params),
        template=report.template,
        formats=report.formats,
        labels=report.labels,
        msgtype=report.msgtype,
        action_url=(report.oa.url if report.oa else None) or report.action_url,
        oa=report.oa,
        action_title=report.action_title,
        max_msg_bytes=max_msg_bytes or config.dingtalk.max_msg_bytes,
        query_truncated=result.truncated,
        macros={**macros, **{k: v for k, v in params.items() if isinstance(v, str)}},
    )
    try:
        return render(result.frame, options)
    except RenderError as exc:
        raise RenderError(f"report {report.id!r}: {exc.message}", hint=exc.hint) from None


def rerender(config: Config, prepared: Prepared, max_msg_bytes: int) -> Rendered:
    """The same run's message with another byte budget (a group robot's larger one)."""
    report, fire = prepared.report, prepared.fire_time
    macros = date_macros(fire, config.report_zone(report))
    return _render(config, report, fire, macros, prepared.params, prepared.result, max_msg_bytes)


def now_in(config: Config) -> datetime:
    return clock.now().astimezone(to_zone(config.timezone))


# -- executing a claimed run (the daemon) --


@dataclass
class Services:
    """What a run needs besides its report: shared by every run of one daemon."""

    config: Config
    sources: Sources
    client: DingTalkClient
    ledger: Ledger
    metrics: Metrics
    owner: str
    robots: RobotSender | None = None  # the group robots, when the config has any
    source_slots: dict[str, threading.BoundedSemaphore] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def slot(self, source: str) -> threading.BoundedSemaphore:
        """A slow source holds up only its own reports: each source has a concurrency limit."""
        with self._lock:
            if source not in self.source_slots:
                limit = self.config.daemon.source_concurrency
                self.source_slots[source] = threading.BoundedSemaphore(limit)
            return self.source_slots[source]


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

    from dispatcher.alerting import gate
    from dispatcher.store.alert_state import AlertStates

    verdict = gate(AlertStates(svc.ledger.store), prepared.report, prepared.fire_time, prepared.result.rows)
    if verdict.keep:
        return replace(prepared, note=verdict.note)
    action: Literal["send", "skip"] = "send" if verdict.rendered is not None else "skip"
    return replace(prepared, rendered=verdict.rendered, action=action, note=verdict.note)


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
        return _quota_exhausted(svc, report, run, error)
    return _fail(svc, report, run, error)


def _quota_refused(outcome: Outcome) -> bool:
    """Some batch met 90020: the rest cannot go out before next month."""
    from dispatcher.dingtalk.errors import QUOTA_EXHAUSTED

    return any(r.get("errcode") == QUOTA_EXHAUSTED for r in outcome.batches.get("refused", []))


def _mine(still_mine: Callable[[], bool] | None, report: Report, fire: datetime) -> bool:
    if still_mine is None or still_mine():
        return True
    logs.event("run.late_result", logging.WARNING, report=report.id, fire_time=fire,
               reason="the run was abandoned after run_timeout; its result is dropped")  # fmt: skip
    return False


def _deliver(svc: Services, report: Report, run: Run, prepared: Prepared) -> str:
    from dispatcher.delivery import deliver, outcome_of, recipients_for

    fire = prepared.fire_time
    if prepared.rendered is None:
        svc.ledger.finish(run.id, "skipped", rows=prepared.result.rows, error=prepared.note)
        logs.event("run.skipped", report=report.id, fire_time=fire, rows=prepared.result.rows,
                   reason=prepared.note or "no rows, on_empty skip")  # fmt: skip
        return "skipped"
    rendered = prepared.rendered
    recipients = recipients_for(svc.config, report.to)
    # Waiting for receipts holds this run: never longer than a quarter of the schedule's period.
    wait = min(svc.config.dingtalk.receipt_wait, report.parsed_schedule().min_period_seconds / 4)
    outcome: Outcome | None = None
    counts: dict[str, int] = {}
    if prepared.slicing is not None:
        outcome = _deliver_split(svc, report, run, prepared, wait)
        counts = outcome.counts
    elif report.to:
        _record_messages(svc, run, {"": rendered.msg})
        try:
            if prepared.rich is None:
                result = deliver(svc.client, rendered.msg, recipients, report.receipts, wait, skip=run)
                outcome = outcome_of(run, result)
            else:
                result, outcome = _deliver_rich(svc.client, prepared, recipients, report.receipts, wait, run)
        except DeliveryError as exc:
            if not report.robots or isinstance(exc, QuotaExhaustedError):
                raise
            # The groups still get theirs; the retry resends the work notification alone.
            outcome = _refused_outright(run, exc, len(recipients))
        else:
            counts = result.counts()
            svc.metrics.delivered(report.id, result.recipients, len(result.task_ids))
    outcome = _to_robots(svc, report, run, prepared, outcome) if report.robots else outcome
    assert outcome is not None  # validate requires to, split_by or robots
    if outcome.state == "partial":
        return _partial(svc, report, run, outcome, rows=prepared.result.rows, msg_bytes=rendered.msg_bytes)
    svc.ledger.finish(
        run.id, outcome.state, rows=prepared.result.rows, msg_bytes=rendered.msg_bytes,
        recipients=outcome.recipients, task_ids=outcome.task_ids, receipts=counts,
        error="; ".join(outcome.notes) or None, batches=outcome.batches,
    )  # fmt: skip
    level = logging.WARNING if outcome.state == "suppressed" else logging.INFO
    logs.event(
        f"run.{outcome.state}", level, report=report.id, fire_time=fire, rows=prepared.result.rows,
        bytes=rendered.msg_bytes, recipients=outcome.recipients, tasks=len(outcome.task_ids),
        attempt=run.attempts, reason=outcome.reason, **{k: v for k, v in counts.items() if v},
    )  # fmt: skip
    return outcome.state


def _refused_outright(run: Run, exc: DeliveryError, recipients: int) -> Outcome:
    """The work notification failed before any batch was accepted, as one refused entry of the run."""
    from dispatcher.delivery import outcome_of

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
    from dispatcher.store.run_messages import RunMessages

    RunMessages(svc.ledger.store).record(run.id, messages)


def _deliver_split(svc: Services, report: Report, run: Run, prepared: Prepared, wait: float) -> Outcome:
    """split_by: each slice to its own recipient; rows nobody can get are reported to the admins."""
    from dispatcher.split_delivery import Parts, deliver_split

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
    from dispatcher.robot.deliver import done_units, merge, send_robots

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
    from dispatcher.parts import build_parts, deliver_parts

    assert prepared.rendered is not None
    parts = build_parts(prepared.rendered.msg, prepared.rich, client.media_id)
    result, outcome = deliver_parts(client, parts, recipients, receipts, wait, run=run)
    notes = prepared.rich.warnings if prepared.rich else ()
    return result, replace(outcome, notes=(*outcome.notes, *notes))


def _partial(
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


def _fail(svc: Services, report: Report, run: Run, error: str) -> str:
    from dispatcher.delivery import outcome_of

    fire = run.fire_time.astimezone(svc.config.report_zone(report))
    if _reached_some(run):
        # An earlier attempt reached some people: the run stays partial, whatever this attempt did.
        outcome = outcome_of(run, None, error=error)
        return _partial(svc, report, run, outcome, rows=run.rows, msg_bytes=run.msg_bytes)
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


def _quota_exhausted(svc: Services, report: Report, run: Run, error: str) -> str:
    """90020: retrying cannot help before next month, and every retry would spend a call."""
    if _reached_some(run):
        # A retry of a partial run: who was reached stays on record, and no retry follows.
        from dispatcher.delivery import outcome_of

        outcome = outcome_of(run, None, error=error)
        return _partial(svc, report, run, outcome, rows=run.rows, msg_bytes=run.msg_bytes, quota=True)
    svc.ledger.finish(run.id, "failed", error=error)
    _quota_alert(svc, report, run, error)
    return "failed"


def _reached_some(run: Run) -> bool:
    return bool(run.accepted_userids or run.accepted_dept_ids)


def _quota_alert(svc: Services, report: Report, run: Run, error: str) -> None:
    from dispatcher.quota import exhausted_alert

    fire = run.fire_time.astimezone(svc.config.report_zone(report))
    logs.event("run.gave_up", logging.ERROR, report=report.id, fire_time=fire, attempts=run.attempts,
               error=error, reason="monthly API quota used up")  # fmt: skip
    month = now_in(svc.config).strftime("%Y-%m")
    allowed = svc.ledger.alert_allowed(f"quota-exhausted:{month}", every=timedelta(days=62))
    exhausted_alert(svc.client, svc.config, allowed, error)


def give_up(svc: Services, report: Report, run: Run) -> None:
    """A run that cannot be retried any more (e.g. reaped after its process died)."""
    _fail(svc, report, run, run.error or "failed")


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
    from dispatcher.config import ALERT_GROUP
    from dispatcher.delivery import deliver, recipients_for
    from dispatcher.dingtalk.message import markdown_msg

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
