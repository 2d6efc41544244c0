"""No DingTalk or robot call follows a redirect (issue 22, item 7).

A real local server answers 307 or 302 pointing at a second real server, which would accept
anything. Nothing may reach that second server, the run must not count as sent, and the error
names where the redirect pointed, without its query string.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dispatcher.dingtalk.client import Credentials, DingTalkClient
from dispatcher.dingtalk.retry import RetryPolicy
from dispatcher.errors import DeliveryError
from dispatcher.robot.client import RobotClient, RobotPacer
from dispatcher.store.robotsends import RobotSends
from tests.feature_kit import SANDBOX_APP, run_at, services, serving

TOKEN = "tok-redirect-4d2a"
LURE = "lure-9f8e7d"  # in the redirect's query string: must never be shown
FIRE = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
CREDS = Credentials("dingsandboxkey", "sandbox-secret", 100000001)


class Recorder(ThreadingHTTPServer):
    """A server on 127.0.0.1 that records every request; `redirect` set: answers it with Location."""

    daemon_threads = True

    def __init__(self, redirect: tuple[int, str] | None = None, spare_gettoken: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.redirect = redirect
        self.spare_gettoken = spare_gettoken  # gettoken answers normally; every other call redirects
        self.seen: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer()

    def _answer(self) -> None:
        self.server.seen.append(self.path)
        redirect = self.server.redirect
        if redirect is None or (self.server.spare_gettoken and self.path.startswith("/gettoken")):
            body = json.dumps({"errcode": 0, "errmsg": "ok", "access_token": "t-1", "expires_in": 7200,
                               "task_id": 1}).encode()  # fmt: skip
            self.send_response(200)
        else:
            body = b'{"errcode":0,"errmsg":"ok"}'  # a success body: it must not count either
            self.send_response(redirect[0])
            self.send_header("Location", redirect[1])
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def target() -> Iterator[Recorder]:
    yield from serving(Recorder())


@pytest.fixture(params=[307, 302])
def status(request: pytest.FixtureRequest) -> int:
    return int(request.param)


def redirector(target: Recorder, status: int, *, spare_gettoken: bool = False) -> Iterator[Recorder]:
    location = f"{target.url}/collect/robot?access_token={LURE}&x=1"
    return serving(Recorder((status, location), spare_gettoken))


CONFIG = (
    SANDBOX_APP
    + """\
  leads: {{userids: [manager4974]}}
robots:
  group: {{webhook: '{api_base}/robot/send?access_token={token}'}}
reports:
  daily:
    title: 销售日报
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT 1 AS n"
{channel}
"""
)


def run_report(tmp_path: Path, base: str, channel: str) -> tuple[str, str]:
    """Run the report once through the runner; its end state and recorded error."""
    (tmp_path / "shop.db").touch()
    path = tmp_path / "reports.yaml"
    path.write_text(CONFIG.format(api_base=base, token=TOKEN, channel=channel), encoding="utf-8")
    with services(path, robots=lambda state: RobotClient(RobotPacer(RobotSends(state)))) as svc:
        end = run_at(svc, "daily", FIRE)
        [recorded] = svc.ledger.history("daily")
        assert recorded.batches.get("accepted", []) == []
        return end, recorded.error or ""


def assert_named_masked(error: str, target: Recorder, status: int) -> None:
    assert f"HTTP {status}" in error and f"{target.url}/collect/robot" in error, error
    assert LURE not in error and "x=1" not in error and TOKEN not in error, error


def test_a_robot_post_answered_by_a_redirect_reaches_nothing_and_is_not_posted(
    tmp_path: Path, target: Recorder, status: int
) -> None:
    for server in redirector(target, status):
        end, error = run_report(tmp_path, server.url, "    robots: [group]")
        assert [p.split("?")[0] for p in server.seen] == ["/robot/send"], "one post, no retry of a redirect"
    assert target.seen == []
    assert end == "failed"
    assert_named_masked(error, target, status)


@pytest.mark.parametrize("spare_gettoken", [False, True], ids=["gettoken", "send"])
def test_an_app_call_answered_by_a_redirect_reaches_nothing_and_is_not_sent(
    tmp_path: Path, target: Recorder, status: int, spare_gettoken: bool
) -> None:
    for server in redirector(target, status, spare_gettoken=spare_gettoken):
        end, error = run_report(tmp_path, server.url, "    to: [leads]")
        assert server.seen, "the redirecting server was asked"
    assert target.seen == []
    assert end == "failed"
    assert_named_masked(error, target, status)


@pytest.mark.parametrize("call", ["get_user", "media_id", "get_send_result"])
def test_no_client_call_follows_a_redirect(target: Recorder, status: int, call: str) -> None:
    for server in redirector(target, status, spare_gettoken=True):
        fast = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01)
        with DingTalkClient(CREDS, base_url=server.url, retry=fast) as client:
            with pytest.raises(DeliveryError) as caught:
                if call == "get_user":
                    client.get_user("manager4974")
                elif call == "media_id":
                    client.media_id("file", "rows.zip", b"PK")
                else:
                    client.get_send_result(7)
    assert target.seen == []
    assert_named_masked(caught.value.message, target, status)
