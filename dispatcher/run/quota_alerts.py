"""The admins' monthly-quota alerts: the 80% warning and the one 90020 alert of the month.

A run sends them (outcomes, the app's API counter), so they live with the run; the forecast that
`quota` and `doctor` print is ops/quota.py.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dispatcher import logs
from dispatcher.config.model import ALERT_GROUP, Config
from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from dispatcher.dingtalk.client import DingTalkClient


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
    from dispatcher.dingtalk.message import markdown_msg
    from dispatcher.run.delivery import deliver, recipients_for

    if ALERT_GROUP not in config.recipients:
        logs.event("alert.skipped", logging.WARNING, reason="no 'admins' recipient group", title=title)
        return
    try:
        deliver(client, markdown_msg(title, text), recipients_for(config, [ALERT_GROUP]), receipts="off")
    except DispatcherError as exc:
        logs.event("alert.failed", logging.ERROR, title=title, error=str(exc))
        return
    logs.event("alert.sent", title=title)
