"""The monthly API budget as reports see it: this month's forecast (the alerts are run/quota_alerts.py).

A run costs ceil(userids / 100) asyncsend_v2 batches (departments: ceil(dept_ids / 20)) per
message (a chart and an attachment are messages of their own, and one media/upload each), plus its
receipt calls: none with `receipts: off`, one getsendresult per batch without departments with
`result`, at most 3 per batch with `full` (dingtalk/receipts.py). Fire times come from the same
pure schedule functions the daemon uses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from dispatcher import clock
from dispatcher.config.model import Config, Report

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dispatcher.store.apicalls import ApiCounter
    from dispatcher.store.db import StateStore
    from dispatcher.store.ledger import Run

RECEIPT_CALLS = {"off": 0, "result": 1, "full": 3}  # per send batch
MAX_FIRE_TIMES = 100_000  # `every: 1s` fires 2.6 million times a month: the forecast says "at least"
ALERT_HISTORY = timedelta(days=30)  # the recent decisions an alert's forecast reads
MIN_ALERT_HISTORY = timedelta(days=1)  # less says too little about a month: the estimate stands
ALERT_SENDS = ("fired", "reminded", "late")  # decisions that send the report (store.alert_state.SENDS)


@dataclass(frozen=True)
class ReportCost:
    """A report's calls left this month. For an alert, `runs_left` counts the runs that send."""

    id: str
    runs_left: int
    calls_per_run: int
    calls: int
    basis: str = "schedule"  # every fire time sends; alerts: "history" or "estimate"
    note: str = ""
    worst_case: int | None = None  # an alert's calls if every check sent


class AlertHistory(Protocol):
    """An alert's recent decisions (`dispatcher.store.alert_state.EventCounts`)."""

    counts: dict[str, int]
    first: datetime


@dataclass(frozen=True)
class Forecast:
    month: str
    timezone: str
    quota: int
    used: dict[str, int]
    used_total: int
    forecast: int
    reports: list[ReportCost]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def forecast(
    config: Config,
    counter: ApiCounter,
    now: datetime | None = None,
    last_runs: Mapping[str, Run] | None = None,
    alerts: Mapping[str, AlertHistory] | None = None,
) -> Forecast:
    """Calls used this month plus what every enabled report will spend until the month ends.

    `last_runs` (the ledger's newest run per report) tells how many slices a split_by report sent;
    `alerts` (each alert's decisions of the last ALERT_HISTORY) how often an alert sends.
    """
    now = (now or clock.now()).astimezone(counter.zone)
    month_end = _next_month(now)
    used = counter.used(now.strftime("%Y-%m"))
    last, history = last_runs or {}, alerts or {}
    costs = [
        _cost(config, r, now, month_end, last.get(r.id), history.get(r.id))
        for r in config.reports.values()
        if r.enabled
    ]
    costs.sort(key=lambda c: (-c.calls, c.id))
    total = sum(used.values())
    return Forecast(
        month=now.strftime("%Y-%m"),
        timezone=config.timezone,
        quota=config.dingtalk.monthly_quota,
        used=dict(sorted(used.items())),
        used_total=total,
        forecast=total + sum(c.calls for c in costs),
        reports=costs,
    )


def store_forecast(config: Config, store: StateStore) -> Forecast:
    """The forecast `quota` and `doctor` show: the month's counted calls and each report's last run."""
    from dispatcher.schedule import to_zone
    from dispatcher.store.alert_state import AlertStates
    from dispatcher.store.apicalls import ApiCounter
    from dispatcher.store.ledger import Ledger

    counter = ApiCounter(store, to_zone(config.timezone), config.dingtalk.monthly_quota)
    now = clock.now()
    alerts = AlertStates(store).recent(now - ALERT_HISTORY) if _has_alerts(config) else {}
    return forecast(config, counter, now=now, last_runs=Ledger(store).last_runs(), alerts=alerts)


def _has_alerts(config: Config) -> bool:
    return any(r.alert is not None and r.enabled for r in config.reports.values())


