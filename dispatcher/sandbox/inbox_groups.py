"""The inbox's group view: what each robot posted into its group, with the @mentions highlighted.

DingTalk highlights a mention where the text says `@<mobile or userid>` and `at` lists that person
[custom-robots-send-group-messages]; the page does the same, so a missing half shows unhighlighted.
An actionCard has no `at`: its mentions are the `@userId`s written in its text.
"""

from __future__ import annotations

import re
from typing import Any

from dispatcher.dingtalk.markdown import to_html
from dispatcher.sandbox.inbox import e

_STYLE = (
    ".groups{margin:24px 16px}.group{margin:12px 0;padding:8px;border:1px solid #ddd;border-radius:8px}"
    ".mention{color:#1677ff;font-weight:bold}.group .bubble{margin:6px 0;padding:8px;background:#f5f5f5}"
)


def with_groups(page: str, messages: list[dict[str, Any]], nonce: str) -> str:
    """`page` with a group section per robot before `</main>`; unchanged when no robot posted."""
    if not messages:
        return page
    return page.replace("</main>", groups(messages, nonce) + "\n</main>", 1)


def groups(messages: list[dict[str, Any]], nonce: str) -> str:
    names = list(dict.fromkeys(m["robot"] for m in messages))
    sections = []
    for name in names:
        posts = [m for m in messages if m["robot"] == name]
        bubbles = "".join(bubble(m) for m in reversed(posts))
        sections.append(f'<div class="group"><h2>群 · {e(name)} ({len(posts)})</h2>{bubbles}</div>')
    return f'<style nonce="{e(nonce)}">{_STYLE}</style><section class="groups">{"".join(sections)}</section>'


def bubble(message: dict[str, Any]) -> str:
    at = message.get("at") or {}
    who = [str(w) for w in (*(at.get("atMobiles") or []), *(at.get("atUserIds") or []))]
    text = str(message.get("text", ""))
    if message["msgtype"] == "actionCard":
        who = re.findall(r"(?<![\w@])@([A-Za-z0-9_-]+)", text)
    body = to_html(text) if message["msgtype"] != "text" else f"<pre>{e(text)}</pre>"
    for person in who:
        # to_html escaped the text; the mention is plain digits or a userid, escaped the same way.
        body = re.sub(rf"@{re.escape(e(person))}\b", f'<span class="mention">@{e(person)}</span>', body)
    everyone = ' <span class="mention">@所有人</span>' if at.get("isAtAll") else ""
    return f'<div class="bubble"><b>{e(message.get("title", ""))}</b>{everyone}{body}</div>'
