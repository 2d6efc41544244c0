"""The inbox page at `/`: each person's 工作通知 conversation in a phone-width frame, as DingTalk shows it.

One frame per person: the chat-list row (工作通知, the newest message's title as its preview, the
unread count), then the conversation, oldest message at the top and the newest at the bottom, each
under the name of the app that sent it. DingTalk shows the micro-app's name there, and in an OA
card's head instead of the head text the message carries [message-types-and-data-format]; the
sandbox's app is called `SandboxOptions.app_name`.

Viewing one person's inbox (`/?userid=X`) marks their messages read, which is what getsendresult
then reports in read_user_id_list: the page plays the part of the phone.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import quote

from dispatcher.dingtalk.markdown import is_web_url, to_html
from dispatcher.sandbox.delivery import SHANGHAI
from dispatcher.sandbox.options import DEFAULT_APP_NAME
from dispatcher.words import plural

MAX_CARDS = 200  # benchmarks deliver thousands; the page stays light
FORBIDDEN_REASONS = {
    "143106": "同一内容今日已发送过 (same content today)",
    "143105": "超过单人每日上限 (per-user daily limit)",
    "143103": "超过应用每分钟人次上限 (app recipients per minute)",
}
_TEMPLATE = Template(resources.files("dispatcher.sandbox").joinpath("inbox.html").read_text("utf-8"))


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def render_page(
    messages: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
    names: dict[str, str],
    userid: str | None = None,
    nonce: str = "",
    files: dict[str, tuple[str, int]] | None = None,
    app_name: str = DEFAULT_APP_NAME,
) -> str:
    """The page; `nonce` is the one the Content-Security-Policy allows its <style> elements by.
    `files`: media_id -> (file name, bytes) of the uploads, for file messages' download links."""
    shown = [m for m in messages if userid is None or m["userid"] == userid]
    newest = sorted(shown, key=lambda m: m["id"], reverse=True)[:MAX_CARDS]
    people = dict.fromkeys(m["userid"] for m in newest)  # the chat list: latest conversation first
    parts = Parts(nonce, files or {}, app_name)
    oldest_first = newest[::-1]
    phones = "\n".join(
        phone(person, names.get(person, person), [m for m in oldest_first if m["userid"] == person], parts)
        for person in people
    )
    if not shown:
        phones = '<div class="empty">还没有消息 — no notifications yet</div>'
    who = f"{names.get(userid, userid)} ({userid})" if userid else "所有人 (everyone)"
    more = f", showing the newest {MAX_CARDS}" if len(shown) > MAX_CARDS else ""
    summary = (
        f"{who} · {plural(len(shown), 'notification')}{more} · refreshes every 3 s · "
        "opening a person's inbox (?userid=…) marks their messages read"
    )
    return _TEMPLATE.substitute(
        nonce=e(nonce),
        title="DingTalk sandbox inbox",
        heading=f"工作通知 · {e(app_name)} · DingTalk sandbox inbox",
        summary=e(summary),
        nav=nav(messages, names, userid),
        cards=phones,
        undelivered=undelivered(tasks, names, userid),
    )


@dataclass(frozen=True)
class Parts:
    """What every message's HTML needs besides the message: the style nonce, the uploads, the app."""

    nonce: str
    files: dict[str, tuple[str, int]]
    app_name: str


def nav(messages: list[dict[str, Any]], names: dict[str, str], userid: str | None) -> str:
    unread = Counter(m["userid"] for m in messages if not m["read"] and not m["recalled"])
    people = dict.fromkeys(m["userid"] for m in sorted(messages, key=lambda m: -m["id"]))
    links = [f'<a href="/"{" class=on" if userid is None else ""}>全部</a>']
    for person in people:
        badge = f" <b>{unread[person]}</b>" if unread[person] else ""
        on = " class=on" if person == userid else ""
        label = e(names.get(person, person))
        links.append(f'<a href="/?userid={e(quote(person))}"{on}>{label}{badge}</a>')
    return "".join(links)


