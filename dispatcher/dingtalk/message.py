"""DingTalk `msg` objects and their size as sent. Shared by the renderer (budget) and the client (wire)."""

from __future__ import annotations

import json
from typing import Any

MAX_MSG_BYTES = 2048  # the asyncsend_v2 `msg` limit [asynchronous-sending-of-enterprise-session-messages]


def dumps(obj: Any) -> str:
    """The JSON text exactly as the client puts it on the wire: UTF-8, non-ASCII unescaped, compact."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def msg_bytes(msg: dict[str, Any]) -> int:
    """Size of the `msg` object as sent, the figure DingTalk's 2048-byte limit applies to."""
    return len(dumps(msg).encode("utf-8"))


def markdown_msg(title: str, text: str) -> dict[str, Any]:
    return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}


def text_msg(content: str) -> dict[str, Any]:
    return {"msgtype": "text", "text": {"content": content}}


def action_card_msg(title: str, markdown: str, single_title: str, single_url: str) -> dict[str, Any]:
    return {
        "msgtype": "action_card",
        "action_card": {
            "title": title,
            "markdown": markdown,
            "single_title": single_title,
            "single_url": single_url,
        },
    }


def image_msg(media_id: str) -> dict[str, Any]:
    return {"msgtype": "image", "image": {"media_id": media_id}}


def file_msg(media_id: str) -> dict[str, Any]:
    return {"msgtype": "file", "file": {"media_id": media_id}}


def oa_msg(
    url: str,
    head_color: str,
    head_text: str,
    body: dict[str, Any],
) -> dict[str, Any]:
    """An OA card; DingTalk shows the app's name in the head whatever `head_text` says."""
    return {
        "msgtype": "oa",
        "oa": {"message_url": url, "head": {"bgcolor": head_color, "text": head_text}, "body": body},
    }
