"""A run's messages to its group robots, each robot one ledger unit (`robot:<name>`).

A retry skips every robot an earlier attempt's accepted entry covers, and the run is `sent` only
when every channel (work notification and each robot) accepted it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from dispatcher.errors import DeliveryError
from dispatcher.robot.client import Robot, RobotClient
from dispatcher.robot.message import Mentions, RobotMessage, msg_uuid, overhead, robot_body

if TYPE_CHECKING:
    from dispatcher.config.model import Config, Report
    from dispatcher.render import Rendered
    from dispatcher.run.delivery import Outcome
    from dispatcher.store.ledger import Run


class Prepared(Protocol):
    """What a run prepared (`dispatcher.run.prepare.Prepared`), as far as robots need it."""

    @property
    def report(self) -> Report: ...
    @property
    def fire_time(self) -> datetime: ...
    @property
    def rendered(self) -> Rendered | None: ...


SANDBOX_WEBHOOK = "https://oapi.dingtalk.com/robot/send?access_token=sandbox-{name}"
Rerender = Callable[[int], "Rendered"]


def unit(name: str) -> str:
    return f"robot:{name}"


@dataclass
class RobotSender:
    """The robots of one app and the client that sends to them."""

    client: RobotClient
    robots: dict[str, Robot]

    def close(self) -> None:
        self.client.close()


def robots_from(config: Config, *, sandbox: bool = False) -> dict[str, Robot]:
    """Every robot whose webhook is set; a sandbox app makes up a webhook for the others."""
    robots = {}
    for name, rc in config.robots.items():
        webhook = rc.webhook.get_secret_value() if rc.webhook else ""
        if not webhook and sandbox:
            webhook = SANDBOX_WEBHOOK.format(name=name)
        if webhook:
            secret = rc.secret.get_secret_value() if rc.secret else None
            robots[name] = Robot(name, webhook, secret, rc.keyword)
    return robots


def missing_webhook(config: Config, name: str) -> DeliveryError:
    unset = ", ".join(config.robots[name].missing_vars) if name in config.robots else ""
    return DeliveryError(
        f"robot {name!r}: its webhook is not set" + (f" ({unset} unset)" if unset else ""),
        hint="set robots.NAME.webhook to the robot's URL, or add --sandbox",
    )


def mentions_of(report: Report) -> Mentions:
    m = report.mention
    return Mentions(tuple(m.mobiles), tuple(m.userids), m.all)


def build_message(
    config: Config, prepared: Prepared, name: str, rerender: Rerender, salt: str = ""
) -> RobotMessage:
    """The run's message for robot `name`, rendered with the robot's own byte budget."""
    report, rendered = prepared.report, prepared.rendered
    assert rendered is not None
    limit = config.robots[name].max_msg_bytes
    mentions = mentions_of(report)
    big = rerender(limit - overhead(rendered.msg, mentions))
    uuid = msg_uuid(report.id, prepared.fire_time, name, "text", salt)
    body, text = robot_body(big.msg, mentions, uuid)
    return RobotMessage(name, body, text, extras={"rows_shown": big.rows_shown, "limit": limit})


def send_robots(
    sender: RobotSender,
    config: Config,
    prepared: Prepared,
    names: Sequence[str],
    rerender: Rerender,
    *,
    done: set[str] | frozenset[str] = frozenset(),
    salt: str = "",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Accepted and refused ledger entries, one per robot not already in `done` (units)."""
    accepted: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for name in names:
        if unit(name) in done:
            continue
        # The config as it is now: a reload may have added a robot or rotated a webhook.
        robot = robots_from(config).get(name) or sender.robots.get(name)
        try:
            if robot is None:
                raise missing_webhook(config, name)
            message = build_message(config, prepared, name, rerender, salt)
            sender.client.send(robot, message)
        except DeliveryError as exc:
            refused.append({"unit": unit(name), "errcode": exc.errcode, "message": str(exc), "recipients": 0,
                            "dept_ids": []})  # fmt: skip
            continue
        accepted.append({"unit": unit(name), "msg_uuid": message.body["msgUuid"], "bytes": message.size,
                         "recipients": 0, "userids": [], "dept_ids": []})  # fmt: skip
    return accepted, refused


def done_units(run: Run | None) -> set[str]:
    return {str(b.get("unit")) for b in (run.batches.get("accepted", []) if run else []) if b.get("unit")}


def merge(
    outcome: Outcome | None, run: Run | None, accepted: list[dict[str, Any]], refused: list[dict[str, Any]]
) -> Outcome:
    """The run's outcome over every channel; DeliveryError when nothing at all was ever accepted."""
    from dispatcher.run.delivery import Outcome

    if outcome is None:
        prior = list(run.batches.get("accepted", [])) if run else []
        outcome = Outcome("sent", (run.recipients or 0) if run else 0, 0, list(run.task_ids) if run else [],
                          {"accepted": prior, "refused": []}, dict(run.receipts) if run else {})  # fmt: skip
    batches = {
        "accepted": [*outcome.batches.get("accepted", []), *accepted],
        "refused": [*outcome.batches.get("refused", []), *refused],
    }
    merged = replace(outcome, batches=batches)
    if not refused:
        return merged
    why = "; ".join(str(r["message"]).split("\n")[0] for r in refused)
    if not batches["accepted"]:
        first = refused[0]
        raise DeliveryError(str(first["message"]), errcode=first["errcode"], endpoint="robot_send")
    names = ", ".join(str(r["unit"]).removeprefix("robot:") for r in refused)
    reason = f"partial delivery (robot {names} refused): {why}"
    if outcome.reason:
        reason = f"{outcome.reason}; {reason}"
    return replace(merged, state="partial", reason=reason)