def phone(person: str, name: str, thread: list[dict[str, Any]], parts: Parts) -> str:
    """One person's phone: the 工作通知 row of the chat list, then the conversation, oldest first."""
    bubbles = [message(m, parts) for m in thread]
    latest = thread[-1]
    unread = sum(1 for m in thread if not m["read"] and not m["recalled"])
    badge = f'<span class="badge">{unread}</span>' if unread else ""
    chat = (
        f'<div class="chat"><div class="avatar">通知</div><div class="preview">'
        f'<div class="who"><b>工作通知</b><time>{e(local_time(latest["at"]))}</time></div>'
        f'<div class="line">{bubbles[-1][0] or "&nbsp;"}</div></div>{badge}</div>'
    )
    owner = f'<div class="owner">{e(name)} ({e(person)}) 的手机 · {plural(len(thread), "notification")}</div>'
    conversation = "".join(body for _, body in bubbles)
    return (
        f'<article class="phone" data-userid="{e(person)}">{chat}'
        f'<div class="conversation">{conversation}</div>{owner}</article>'
    )


def message(msg: dict[str, Any], parts: Parts) -> tuple[str, str]:
    """(chat-list preview, the message in the conversation): its time, the app that sent it, its
    body, and below it what the sandbox knows (msgtype, read state, task)."""
    preview, body = content(msg["msg"], parts.nonce, parts.files, parts.app_name)
    state = "已撤回 recalled" if msg["recalled"] else ("已读 read" if msg["read"] else "未读 unread")
    classes = "msg" + (" recalled" if msg["recalled"] else "")
    classes += " unread" if not msg["read"] and not msg["recalled"] else ""
    # an OA card's head already carries the app's name; other messages show it above their body
    sender = "" if msg["msg"].get("msgtype") == "oa" else app_row(parts.app_name)
    meta = (
        f'<span class="tag">{e(msg["msgtype"])}</span>'
        f'<span class="tag{" unread" if state.startswith("未读") else ""}">{e(state)}</span>'
        f"<span>task {e(msg['task_id'])}</span>"
    )
    return preview, (
        f'<div class="{classes}" data-id="{e(msg["id"])}">'
        f'<div class="stamp"><time>{e(local_time(msg["at"]))}</time></div>'
        f'<div class="bubble">{sender}{body}</div><div class="meta">{meta}</div></div>'
    )


def app_row(app_name: str) -> str:
    return f'<div class="app"><span class="app-icon">{e(app_name[:1])}</span>{e(app_name)}</div>'


def content(
    msg: dict[str, Any],
    nonce: str = "",
    files: dict[str, tuple[str, int]] | None = None,
    app_name: str = DEFAULT_APP_NAME,
) -> tuple[str, str]:
    """(chat-list preview HTML, body HTML) the way the phone shows each msgtype.

    The title of a markdown or action card message is only the preview (and the push): the phone
    does not print it above the body, which usually starts with its own heading.
    """
    msgtype = msg.get("msgtype", "")
    part = _obj(msg.get(msgtype))
    if msgtype == "markdown":
        return e(part.get("title", "")), to_html(str(part.get("text", "")))
    if msgtype == "action_card":
        return e(part.get("title", "")), to_html(str(part.get("markdown", ""))) + buttons(part)
    if msgtype == "text":
        text = str(part.get("content", ""))
        return e(" ".join(text.split())), f"<pre>{e(text)}</pre>"
    if msgtype == "oa":
        return oa(part, nonce, app_name)
    if msgtype == "link":
        body = f"<p><b>{e(part.get('title', ''))}</b></p><p>{e(part.get('text', ''))}</p>"
        body += _button("打开链接", str(part.get("messageUrl", "")))
        if is_web_url(str(part.get("picUrl", ""))):
            body = f'<img src="{e(part["picUrl"])}" alt="">' + body
        return e(part.get("title", "")), body
    if msgtype == "image":
        return "[图片]", _image(str(part.get("media_id", "")))
    if msgtype == "file":
        return "[文件]", file_link(str(part.get("media_id", "")), files or {})
    return f"[{e(msgtype)}]", f"<p>media_id {e(part.get('media_id', ''))}</p>"


def _image(media_id: str) -> str:
    """An uploaded image, served back by the sandbox at /media/<media_id>."""
    return f'<img class="media" src="/media/{e(quote(media_id, safe="@"))}" alt="图片 {e(media_id)}">'


