"""Alerts (`alert:` in reports.yaml): rows > 0 means firing; the state decides what a run sends.

The first firing run sends the report; later firing runs are suppressed until `repeat` has passed;
the first empty run after firing sends the recovery message, with the duration, to the same
recipients. A query failure never reaches here, so it is never mistaken for a recovery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from dispatcher.templating.recovery import render_recovery

if TYPE_CHECKING:
    from dispatcher.config.model import Report
    from dispatcher.render import Rendered
    from dispatcher.store.alert_state import AlertState, AlertStates, Decision


@dataclass(frozen=True)
class Verdict:
    """What the run sends: the report as rendered (`keep`), this recovery message, or nothing."""

    keep: bool
    rendered: Rendered | None
    note: str
    event: str  # the alert's event: fired, reminded, suppressed, recovered, cleared, late


def gate(states: AlertStates, report: Report, fire: datetime, rows: int) -> Verdict:
    """The alert's decision for this fire time, turned into what the run sends."""
    assert report.alert is not None
    decision = states.decide(report.id, fire, rows > 0, report.alert.repeat)
    if decision.sends:
        return Verdict(True, None, f"alert {decision.event}", decision.event)
    if decision.event == "recovered" and report.alert.recovery:
        return Verdict(False, recovery_message(report, fire, decision), "alert recovered", decision.event)
    return Verdict(False, None, _why_not(report, decision), decision.event)


def _why_not(report: Report, decision: Decision) -> str:
    if decision.event == "suppressed":
        every = "no repeat" if report.alert is None or report.alert.repeat is None else "repeat not due"
        return f"alert still firing ({decision.runs} runs), reminder suppressed: {every}"
    if decision.event == "recovered":
        return "alert recovered (recovery: false, nothing sent)"
    return "alert ok: no rows"


def recovery_message(report: Report, fire: datetime, decision: Decision) -> Rendered:
    from dispatcher.dingtalk.message import markdown_msg, msg_bytes
    from dispatcher.render import Rendered

    assert report.alert is not None
    since = decision.since.astimezone(fire.tzinfo) if decision.since else fire
    lasted = (fire - since).total_seconds()
    text = render_recovery(report.alert.recovery_template, report.title, lasted, since)
    # The fire time keeps two recoveries apart: DingTalk drops identical content the same day.
    body = f"{text}\n\n恢复于 {fire.strftime('%Y-%m-%d %H:%M:%S')}"
    msg = markdown_msg(report.title, body)
    return Rendered(report.title, body, msg, msg_bytes(msg), 0, 0, False)


def state_text(state: AlertState | None, now: datetime) -> str:
    """`firing since 09:30 (2 runs)` for `list`; the day too when it began on another day."""
    if state is None:
        return "ok"
    if state.state == "ok":
        return "ok"
    since = state.since.astimezone(now.tzinfo) if state.since else now
    when = since.strftime("%H:%M") if since.date() == now.date() else since.strftime("%Y-%m-%d %H:%M")
    return f"firing since {when} ({state.runs} run{'s' if state.runs != 1 else ''})"
