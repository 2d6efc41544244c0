"""The sandbox inbox shows each person's 工作通知 conversation as a phone does, checked in the HTML
served over real HTTP.

A phone-width frame per person, its messages oldest first, each under the app's name; the title is
the chat list's preview line, shown once, never again above a body that starts with its own heading.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from dispatcher.sandbox import Sandbox, SandboxOptions

SEND = "/topapi/message/corpconversation/asyncsend_v2"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


def send(sandbox: Sandbox, msg: dict[str, Any], userids: str = "user001") -> None:
    http = requests.Session()
    params = {"appkey": "dingsandboxkey", "appsecret": "sandbox-secret"}
    token = http.get(f"{sandbox.url}/gettoken", params=params, timeout=5).json()["access_token"]
    body = {"agent_id": 100000001, "userid_list": userids, "msg": msg}
    reply = http.post(f"{sandbox.url}{SEND}", params={"access_token": token}, json=body, timeout=5).json()
    assert reply["errcode"] == 0, reply


def phones(page: str) -> list[str]:
    return re.findall(r'<article class="phone"[^>]*>.*?</article>', page, re.S)


def messages(phone: str) -> list[str]:
    pattern = r'<div class="msg[^"]*" data-id="\d+">.*?<div class="meta">.*?</div></div>'
    return re.findall(pattern, phone, re.S)


def test_each_persons_messages_sit_in_one_phone_width_frame(sandbox: Sandbox) -> None:
    send(sandbox, {"msgtype": "markdown", "markdown": {"title": "日报", "text": "### 日报\n正文"}})
    send(sandbox, {"msgtype": "text", "text": {"content": "你好"}})
    send(sandbox, {"msgtype": "text", "text": {"content": "王芳的"}}, userids="user002")
    page = requests.get(f"{sandbox.url}/", timeout=5).text
    user002, user001 = phones(page)  # the chat list's order: the latest conversation first
    assert 'data-userid="user001"' in user001 and len(messages(user001)) == 2
    assert 'data-userid="user002"' in user002 and len(messages(user002)) == 1
    assert re.search(r"\.phone \{[^}]*max-width: 375px", page)
    assert re.search(r'<meta name="viewport" content="width=device-width', page)


def test_a_conversation_shows_the_oldest_message_at_the_top(sandbox: Sandbox) -> None:
    for word in ("一", "二", "三"):
        send(sandbox, {"msgtype": "text", "text": {"content": f"第{word}条"}})
    (phone,) = phones(requests.get(f"{sandbox.url}/", timeout=5).text)
    bodies = [re.search(r"<pre>(.*?)</pre>", m).group(1) for m in messages(phone)]  # type: ignore[union-attr]
    assert bodies == ["第一条", "第二条", "第三条"]
    ids = [int(i) for i in re.findall(r'data-id="(\d+)"', phone)]
    assert ids == sorted(ids)
    preview = re.search(r'<div class="line">(.*?)</div>', phone)
    assert preview is not None and preview.group(1) == "第三条", "the chat list previews the newest"


def test_every_message_shows_the_apps_name_and_an_oa_card_shows_it_in_its_head(sandbox: Sandbox) -> None:
    send(sandbox, {"msgtype": "markdown", "markdown": {"title": "日报", "text": "### 日报"}})
    oa = {"message_url": "https://x.cn", "head": {"bgcolor": "FFE53935", "text": "头部文字"},
          "body": {"title": "每日销售日报", "content": "正文"}}  # fmt: skip
    send(sandbox, {"msgtype": "oa", "oa": oa})
    (phone,) = phones(requests.get(f"{sandbox.url}/", timeout=5).text)
    markdown, card = messages(phone)
    assert '<div class="app"><span class="app-icon">报</span>报表助手</div>' in markdown
    assert '<div class="oa-head oa-e53935">报表助手</div>' in card and "头部文字" not in card
    assert card.count("报表助手") == 1, "the head carries the app's name: no second line for it"
    sandbox.set_options(app_name="销售播报")
    (phone,) = phones(requests.get(f"{sandbox.url}/", timeout=5).text)
    assert '<div class="oa-head oa-e53935">销售播报</div>' in phone and "报表助手" not in phone


def test_the_title_is_the_conversation_preview_shown_once(sandbox: Sandbox) -> None:
    text = "### 华东区销售日报\n**合计** 12"
    send(sandbox, {"msgtype": "markdown", "markdown": {"title": "预览标题X", "text": text}})
    page = requests.get(f"{sandbox.url}/", timeout=5).text
    (phone,) = phones(page)
    assert phone.count("预览标题X") == 1
    preview = re.search(r'<div class="chat">.*?<div class="line">(.*?)</div>', phone, re.S)
    assert preview is not None and preview.group(1) == "预览标题X"
    bubble = phone.split('<div class="bubble">', 1)[1]
    assert bubble.split("</div>", 1)[1].startswith("<h3>华东区销售日报</h3>") and "预览标题X" not in bubble


def test_an_action_cards_title_is_the_preview_and_its_button_stays_in_the_bubble(sandbox: Sandbox) -> None:
    card_msg = {
        "title": "告警Y",
        "markdown": "### 告警\n退款率高",
        "single_title": "查看",
        "single_url": "https://x.cn",
    }
    send(sandbox, {"msgtype": "action_card", "action_card": card_msg})
    (phone,) = phones(requests.get(f"{sandbox.url}/", timeout=5).text)
    assert phone.count("告警Y") == 1 and '<div class="line">告警Y</div>' in phone
    assert re.search(r'<div class="bubble">.*<a class="button" href="https://x.cn"', phone, re.S)


def test_who_when_and_the_read_state_sit_below_and_unread_is_counted(sandbox: Sandbox) -> None:
    send(sandbox, {"msgtype": "markdown", "markdown": {"title": "t", "text": "x"}})
    (phone,) = phones(requests.get(f"{sandbox.url}/", timeout=5).text)
    (msg,) = messages(phone)
    assert 'class="msg unread"' in msg and '<span class="badge">1</span>' in phone
    meta = msg.split('<div class="meta">', 1)[1]
    assert "未读 unread" in meta and "markdown" in meta
    assert '<div class="owner">张伟 (user001) 的手机 · 1 notification</div>' in phone
    requests.get(f"{sandbox.url}/", params={"userid": "user001"}, timeout=5)
    (phone,) = phones(requests.get(f"{sandbox.url}/", timeout=5).text)
    assert 'class="msg"' in phone and "已读 read" in phone and "badge" not in phone


def test_the_summary_counts_notifications_in_the_singular_and_plural(sandbox: Sandbox) -> None:
    send(sandbox, {"msgtype": "text", "text": {"content": "一"}})
    assert "· 1 notification ·" in requests.get(f"{sandbox.url}/", timeout=5).text
    send(sandbox, {"msgtype": "text", "text": {"content": "二"}})
    assert "· 2 notifications ·" in requests.get(f"{sandbox.url}/", timeout=5).text


def post(sandbox: Sandbox, body: dict[str, Any]) -> None:
    answer = requests.post(f"{sandbox.url}/robot/send", params={"access_token": "t1"}, json=body, timeout=5)
    assert answer.json()["errcode"] == 0, answer.text


def group_chats(page: str) -> list[str]:
    return re.findall(r'<article class="phone group"[^>]*>.*?</article>', page, re.S)


def test_a_robots_group_chat_shows_its_posts_oldest_first_and_the_title_only_as_the_preview(
    sandbox: Sandbox,
) -> None:
    sandbox.add_robot("sales-group", "t1")
    for n in (1, 2):
        post(
            sandbox,
            {"msgtype": "markdown", "markdown": {"title": f"日报{n}", "text": f"### 日报{n}\n正文{n}"}},
        )
    (chat,) = group_chats(requests.get(f"{sandbox.url}/", timeout=5).text)
    assert chat.index("正文1") < chat.index("正文2")
    assert '<div class="line">日报2</div>' in chat, "the chat list previews the newest post's title"
    assert chat.count("日报1") == 1 and chat.count("日报2") == 2, "the heading, plus the preview"
    assert '<div class="owner">群 · sales-group (2)</div>' in chat


def test_a_mention_shows_the_directorys_name_or_else_the_number_highlighted(sandbox: Sandbox) -> None:
    sandbox.add_robot("sales-group", "t1")
    text = "@13900000002 @13999999999 @user003 @13800000000请看"
    at = {"atMobiles": ["13900000002", "13999999999", "13800000000"], "atUserIds": ["user003"]}
    post(sandbox, {"msgtype": "text", "text": {"content": text}, "at": at})
    (chat,) = group_chats(requests.get(f"{sandbox.url}/", timeout=5).text)
    mentions = re.findall(r'<span class="mention">(.*?)</span>', chat)
    assert mentions == ["@王芳", "@13999999999", "@李娜", "@王建国"], "unknown to the directory: as written"


def test_a_mention_the_at_block_does_not_list_stays_plain_text(sandbox: Sandbox) -> None:
    sandbox.add_robot("sales-group", "t1")
    post(sandbox, {"msgtype": "text", "text": {"content": "@13900000002 看"}})
    (chat,) = group_chats(requests.get(f"{sandbox.url}/", timeout=5).text)
    assert "mention" not in chat and "@13900000002 看" in chat