def file_link(media_id: str, files: dict[str, tuple[str, int]]) -> str:
    name, size = files.get(media_id, (media_id, 0))
    href = f"/media/{e(quote(media_id, safe='@'))}"
    return (
        f'<a class="file" href="{href}" download="{e(name)}"><span class="file-icon">文件</span>'
        f'<span class="file-name">{e(name)}</span><span class="file-size">{e(_size(size))}</span></a>'
    )


def _size(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{max(1, round(size / 1024))} KB"


def buttons(card: dict[str, Any]) -> str:
    if card.get("single_title"):
        return _button(str(card["single_title"]), str(card.get("single_url", "")))
    listed = [_obj(b) for b in _list(card.get("btn_json_list"))]
    return "".join(_button(str(b.get("title", "")), str(b.get("action_url", ""))) for b in listed)


def _button(label: str, url: str) -> str:
    if is_web_url(url):
        attrs = f'class="button" href="{e(url)}" rel="noopener noreferrer" target="_blank"'
        return f"<a {attrs}>{e(label)}</a>"
    return f'<span class="button">{e(label)}</span>'


def oa(part: dict[str, Any], nonce: str = "", app_name: str = DEFAULT_APP_NAME) -> tuple[str, str]:
    """The OA card; its head shows the app's name, as DingTalk replaces `head.text` with it."""
    head, body = _obj(part.get("head")), _obj(part.get("body"))
    color = str(head.get("bgcolor", "FF1677FF"))[-6:]
    color = color.lower() if all(c in "0123456789abcdefABCDEF" for c in color) else "1677ff"
    # no style attribute: the page's CSP allows only nonce'd <style> elements
    out = [f'<style nonce="{e(nonce)}">.oa-{color}{{background:#{color}}}</style>']
    out.append(f'<div class="oa-card"><div class="oa-head oa-{color}">{e(app_name)}</div>')
    if body.get("title"):
        out.append(f'<div class="oa-title">{e(body["title"])}</div>')
    for row in [_obj(r) for r in _list(body.get("form"))][:6]:  # the phone shows six rows
        out.append(f'<div class="oa-form">{e(row.get("key", ""))}<b>{e(row.get("value", ""))}</b></div>')
    rich = _obj(body.get("rich"))
    if rich:
        out.append(f'<div class="rich">{e(rich.get("num", ""))} {e(rich.get("unit", ""))}</div>')
    if body.get("image"):
        out.append(_image(str(body["image"])))
    if body.get("content"):
        out.append(f'<p class="plain">{e(body["content"])}</p>')  # OA content is plain text
    if body.get("author"):
        out.append(f'<div class="oa-form">{e(body["author"])}</div>')
    out.append(_button("查看详情", str(part.get("message_url", ""))) + "</div>")
    return e(body.get("title", "") or head.get("text", "")), "".join(out)


def undelivered(tasks: list[dict[str, Any]], names: dict[str, str], userid: str | None) -> str:
    """Forbidden, failed and invalid recipients: what getsendresult reports, muted."""
    rows: list[str] = []
    for task in sorted(tasks, key=lambda t: t["at"], reverse=True):
        result, when = task["send_result"], local_time(task["at"])
        entries = [
            (f["userid"], f"{f['code']} " + FORBIDDEN_REASONS.get(f["code"], "forbidden"))
            for f in result["forbidden_list"]
        ]
        entries += [(u, "发送失败 failed (send again)") for u in result["failed_user_id_list"]]
        entries += [(u, "无效的 userid (invalid)") for u in result["invalid_user_id_list"]]
        for person, reason in entries:
            if userid is None or person == userid:
                who = f"{names.get(person, person)} ({person})"
                rows.append(f"<div>{e(when)} · task {e(task['task_id'])} · {e(who)} · {e(reason)}</div>")
        if userid is None and result["invalid_dept_id_list"]:
            depts = ", ".join(str(d) for d in result["invalid_dept_id_list"])
            rows.append(f"<div>{e(when)} · task {e(task['task_id'])} · 无效的部门 {e(depts)}</div>")
    if not rows:
        return ""
    listed = "".join(rows[:MAX_CARDS])
    return f'<h2 class="section">未送达 · not delivered</h2><div class="muted">{listed}</div>'


def _obj(value: Any) -> dict[str, Any]:
    """Message parts are whatever the sender put there: anything but an object reads as empty."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone(SHANGHAI).strftime("%m-%d %H:%M:%S")
    except ValueError:
        return iso
