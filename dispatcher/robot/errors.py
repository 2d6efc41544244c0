"""What each robot errcode means and what the user must check [custom-robots-send-group-messages].

Robot answers are never wrapped in the /topapi gateway's errcode 88: the errcode is the real one.
"""

from __future__ import annotations

from dispatcher.errors import DeliveryError

BUSY = -1
TOO_FAST = 410100  # over 20 a minute: the robot is throttled for 10 minutes

PERMANENT: dict[int, tuple[str, str]] = {
    310000: (
        "security check failed",
        "check the robot's security settings: its keyword is in every message, the signing secret "
        "(SEC…) is the robot's, this server's clock is right (the timestamp must be within an hour), "
        "or this server's IP is in the robot's IP range",
    ),
    400101: ("no such access_token", "copy the webhook URL again from the robot's settings"),
    400106: ("no such robot", "the robot was removed: add it to the group again and copy its webhook"),
    400102: ("the robot is disabled", "enable the robot in the group's settings"),
    400013: ("the group was dissolved", "point the robot's webhook at a group that exists"),
    400105: ("unsupported msgtype", "use markdown, text or action_card for reports sent to groups"),
    40035: ("invalid request body", "a bug or an unsupported message; report it with the run's fire time"),
    43004: ("invalid content type", "a bug: the request must be application/json"),
}
CONTENT_REFUSED = (
    "content refused",
    "DingTalk refused the content (an unsafe link, text or image): change the report",
)


def describe(errcode: int) -> tuple[str, str] | None:
    """(meaning, what to do) for a permanent code; 4301xx are the content refusals."""
    if errcode in PERMANENT:
        return PERMANENT[errcode]
    if 430100 <= errcode <= 430199:
        return CONTENT_REFUSED
    return None


def robot_error(robot: str, errcode: int, errmsg: str) -> DeliveryError:
    """The error a user reads for a robot's refusal: the robot named, what happened, what to check."""
    meaning, hint = describe(errcode) or (
        "unexpected error",
        "read DingTalk's errmsg; the run can be retried",
    )
    return DeliveryError(
        f"robot {robot!r} refused the message: errcode {errcode} ({meaning}): {errmsg}",
        errcode=errcode,
        errmsg=errmsg,
        endpoint="robot_send",
        hint=f"robot {robot!r}: {hint}",
        retryable=describe(errcode) is None,
    )
