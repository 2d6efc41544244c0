"""`dispatcher doctor`'s checks of the group robots the reports use.

For each: its variables are set, its webhook has the form and the host of DingTalk's robot API, and,
with `--send-test`, one signed test post reaches the group. A robot needs no app credentials, so
these checks run whatever the DingTalk app's checks found. Never shows a token or a secret.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from dispatcher import clock
from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from dispatcher.config.model import Config
    from dispatcher.robot.client import Robot


@dataclass(frozen=True)
class RobotFinding:
    """One line of doctor's output (doctor turns it into its Check)."""

    name: str
    status: str  # OK, FAIL or SKIP
    detail: str
    hint: str | None = None


VARIABLES_HINT = (
    "set them in the service's environment, in .env beside reports.yaml, or as NAME_FILE naming a "
    "file that holds the value; the webhook is in the group's settings → 智能群助手 → the robot"
)


def used_robots(config: Config) -> list[str]:
    """The robots at least one enabled report posts to, in name order."""
    return sorted({name for r in config.reports.values() if r.enabled for name in r.robots})


def robot_checks(config: Config, *, send_test: bool, state_ok: bool) -> list[RobotFinding]:
    from dispatcher.run.robots import robots_from

    robots = robots_from(config)
    checks: list[RobotFinding] = []
    for name in used_robots(config):
        check = _setup_check(config, name, robots.get(name))
        checks.append(check)
        if not send_test:
            continue
        if check.status == "FAIL" or not state_ok:
            why = "the state store check" if not state_ok else f"robot {name}'s check"
            checks.append(_check(f"robot {name} test", "SKIP", f"needs {why} to pass"))
        else:
            checks.append(_send_test(config, robots[name]))
    return checks


def _setup_check(config: Config, name: str, robot: Robot | None) -> RobotFinding:
    from dispatcher.robot.webhook import webhook_problem

    title = f"robot {name}"
    unset = config.robots[name].missing_vars
    if unset or robot is None:
        what = (
            f"variables not set: {', '.join(unset)}" if unset else "no webhook: robots.NAME.webhook is empty"
        )
        return _check(title, "FAIL", what, VARIABLES_HINT)
    allowed, setting_problem = _allowed(config)
    if setting_problem:
        return _check(title, "FAIL", setting_problem, "fix the variable, or unset it")
    if problem := webhook_problem(robot.webhook, allowed):  # validate's own rule, one place
        return _check(title, "FAIL", problem, "copy the whole webhook URL from the robot's settings")
    host = urlsplit(robot.webhook.strip()).hostname or ""
    security = ["signed" if robot.secret else "not signed"]
    security += [f"keyword {robot.keyword!r}"] if robot.keyword else []
    return _check(title, "OK", f"webhook on {host}, {', '.join(security)}")


def _allowed(config: Config) -> tuple[list[tuple[str, str, int]], str | None]:
    """Where a webhook may point besides DingTalk: the server standing in for it, listed proxies."""
    import os

    from dispatcher.robot.webhook import ALLOWED_HOSTS_VAR, allowed_origins

    base = config.dingtalk.api_base or os.environ.get("DINGTALK_API_BASE")
    return allowed_origins(base, os.environ.get(ALLOWED_HOSTS_VAR, ""))


def _send_test(config: Config, robot: Robot) -> RobotFinding:
    from dispatcher.app import open_store
    from dispatcher.dingtalk.message import markdown_msg
    from dispatcher.robot.client import RobotClient, RobotPacer
    from dispatcher.robot.message import Mentions, RobotMessage, robot_body
    from dispatcher.store.robotsends import RobotSends

    title = f"robot {robot.name} test"
    at = clock.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
    keyword = f"{robot.keyword} " if robot.keyword else ""
    text = f"### {keyword}dispatcher doctor\n\n测试消息 {at}：群机器人 {robot.name} 的地址和签名正常。"
    body, checked = robot_body(markdown_msg(f"{keyword}dispatcher doctor 测试消息", text), Mentions(),
                               uuid.uuid4().hex)  # fmt: skip
    try:
        with open_store(config) as store:
            assert store is not None
            client = RobotClient(RobotPacer(RobotSends(store)))
            try:
                client.send(robot, RobotMessage(robot.name, body, checked))
            finally:
                client.close()
    except DispatcherError as exc:  # DeliveryError: DingTalk's answer, with the robot's hint
        return _check(title, "FAIL", exc.message, exc.hint)
    return _check(title, "OK", "one signed test message posted to the group" if robot.secret
                  else "one test message posted to the group")  # fmt: skip


def _check(name: str, status: str, detail: str, hint: str | None = None) -> RobotFinding:
    return RobotFinding(name, status, detail, hint)
