"""What each robot errcode means, what the client does about it and what the user must check.

[custom-robots-send-group-messages] lists the documented codes; 130101, 300001 and 460101 are
answered by the real server too (issue 24) and are not on that page. Robot answers are never
wrapped in the /topapi gateway's errcode 88: the errcode is the real one. The README's robot error
table is `table_rows()` (tests/test_robot_fidelity.py keeps them equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dispatcher.errors import DeliveryError

MAX_BODY_BYTES = 20000  # DingTalk refuses a larger robot request body with 460101

Retry = Literal["backoff", "window", "no"]


@dataclass(frozen=True)
class RobotCode:
    meaning: str
    hint: str
    retry: Retry = "no"  # backoff: short exponential waits; window: after the pacing window


_ACTION: dict[Retry, str] = {
    "backoff": "resends the same body after a short backoff (3 attempts)",
    "window": "waits for the pacing window (60 s), then resends the same body",
    "no": "no resend: the error names the robot and shows the hint",
}
_COPY_WEBHOOK = "copy the webhook URL again from the robot's settings"

BUSY = -1
TOO_FAST = 410100  # over 20 a minute: the robot is throttled for 10 minutes
TOO_BIG = 460101

ROBOT_ERRCODES: dict[int, RobotCode] = {
    BUSY: RobotCode("DingTalk is busy", "a transient fault", "backoff"),
    TOO_FAST: RobotCode("too many messages: throttled", "more than 20 a minute reached the robot", "window"),
    310000: RobotCode(
        "security check failed",
        "check the robot's security settings: its keyword is in every message, the signing secret "
        "(SEC…) is the robot's, this server's clock is right (the timestamp must be within an hour), "
        "or this server's IP is in the robot's IP range",
    ),
    400101: RobotCode("no such access_token", _COPY_WEBHOOK),
    400106: RobotCode(
        "no such robot", "the robot was removed: add it to the group again and copy its webhook"
    ),
    400102: RobotCode("the robot is disabled", "enable the robot in the group's settings"),
    400013: RobotCode("the group was dissolved", "point the robot's webhook at a group that exists"),
    400105: RobotCode("unsupported msgtype", "use markdown, text or action_card for reports sent to groups"),
    40035: RobotCode(
        "invalid request body", "a bug or an unsupported message; report it with the run's fire time"
    ),
    43004: RobotCode("invalid content type", "a bug: the request must be application/json"),
    # Answered by the real server, missing from the robot page (issue 24, item 2).
    130101: RobotCode("too many messages: throttled (the older code)", "as 410100", "window"),
    300001: RobotCode("the webhook's token does not exist", _COPY_WEBHOOK),
    TOO_BIG: RobotCode(
        f"the request body is over {MAX_BODY_BYTES:,} bytes",
        "a bug in the robot's size budget: lower robots.NAME.max_msg_bytes and report it",
    ),
}
CONTENT_REFUSED = RobotCode(
    "content refused", "DingTalk refused the content (an unsafe link, text or image): change the report"
)
UNKNOWN = RobotCode("unexpected error", "read DingTalk's errmsg; the run can be retried")


def describe(errcode: int) -> RobotCode | None:
    """What a known code means; 4301xx are the content refusals."""
    if errcode in ROBOT_ERRCODES:
        return ROBOT_ERRCODES[errcode]
    if 430100 <= errcode <= 430199:
        return CONTENT_REFUSED
    return None


def retry_of(errcode: int) -> Retry:
    """How the client retries a code within one send; an unknown code is left to the run's retry."""
    known = describe(errcode)
    return known.retry if known is not None else "no"


def robot_error(robot: str, errcode: int, errmsg: str, size: int | None = None) -> DeliveryError:
    """The error a user reads for a robot's refusal: the robot named, what happened, what to check.

    `size` is the body's size on the wire, which a 460101 must name.
    """
    known = describe(errcode)
    meaning, hint = (known or UNKNOWN).meaning, (known or UNKNOWN).hint
    if errcode == TOO_BIG and size is not None:
        meaning = f"the request body is {size:,} bytes, over {MAX_BODY_BYTES:,} bytes"
    return DeliveryError(
        f"robot {robot!r} refused the message: errcode {errcode} ({meaning}): {errmsg}",
        errcode=errcode,
        errmsg=errmsg,
        endpoint="robot_send",
        hint=f"robot {robot!r}: {hint}",
        retryable=known is None,
    )


def table_rows() -> list[str]:
    """The README's robot error table, one markdown row per code."""
    rows = [_row(str(code), info) for code, info in ROBOT_ERRCODES.items()]
    return [
        *rows,
        _row("4301xx", CONTENT_REFUSED),
        _row("any other", UNKNOWN, "no resend: the error shows DingTalk's errmsg"),
    ]


def _row(code: str, info: RobotCode, action: str | None = None) -> str:
    return f"| {code} | {info.meaning} | {action or _ACTION[info.retry]} | {info.hint} |"