def forecast_text(f: Forecast, top: int = 5) -> str:
    """What `dispatcher quota` prints: the month so far, the forecast, the costliest reports."""
    limit = f"{f.quota:,} calls" if f.quota else "unlimited (monthly_quota: 0)"
    lines = [f"month      {f.month} ({f.timezone}); quota {limit}"]
    lines.append(f"used       {f.used_total:,}{_share(f.used_total, f.quota)}")
    lines += [f"  {endpoint:<16} {calls:>8,}" for endpoint, calls in f.used.items()]
    lines.append(f"forecast   {f.forecast:,} by the end of the month{_share(f.forecast, f.quota)}")
    if f.quota and f.forecast > f.quota:
        lines.append(
            "warning    the forecast exceeds the quota: DingTalk will answer 90020 before the month ends"
        )
        lines.append("           (fewer receipt calls: receipts: result or off; or a paid DingTalk edition)")
    alerts = [c for c in f.reports if c.basis != "schedule"]
    if alerts:
        lines.append(f"alerts     {ALERTS_COUNTED}:")
        lines += [f"  {c.id:<24} {c.note}; every check sending: {c.worst_case or 0:,}" for c in alerts]
    costly = [c for c in f.reports if c.calls][:top]
    if costly:
        lines.append("costliest reports, calls left this month:")
        lines += [f"  {c.id:<24} {c.runs_left:>6,} {'runs' if c.basis == 'schedule' else 'msgs'} "
                  f"x {c.calls_per_run} = {c.calls:,}{_basis(c)}" for c in costly]  # fmt: skip
    return "\n".join(lines)


ALERTS_COUNTED = "alerts counted by the messages they send (fire, remind, recover), not by their checks"


def _basis(cost: ReportCost) -> str:
    return {"history": " (alert: from its history)", "estimate": " (alert: an estimate)"}.get(cost.basis, "")


def _share(calls: int, quota: int) -> str:
    return f" ({calls / quota:.1%} of the quota)" if quota else ""


def calls_per_run(config: Config, report: Report, last: Run | None = None) -> int:
    from dispatcher.run.delivery import recipients_for

    recipients = recipients_for(config, report.to)
    people = len(recipients.userids) + len(recipients.mobiles)
    user_batches = math.ceil(people / 100) + _slice_batches(report, last)
    dept_batches = math.ceil(len(recipients.dept_ids) / 20)
    batches = max(user_batches, dept_batches)
    mode = report.receipts or config.dingtalk.receipts
    # A chart (outside an OA card) and an attachment are messages of their own, each uploaded once.
    extra = [report.chart is not None and report.msgtype != "oa", report.attach is not None]
    uploads = int(report.chart is not None) + int(report.attach is not None)
    # `result` never asks about a task with departments, `full` about every task; receipts are read
    # for the main message only; each group robot's message is one counted call.
    read = batches if mode == "full" else max(0, user_batches - dept_batches)
    return batches * (1 + sum(extra)) + uploads + RECEIPT_CALLS[mode] * read + len(report.robots)


def _slice_batches(report: Report, last: Run | None) -> int:
    """A split_by report's sends depend on its data: as many as its last run made (none known: 0)."""
    if report.split_by is None or last is None:
        return 0
    return sum(1 for b in last.batches.get("accepted", []) if str(b.get("unit", "")).startswith("slice:"))


def _cost(
    config: Config,
    report: Report,
    now: datetime,
    month_end: datetime,
    last: Run | None = None,
    history: AlertHistory | None = None,
) -> ReportCost:
    zone = config.report_zone(report)
    runs = 0
    for _ in report.parsed_schedule().fire_times(now, month_end, zone):
        runs += 1
        if runs >= MAX_FIRE_TIMES:
            break
    per_run = calls_per_run(config, report, last)
    if report.alert is None:
        return ReportCost(report.id, runs, per_run, runs * per_run)
    sends, basis, note = _alert_sends(report, runs, now, month_end - now, history)
    return ReportCost(report.id, sends, per_run, sends * per_run, basis, note, runs * per_run)


def _alert_sends(
    report: Report, checks: int, now: datetime, left: timedelta, history: AlertHistory | None
) -> tuple[int, str, str]:
    """How many of an alert's `checks` left this month will send: (runs, basis, what it rests on)."""
    assert report.alert is not None
    if history is not None and now - history.first >= MIN_ALERT_HISTORY:
        span = now - history.first
        sent = sum(history.counts.get(e, 0) for e in ALERT_SENDS)
        recovered = history.counts.get("recovered", 0) if report.alert.recovery else 0
        expected = math.ceil((sent + recovered) * (left / span))
        days = f"{span / timedelta(days=1):.0f} days"
        return (
            min(expected, checks),
            "history",
            (f"from {days} of history: {sent} fired or reminded, {recovered} recovered"),
        )
    # No history yet: the project's rule for this case is one message per `repeat` while firing plus
    # one recovery, labelled an estimate; firing from now to the month's end bounds it from above.
    repeat = report.alert.repeat
    reminders = int(left.total_seconds() // repeat) if repeat else 0
    expected = 1 + reminders + int(report.alert.recovery)
    every = f"one message per repeat ({_hours(repeat)})" if repeat else "one message (no repeat)"
    recovery = " plus one recovery" if report.alert.recovery else ""
    return min(expected, checks), "estimate", f"no history yet: an estimate, {every} while firing{recovery}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds / 60:g}m"


def _next_month(now: datetime) -> datetime:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1) - timedelta(microseconds=1)
