"""A rendered report as a group robot's message: msgtype, @mentions, msgUuid and the keyword.

[custom-robots-send-group-messages] Body: `msgtype` text | markdown | actionCard …; `at:
{atMobiles, atUserIds, isAtAll}`, and a mention shows only when the text also says `@<mobile or
userid>`; `msgUuid` makes a resend after a timeout post once. A work notification's `action_card`
is the robot's `actionCard` (camelCase keys). An actionCard documents mentions as `@userId` in its
text only: it gets no `at` block, so its mobiles and `isAtAll` cannot be highlighted (validate says
so). The keyword is looked for in the message's title and text, never in its buttons or links.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dispatcher.dingtalk.message import msg_bytes

# TODO(rich reports): a chart goes to a group as `![](url)` in the markdown only when a *public*
# image URL is configured (a media_id works only inside DingTalk clients); otherwise text only.


@dataclass(frozen=True)
class Mentions:
    mobiles: tuple[str, ...] = ()
    userids: tuple[str, ...] = ()
    all: bool = False

    def at(self) -> dict[str, Any] | None:
        if not (self.mobiles or self.userids or self.all):
            return None
        return {"atMobiles": list(self.mobiles), "atUserIds": list(self.userids), "isAtAll": self.all}

    def line(self) -> str:
        """`@13800000000 @manager4974`: how DingTalk knows where to highlight the mentions."""
        return " ".join(f"@{who}" for who in (*self.mobiles, *self.userids))

    def in_card(self) -> Mentions:
        """What an actionCard can mention: its userids, written in the text, without an `at` block."""
        return Mentions(userids=self.userids)


@dataclass(frozen=True)
class RobotMessage:
    """One robot request body, and the unit it delivers (`robot:<name>`, maybe `/part:…`)."""

    robot: str
    body: dict[str, Any]
    text: str  # the message's text (markdown, or a text message's content)
    part: str = "text"
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return msg_bytes(self.body)

    @property
    def checked(self) -> str:
        return keyword_text(self.body)


# Where DingTalk looks for a robot's keyword in each msgtype: the title and the text.
KEYWORD_FIELDS = {"text": ("content",), "markdown": ("title", "text"), "actionCard": ("title", "text"),
                  "link": ("title", "text")}  # fmt: skip


def keyword_text(body: dict[str, Any]) -> str:
    """The parts of a robot body that DingTalk checks for the keyword, joined by newlines."""
    kind = body.get("msgtype")
    part = body.get(kind) if isinstance(kind, str) else None
    if not isinstance(part, dict):
        return ""
    if kind == "feedCard":  # a list of links: their titles
        links = part.get("links")
        parts = [link for link in links if isinstance(link, dict)] if isinstance(links, list) else []
        return "\n".join(str(link.get("title", "")) for link in parts)
    return "\n".join(str(part.get(name, "")) for name in KEYWORD_FIELDS.get(str(kind), ()))


def msg_uuid(report_id: str, fire_time: datetime, robot: str, part: str, salt: str = "") -> str:
    """DingTalk's idempotency key: the same run, robot and part always give the same value."""
    stamp = fire_time.astimezone(UTC).isoformat()
    return hashlib.sha256(f"{report_id}\n{stamp}\n{robot}\n{part}\n{salt}".encode()).hexdigest()[:32]


def robot_body(msg: dict[str, Any], mentions: Mentions, uuid: str) -> tuple[dict[str, Any], str]:
    """The robot's body for a work notification's `msg`; returns it with its text."""
    line = mentions.line()
    kind = msg["msgtype"]
    if kind == "text":
        text = _joined(msg["text"]["content"], line, "\n")
        body: dict[str, Any] = {"msgtype": "text", "text": {"content": text}}
    elif kind == "action_card":
        mentions = mentions.in_card()
        card = msg["action_card"]
        text = _joined(card["markdown"], mentions.line(), "\n\n")
        body = {"msgtype": "actionCard", "actionCard": {"title": card["title"], "text": text,
                "singleTitle": card["single_title"], "singleURL": card["single_url"]}}  # fmt: skip
    else:
        text = _joined(msg["markdown"]["text"], line, "\n\n")
        body = {"msgtype": "markdown", "markdown": {"title": msg["markdown"]["title"], "text": text}}
    at = mentions.at() if kind != "action_card" else None
    if at is not None:
        body["at"] = at
    body["msgUuid"] = uuid
    return body, text


def overhead(msg: dict[str, Any], mentions: Mentions) -> int:
    """Bytes the robot's body adds to a work notification's `msg`: what its budget must leave free."""
    body, _ = robot_body(msg, mentions, "0" * 32)
    return max(msg_bytes(body) - msg_bytes(msg), 0)


def _joined(text: str, line: str, sep: str) -> str:
    return f"{text}{sep}{line}" if line else text
