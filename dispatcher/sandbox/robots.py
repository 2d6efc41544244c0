"""The sandbox's group robots: `POST /robot/send?access_token=…` under the real robot API's rules.

[custom-robots-send-group-messages, customize-robot-security-settings] A known access_token, then
the signature (`timestamp` within an hour, `sign` = HMAC-SHA256 of `timestamp\\nsecret`), then the
size (a body over 20,000 bytes answers 460101), then the keyword (in the title or the text), then
the limit: at most 20 messages a minute, after which the robot is throttled for 10 minutes
(410100). `msgUuid` makes a resend a no-op. Answers are `{"errcode": …, "errmsg": …}`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from dispatcher.errors import DispatcherError
from dispatcher.robot.errors import MAX_BODY_BYTES
from dispatcher.robot.message import keyword_text
from dispatcher.robot.webhook import sign

MSGTYPES = {"text": "content", "markdown": "text", "actionCard": "text", "link": "text", "feedCard": None}
TIMESTAMP_SKEW_MS = 3600 * 1000


@dataclass
class _Robot:
    name: str
    secret: str | None
    keyword: str | None
    sent: deque[float] = field(default_factory=deque)
    throttled_until: float = 0.0
    uuids: set[str] = field(default_factory=set)
    fail_next: list[int] = field(default_factory=list)  # errcodes to answer, one per call


class RobotRoom:
    def __init__(
        self,
        *,
        limit: int = 20,
        window: float = 60.0,
        throttle: float = 600.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.limit, self.window, self.throttle = limit, window, throttle
        self._now = now
        self._lock = threading.Lock()
        self._robots: dict[str, _Robot] = {}
        self._messages: list[dict[str, Any]] = []
        self._calls: list[dict[str, Any]] = []

    def add(self, name: str, token: str, secret: str | None = None, keyword: str | None = None) -> None:
        with self._lock:
            self._robots[token] = _Robot(name, secret, keyword)

    def add_all(self, robots: list[Any]) -> None:
        """`POST /_sandbox/robots`: `[{"name", "token", "secret"?, "keyword"?}, ...]`."""
        for robot in robots:
            if not isinstance(robot, dict) or not robot.get("name") or not robot.get("token"):
                raise DispatcherError(
                    "each robot needs a name and a token (and maybe a secret and a keyword)"
                )
            self.add(str(robot["name"]), str(robot["token"]), robot.get("secret"), robot.get("keyword"))

    def fail_next(self, name: str, *errcodes: int) -> None:
        with self._lock:
            for robot in self._robots.values():
                if robot.name == name:
                    robot.fail_next.extend(errcodes)

    def messages(self, robot: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._messages if robot is None or m["robot"] == robot]

    def calls(self) -> list[dict[str, Any]]:
        """Every request, answered or refused; the token and the signature are not kept."""
        with self._lock:
            return [dict(c) for c in self._calls]

    def send(
        self, query: dict[str, str], body: dict[str, Any] | None, size: int | None = None
    ) -> dict[str, Any]:
        """DingTalk's answer to one request; `size` is the body's bytes on the wire (else measured)."""
        if size is None:
            size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        answer = self._answer(query, body, size)
        robot = self._robots.get(query.get("access_token", ""))
        with self._lock:
            self._calls.append({"robot": robot.name if robot else None, "body": body,
                                "signed": "sign" in query, "errcode": answer["errcode"]})  # fmt: skip
        return answer

    def _answer(self, query: dict[str, str], body: dict[str, Any] | None, size: int) -> dict[str, Any]:
        with self._lock:
            robot = self._robots.get(query.get("access_token", ""))
            if robot is None:
                return _answer(400101, "access_token不存在")
            now = self._now()
            refusal = self._refusal(robot, query, body, now, size)
            if refusal is not None:
                return refusal
            assert body is not None
            uuid = str(body.get("msgUuid") or "")
            if uuid and uuid in robot.uuids:
                return _answer(0, "ok")  # the same msgUuid again: posted once
            robot.sent.append(now)
            if len(robot.sent) > self.limit:
                robot.throttled_until = now + self.throttle
                return _answer(410100, "send too fast, exceed 20 times per minute")
            robot.uuids.add(uuid)
            self._messages.append(_message(robot.name, body, now, len(self._messages) + 1))
            return _answer(0, "ok")

    def _refusal(
        self, robot: _Robot, query: dict[str, str], body: dict[str, Any] | None, now: float, size: int
    ) -> dict[str, Any] | None:
        while robot.sent and robot.sent[0] <= now - self.window:
            robot.sent.popleft()
        if robot.fail_next:
            return _answer(robot.fail_next.pop(0), "forced by the sandbox")
        if now < robot.throttled_until:
            return _answer(410100, "send too fast, exceed 20 times per minute")
        if robot.secret and (problem := _signature_problem(robot.secret, query, now)):
            return _answer(310000, problem)
        if body is None or not isinstance(body.get("msgtype"), str):
            return _answer(40035, "缺少参数 json")
        kind = body["msgtype"]
        if kind not in MSGTYPES:
            return _answer(400105, "不支持的消息类型")
        if size > MAX_BODY_BYTES:
            return _answer(460101, f"message too big: {size} bytes, at most {MAX_BODY_BYTES}")
        if robot.keyword and robot.keyword not in keyword_text(body):
            return _answer(310000, "关键词不匹配 (keywords not in content)")
        return None


def _signature_problem(secret: str, query: dict[str, str], now: float) -> str | None:
    try:
        timestamp = int(query.get("timestamp", ""))
    except ValueError:
        return "缺少 timestamp (timestamp missing)"
    if abs(now * 1000 - timestamp) > TIMESTAMP_SKEW_MS:
        return "timestamp 无效 (invalid timestamp: more than an hour from the server's clock)"
    # parse_qs decoded the query once: what is left is the base64 that `sign` URL-encodes.
    if query.get("sign", "") != unquote_plus(sign(secret, timestamp)):
        return "签名不匹配 (sign not match)"
    return None


def _message(name: str, body: dict[str, Any], now: float, number: int) -> dict[str, Any]:
    kind = body["msgtype"]
    part = body.get(kind) or {}
    at = body.get("at") or {}
    return {
        "id": number,
        "robot": name,
        "msgtype": kind,
        "title": part.get("title", "") if isinstance(part, dict) else "",
        "text": part.get(MSGTYPES[kind] or "", "") if isinstance(part, dict) else "",
        "at": at,
        "msgUuid": body.get("msgUuid"),
        "body": body,
        "at_time": now,
    }


def _answer(errcode: int, errmsg: str) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": errmsg}
