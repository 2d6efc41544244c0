"""The inbox's group chats: one phone-width chat per robot, its posts oldest first, as a phone shows it.

The title of a markdown or action card post is only what the chat list and the push show: the phone
prints the text alone, which usually starts with its own heading, so the title is not printed again.
DingTalk highlights a mention where the text says `@<mobile or userid>` and `at` lists that person,
and shows the person's name in its place [custom-robots-send-group-messages]; the page does the same
with the sandbox's directory, so a missing half shows unhighlighted. An actionCard has no `at`: its
mentions are the `@userId`s written in its text.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from dispatcher.dingtalk.markdown import to_html
from dispatcher.sandbox.delivery import SHANGHAI
from dispatcher.sandbox.inbox import e


def with_groups(page: str, messages: list[dict[str, Any]], people: dict[str, str] | None = None) -> str:
    """`page` with a group chat per robot before `</main>`; unchanged when no robot posted.
    `people`: userid or mobile -> name, for the mentions."""
    if not messages:
        return page
    return page.replace("</main>", groups(messages, people or {}) + "\n</main>", 1)


def groups(messages: list[dict[str, Any]], people: dict[str, str]) -> str:
    names = list(dict.fromkeys(m["robot"] for m in reversed(messages)))  # latest chat first
    chats = "".join(chat(name, [m for m in messages if m["robot"] == name], people) for name in names)
    return f'<h2 class="section">群聊 · group chats</h2><section class="phones groups">{chats}</section>'


def chat(name: str, posts: list[dict[str, Any]], people: dict[str, str]) -> str:
    """One group chat: its chat-list row (the latest post's title as the preview), then the posts."""
    latest = posts[-1]
    head = (
        f'<div class="chat"><div class="avatar group">群</div><div class="preview">'
        f'<div class="who"><b>{e(name)}</b><time>{e(_time(latest))}</time></div>'
        f'<div class="line">{e(_preview(latest)) or "&nbsp;"}</div></div></div>'
    )
    bubbles = "".join(post(m, people) for m in posts)
    owner = f'<div class="owner">群 · {e(name)} ({len(posts)})</div>'
    conversation = f'<div class="conversation">{bubbles}</div>'
    return f'<article class="phone group" data-robot="{e(name)}">{head}{conversation}{owner}</article>'


def post(message: dict[str, Any], people: dict[str, str]) -> str:
    """One post: its time, the robot as the sender, the body with the mentions as names."""
    sender = f'<div class="from"><span class="app-icon">机</span>{e(message["robot"])}</div>'
    return (
        f'<div class="msg" data-id="{e(message["id"])}">'
        f'<div class="stamp"><time>{e(_time(message))}</time></div>{sender}'
        f'<div class="bubble">{body(message, people)}</div></div>'
    )


def body(message: dict[str, Any], people: dict[str, str]) -> str:
    at = message.get("at") or {}
    who = [str(w) for w in (*(at.get("atMobiles") or []), *(at.get("atUserIds") or []))]
    text = str(message.get("text", ""))
    if message["msgtype"] == "actionCard":
        who = re.findall(r"(?<![\w@])@([A-Za-z0-9_-]+)", text)
    html = to_html(text) if message["msgtype"] != "text" else f"<pre>{e(text)}</pre>"
    if message["msgtype"] == "link" and message.get("title"):
        html = f"<p><b>{e(message['title'])}</b></p>{html}"  # a link card shows its title
    if who:
        # to_html escaped the text; a mention is plain digits or a userid, escaped the same way.
        # One pass, so a name put in never matches another mention.
        mentioned = "|".join(re.escape(e(w)) for w in sorted(set(who), key=len, reverse=True))
        html = re.sub(rf"@({mentioned})(?![A-Za-z0-9_-])", lambda m: _mention(m.group(1), people), html)
    everyone = ' <span class="mention">@所有人</span>' if at.get("isAtAll") else ""
    return html + everyone


def _mention(person: str, people: dict[str, str]) -> str:
    shown = people.get(person, person)
    return f'<span class="mention">@{e(shown)}</span>'


def _preview(message: dict[str, Any]) -> str:
    return str(message.get("title") or " ".join(str(message.get("text", "")).split()))


def _time(message: dict[str, Any]) -> str:
    return datetime.fromtimestamp(float(message["at_time"]), SHANGHAI).strftime("%m-%d %H:%M:%S")
