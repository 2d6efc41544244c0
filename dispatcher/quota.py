"""The monthly API budget as reports see it: this month's forecast, and the admins' quota alerts.

A run costs ceil(userids / 100) asyncsend_v2 batches (departments: ceil(dept_ids / 20)) per
message (a chart and an attachment are messages of their own, and one media/upload each), plus its
receipt calls: none with `receipts: off`, one getsendresult per batch without departments with
`result`, at most 3 per batch with `full` (dingtalk/receipts.py). Fire times come from the same
pure schedule functions the daemon uses.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dispatcher import clock, logs
from dispatcher.config import ALERT_GROUP, Config, Report
from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dispatcher.dingtalk.client import DingTalkClient
    from dispatcher.store.apicalls import ApiCounter
    from dispatcher.store.db import StateStore
    from dispatcher.store.ledger import Run

RECEIPT_CALLS = {"off": 0, "result": 1, "full": 3}  # per send batch
MAX_FIRE_TIMES = 100_000  # `every: 1s` fires 2.6 million times a month: the forecast says "at least"


@dataclass(frozen=True)
class ReportCost:
    id: str
    runs_left: int
    calls_per_run: int
    calls: int


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
) -> Forecast:
    """Calls used this month plus what every enabled report will spend until the month ends.

    `last_runs` (the ledger's newest run per report) tells how many slices a split_by report sent.
    """
    now = (now or clock.now()).astimezone(counter.zone)
    month_end = _next_month(now)
    used = counter.used(now.strftime("%Y-%m"))
    last = last_runs or {}
    costs = [_cost(config, r, now, month_end, last.get(r.id)) for r in config.reports.values() if r.enabled]
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
    from dispatcher.store.apicalls import ApiCounter
    from dispatcher.store.ledger import Ledger

    counter = ApiCounter(store, to_zone(config.timezone), config.dingtalk.monthly_quota)
    return forecast(config, counter, last_runs=Ledger(store).last_runs())


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
    costly = [c for c in f.reports if c.calls][:top]
    if costly:
        lines.append("costliest reports, calls left this month:")
        lines += [f"  {c.id:<24} {c.runs_left:>6,} runs x {c.calls_per_run} = {c.calls:,}" for c in costly]
    return "\n".join(lines)


def _share(calls: int, quota: int) -> str:
    return f" ({calls / quota:.1%} of the quota)" if quota else ""


def calls_per_run(config: Config, report: Report, last: Run | None = None) -> int:
    from dispatcher.delivery import recipients_for

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
    config: Config, report: Report, now: datetime, month_end: datetime, last: Run | None = None
) -> ReportCost:
    zone = config.report_zone(report)
    runs = 0
    for _ in report.parsed_schedule().fire_times(now, month_end, zone):
        runs += 1
        if runs >= MAX_FIRE_TIMES:
            break
    per_run = calls_per_run(config, report, last)
    return ReportCost(report.id, runs, per_run, runs * per_run)


def _next_month(now: datetime) -> datetime:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1) - timedelta(microseconds=1)


# -- alerts --------------------------------------------------------------------------------


def quota_alert(client: DingTalkClient, config: Config, month: str, used: int, quota: int) -> None:
    """The once-a-month 80% warning to `admins` (ApiCounter decides "once")."""
    text = (
        f"### DingTalk 月度接口调用量已用 {used / quota:.0%}\n\n- **月份** {month}\n"
        f"- **已用** {used} / {quota}\n\n超出后钉钉返回 90020，报表将无法发送。"
        "可减少回执调用（`receipts: result` 或 `off`），或升级钉钉付费版。"
    )
    notify_admins(client, config, f"DingTalk 接口调用量已用 {used / quota:.0%}", text)


def exhausted_alert(client: DingTalkClient, config: Config, allowed: bool, error: str) -> None:
    """The one 90020 alert of the month; `allowed` comes from the ledger's once-only claim."""
    if not allowed:
        logs.event("alert.suppressed", reason="the monthly quota alert went out already")
        return
    text = f"### DingTalk 月度接口配额已用完 (90020)\n\n{error[:400]}"
    notify_admins(client, config, "DingTalk 月度接口配额已用完", text)


def notify_admins(client: DingTalkClient, config: Config, title: str, text: str) -> None:
    """One markdown notification to `admins`, reading no receipts: it must not spend more quota."""
    from dispatcher.delivery import deliver, recipients_for
    from dispatcher.dingtalk.message import markdown_msg

    if ALERT_GROUP not in config.recipients:
        logs.event("alert.skipped", logging.WARNING, reason="no 'admins' recipient group", title=title)
        return
    try:
        deliver(client, markdown_msg(title, text), recipients_for(config, [ALERT_GROUP]), receipts="off")
    except DispatcherError as exc:
        logs.event("alert.failed", logging.ERROR, title=title, error=str(exc))
        return
    logs.event("alert.sent", title=title)
