"""Wire-level facts of the DingTalk client, checked on a scripted HTTP server that records the
raw bytes it receives and answers what a test tells it to (the sandbox has no per-IP block,
and cannot answer slowly on a chosen call)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dispatcher.dingtalk.client import Credentials, DingTalkClient, RetryPolicy
from dispatcher.dingtalk.message import markdown_msg, msg_bytes
from dispatcher.dingtalk.retry import Backoff
from dispatcher.errors import DeliveryError
from tests.feature_kit import Scripted, serving

CREDS = Credentials("dingsandboxkey", "sandbox-secret", 100000001)
FAST = RetryPolicy(
    max_attempts=8, max_total_seconds=20.0, base_delay=0.01, max_delay=0.05, throttle_min_delay=0.05
)
MSG = markdown_msg("每日销售", "### 每日销售  \n  华东 **1,299.75**")


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    yield from serving(Scripted())


def scripted_client(server: Scripted, **kw: Any) -> DingTalkClient:
    kw.setdefault("retry", FAST)
    return DingTalkClient(CREDS, base_url=server.url, **kw)


def test_body_on_the_wire_is_compact_utf8_so_its_msg_size_is_msg_bytes(scripted: Scripted) -> None:
    with scripted_client(scripted) as client:
        client.send(MSG, userids=["user001"], receipts=False)

    sent = scripted.seen[-1]
    assert sent["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert "每日销售".encode() in sent["body"], "Chinese must not be \\u-escaped"
    msg_text = json.dumps(MSG, ensure_ascii=False, separators=(",", ":")).encode()
    assert msg_text in sent["body"] and len(msg_text) == msg_bytes(MSG)
    assert json.loads(sent["body"]) == {"agent_id": 100000001, "userid_list": "user001", "msg": MSG}


def test_a_retry_resends_the_byte_identical_body(scripted: Scripted) -> None:
    scripted.answers += [
        (500, b"<html>busy</html>", 0.0),
        (200, b'{"errcode":-1,"errmsg":"busy"}', 0.0),
    ]
    with scripted_client(scripted) as client:
        client.send(MSG, userids=["user001", "user002"], receipts=False)

    sends = [s["body"] for s in scripted.seen if "asyncsend_v2" in s["path"]]
    assert len(sends) == 3 and sends[0] == sends[1] == sends[2]


def test_the_per_ip_block_is_waited_out(scripted: Scripted) -> None:
    scripted.answers += [
        (200, b"<html>blocked</html>", 0.0),
        (200, b'{"status":1111,"wait":0.3}', 0.0),
    ]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    with scripted_client(scripted, sleep=sleep) as client:
        result = client.send(MSG, userids=["user001"], receipts=False)
    assert result.task_ids == [7]
    assert slept[-1] >= 0.3


def test_a_read_timeout_is_retried_then_reported_without_the_url(scripted: Scripted) -> None:
    scripted.answers += [(200, b'{"errcode":0,"task_id":1}', 1.0)] * 2
    retry = RetryPolicy(max_attempts=2, max_total_seconds=5, base_delay=0.01, max_delay=0.01)
    with pytest.raises(DeliveryError) as caught:
        scripted_client(scripted, retry=retry, timeout=(1.0, 0.2)).send(MSG, userids=["u"])
    assert caught.value.retryable and "Timeout" in str(caught.value)
    assert "tok-scripted-1" not in str(caught.value) and caught.value.__context__ is None


def test_calls_reuse_one_pooled_connection(scripted: Scripted) -> None:
    with scripted_client(scripted) as client:
        client.send(MSG, userids=["a"], receipts=False)
        client.send(MSG, userids=["b"], receipts=False)
    assert len({s["port"] for s in scripted.seen}) == 1


def test_backoff_is_bounded_by_attempts_and_total_time() -> None:
    now = [0.0]
    policy = RetryPolicy(max_attempts=4, max_total_seconds=3.0, base_delay=1.0, max_delay=2.0)
    backoff = Backoff(policy, lambda: now[0])
    delays = []
    while (d := backoff.next_delay()) is not None:
        delays.append(d)
    assert len(delays) == 3 and all(0 <= d <= 2.0 for d in delays)

    slow = Backoff(policy, lambda: now[0])
    now[0] = 2.5
    assert slow.next_delay(min_delay=1.0) is None, "waiting would pass max_total_seconds"
