"""The sandbox inbox shows each notification as a phone does, checked in the HTML served over real HTTP.

A phone-width frame per message; the title is the chat list's preview line, shown once, never again
above a body that starts with its own heading.
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


def cards(page: str) -> list[str]:
    return re.findall(r'<article class="card[^"]*">.*?</article>', page, re.S)


def test_each_message_sits_in_a_phone_width_frame(sandbox: Sandbox) -> None:
    send(sandbox, {"msgtype": "markdown", "markdown": {"title": "日报", "text": "### 日报\n正文"}})
    send(sandbox, {"msgtype": "text", "text": {"content": "你好"}})
    page = requests.get(f"{sandbox.url}/", timeout=5).text
    assert len(cards(page)) == 2
    assert re.search(r"\.card \{[^}]*max-width: 375px", page)
    assert re.search(r'<meta name="viewport" content="width=device-width', page)


def test_the_title_is_the_conversation_preview_shown_once(sandbox: Sandbox) -> None:
    text = "### 华东区销售日报\n**合计** 12"
    send(sandbox, {"msgtype": "markdown", "markdown": {"title": "预览标题X", "text": text}})
    page = requests.get(f"{sandbox.url}/", timeout=5).text
    (card,) = cards(page)
    assert card.count("预览标题X") == 1
    preview = re.search(r'<div class="chat">.*?<div class="line">(.*?)</div>', card, re.S)
    assert preview is not None and preview.group(1) == "预览标题X"
    bubble = card.split('<div class="bubble">', 1)[1]
    assert bubble.startswith("<h3>华东区销售日报</h3>") and "预览标题X" not in bubble


def test_an_action_cards_title_is_the_preview_and_its_button_stays_in_the_bubble(sandbox: Sandbox) -> None:
    card_msg = {
        "title": "告警Y",
        "markdown": "### 告警\n退款率高",
        "single_title": "查看",
        "single_url": "https://x.cn",
    }
    send(sandbox, {"msgtype": "action_card", "action_card": card_msg})
    (card,) = cards(requests.get(f"{sandbox.url}/", timeout=5).text)
    assert card.count("告警Y") == 1 and '<div class="line">告警Y</div>' in card
    assert re.search(r'<div class="bubble">.*<a class="button" href="https://x.cn"', card, re.S)


def test_who_when_and_the_read_state_sit_below_the_phone_and_unread_is_marked(sandbox: Sandbox) -> None:
    send(sandbox, {"msgtype": "markdown", "markdown": {"title": "t", "text": "x"}})
    (card,) = cards(requests.get(f"{sandbox.url}/", timeout=5).text)
    assert 'class="card unread"' in card
    meta = card.split('<div class="meta">', 1)[1]
    assert "user001" in meta and "未读 unread" in meta and "markdown" in meta
    requests.get(f"{sandbox.url}/", params={"userid": "user001"}, timeout=5)
    (card,) = cards(requests.get(f"{sandbox.url}/", timeout=5).text)
    assert 'class="card"' in card and "已读 read" in card


def test_the_summary_counts_notifications_in_the_singular_and_plural(sandbox: Sandbox) -> None:
    send(sandbox, {"msgtype": "text", "text": {"content": "一"}})
    assert "· 1 notification ·" in requests.get(f"{sandbox.url}/", timeout=5).text
    send(sandbox, {"msgtype": "text", "text": {"content": "二"}})
    assert "· 2 notifications ·" in requests.get(f"{sandbox.url}/", timeout=5).text
