"""What the daemon tells operators about itself: next fire times, heartbeats, state-store alerts."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from dispatcher import logs
from dispatcher.config.model import ALERT_GROUP, Config, Report
from dispatcher.errors import DispatcherError
from dispatcher.run.services import Services
from dispatcher.schedule import Schedule

STORE_ALERT_TITLE = "调度器状态库不可用"


def next_fires(config: Config, now: datetime) -> list[tuple[Report, datetime]]:
    """Each enabled report's next fire time after `now`, in the report's zone, soonest first."""
    fires = []
    # Per schedule and zone, as `list` does: 5,000 reports share a few hundred of them (issue 28).
    found: dict[tuple[Schedule, ZoneInfo], datetime] = {}
    for report in config.reports.values():
        if report.enabled:
            when = (report.parsed_schedule(), config.report_zone(report))
            if when not in found:
                found[when] = when[0].next_fire_time(now, when[1]).astimezone(when[1])
            fires.append((report, found[when]))
    return sorted(
        fires, key=lambda pair: pair[1].timestamp()
    )  # by instant: a repeated hour shares wall times


def workers_problem(waited: float, limit: float, workers: int) -> str | None:
    """The /healthz reason when a due run has waited longer than `limit` seconds for a worker."""
    if waited <= limit:
        return None
    return (
        f"a due run has waited {waited:.0f}s for a worker (max_wait {limit:g}s): "
        f"all {workers} workers are busy"
    )


def alert_store_problem(svc: Services, owner: str, problem: str) -> None:
    """Tell `admins` the state store is unusable; sent once per outage, so no ledger throttle (it is down)."""
    from dispatcher.dingtalk.message import markdown_msg
    from dispatcher.render.format import md
    from dispatcher.run.delivery import deliver, recipients_for

    if ALERT_GROUP not in svc.config.recipients:
        logs.event("alert.skipped", logging.WARNING, reason="no 'admins' recipient group")
        return
    text = (
        f"### {STORE_ALERT_TITLE}\n\n- **进程** {md(owner)}\n- **原因** {md(problem[:300])}\n\n"
        "已停止认领运行；状态库恢复后自动继续。"
    )
    try:
        deliver(svc.client, markdown_msg(STORE_ALERT_TITLE, text), recipients_for(svc.config, [ALERT_GROUP]))
    except DispatcherError as exc:
        logs.event("alert.failed", logging.ERROR, error=str(exc))
        return
    logs.event("alert.sent", reason="state store unhealthy")
