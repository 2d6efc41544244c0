"""The sandbox is a local web server a page in the developer's browser can reach (issue 15 §6).

Every request here goes over real HTTP with http.client, so the test sets the hostile Host, Origin and
Content-Type headers a browser would send for a cross-site page or after DNS rebinding.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from dispatcher.sandbox import Sandbox, SandboxOptions

SEND = "/topapi/message/corpconversation/asyncsend_v2"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as sb:
        yield sb


def port(sandbox: Sandbox) -> int:
    return int(sandbox.url.rsplit(":", 1)[1])


def request(
    sandbox: Sandbox,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly the headers given (Host included, when the test sets one)."""
    conn = http.client.HTTPConnection("127.0.0.1", port(sandbox), timeout=5)
    try:
        given = headers or {}
        conn.putrequest(method, path, skip_host="Host" in given, skip_accept_encoding=True)
        for name, value in given.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def token(sandbox: Sandbox) -> str:
    path = "/gettoken?appkey=dingsandboxkey&appsecret=sandbox-secret"
    status, _, data = request(sandbox, "GET", path)
    assert status == 200
    return str(json.loads(data)["access_token"])


def send_body() -> bytes:
    msg = {"msgtype": "markdown", "markdown": {"title": "t", "text": "x"}}
    return json.dumps({"agent_id": 100000001, "userid_list": "user001", "msg": msg}).encode()


JSON = {"Content-Type": "application/json"}


# -- Host: DNS rebinding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path", [("GET", "/"), ("GET", "/_sandbox/messages"), ("GET", "/gettoken?appkey=a&appsecret=b")]
)
def test_a_foreign_host_header_is_refused_on_every_route(sandbox: Sandbox, method: str, path: str) -> None:
    status, _, data = request(sandbox, method, path, headers={"Host": f"rebind.example:{port(sandbox)}"})
    assert status == 403 and b"rebind.example" in data


def test_a_rebound_page_cannot_send_through_the_api(sandbox: Sandbox) -> None:
    hostile = {"Host": f"evil.example:{port(sandbox)}", **JSON}
    status, _, _ = request(sandbox, "POST", f"{SEND}?access_token={token(sandbox)}", send_body(), hostile)
    assert status == 403 and sandbox.messages() == []


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
def test_the_bound_address_and_localhost_are_accepted(sandbox: Sandbox, host: str) -> None:
    headers = {"Host": host.format(port=port(sandbox))}
    status, _, _ = request(sandbox, "GET", "/_sandbox/health", headers=headers)
    assert status == 200


@pytest.mark.parametrize("hosts", [[], ["127.0.0.1:{port}", "evil.example:{port}"], ["127.0.0.1:1"]])
def test_a_missing_doubled_or_wrong_port_host_is_refused(sandbox: Sandbox, hosts: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port(sandbox), timeout=5)
    try:
        conn.putrequest("GET", "/_sandbox/messages", skip_host=True)
        for host in hosts:
            conn.putheader("Host", host.format(port=port(sandbox)))
        conn.endheaders()
        assert conn.getresponse().status == 403
    finally:
        conn.close()


# -- state-changing requests: JSON only, same origin only --------------------------------------------


def test_options_posted_as_text_plain_are_refused_and_change_nothing(sandbox: Sandbox) -> None:
    body = json.dumps({"force_errcode": {"asyncsend_v2": 60011}}).encode()
    status, _, data = request(sandbox, "POST", "/_sandbox/options", body, {"Content-Type": "text/plain"})
    assert status == 415 and b"application/json" in data
    assert sandbox.options.force_errcode == {}


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data", ""])
def test_every_control_request_must_be_json(sandbox: Sandbox, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    for name in ("reset", "expire_tokens", "users", "options"):
        status, _, _ = request(sandbox, "POST", f"/_sandbox/{name}", b"{}", headers)
        assert status == 415, name


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1"])
def test_a_cross_origin_control_request_is_refused_even_as_json(sandbox: Sandbox, origin: str) -> None:
    body = json.dumps({"calls_per_second": 1}).encode()
    status, _, _ = request(sandbox, "POST", "/_sandbox/options", body, {**JSON, "Origin": origin})
    assert status == 403 and sandbox.options.calls_per_second == 20


def test_a_cross_origin_api_send_is_refused(sandbox: Sandbox) -> None:
    path = f"{SEND}?access_token={token(sandbox)}"
    status, _, _ = request(sandbox, "POST", path, send_body(), {**JSON, "Origin": "http://evil.example"})
    assert status == 403 and sandbox.messages() == []


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1:{port}", "http://localhost:{port}"])
def test_json_from_no_page_or_the_inbox_itself_is_accepted(sandbox: Sandbox, origin: str | None) -> None:
    headers: dict[str, Any] = dict(JSON)
    if origin:
        headers["Origin"] = origin.format(port=port(sandbox))
    body = json.dumps({"calls_per_second": 3}).encode()
    status, _, data = request(sandbox, "POST", "/_sandbox/options", body, headers)
    assert status == 200 and json.loads(data) == {"ok": True} and sandbox.options.calls_per_second == 3


def test_dingtalks_form_encoded_send_still_works_without_an_origin(sandbox: Sandbox) -> None:
    msg = json.dumps({"msgtype": "text", "text": {"content": "hi"}})
    form = f"agent_id=100000001&userid_list=user001&msg={msg}".encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, data = request(sandbox, "POST", f"{SEND}?access_token={token(sandbox)}", form, headers)
    assert status == 200 and json.loads(data)["errcode"] == 0


# -- response headers ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/_sandbox/messages", "/gettoken", "/nowhere"])
def test_every_answer_says_nosniff(sandbox: Sandbox, path: str) -> None:
    _, headers, _ = request(sandbox, "GET", path)
    assert headers["x-content-type-options"] == "nosniff"


def test_the_inbox_has_a_restrictive_csp_and_its_styles_carry_the_nonce(sandbox: Sandbox) -> None:
    oa = {"message_url": "https://x.cn", "head": {"bgcolor": "FFBBBBBB", "text": "h"}, "body": {"title": "t"}}
    msg = {"msgtype": "oa", "oa": oa}
    body = json.dumps({"agent_id": 100000001, "userid_list": "user001", "msg": msg}).encode()
    assert request(sandbox, "POST", f"{SEND}?access_token={token(sandbox)}", body, JSON)[0] == 200
    status, headers, data = request(sandbox, "GET", "/")
    page = data.decode()
    csp = headers["content-security-policy"]
    assert status == 200 and "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "script-src" not in csp  # no script may run at all
    nonce = re.search(r"style-src 'nonce-([^']+)'", csp)
    assert nonce is not None
    styles = re.findall(r"<style([^>]*)>", page)
    assert len(styles) >= 2 and all(f'nonce="{nonce.group(1)}"' in attrs for attrs in styles)
    assert " style=" not in page and "<script" not in page  # an attribute no nonce could allow
    assert request(sandbox, "GET", "/")[1]["content-security-policy"] != csp  # a fresh nonce each time
