"""A local DingTalk-compatible server: the real API's shapes and rules over real HTTP, on 127.0.0.1.

    with Sandbox(SandboxOptions(token_ttl=2.0), port=0) as sandbox:
        requests.get(f"{sandbox.url}/gettoken", params={"appkey": ..., "appsecret": ...})

Besides DingTalk's endpoints it serves the inbox page at `/` and test hooks under `/_sandbox/`.
It binds to loopback only: it holds an app secret and hands out tokens.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from dispatcher.errors import DispatcherError
from dispatcher.sandbox.attach import DEFAULT_PORT, about, banner
from dispatcher.sandbox.engine import Engine
from dispatcher.sandbox.inbox import render_page
from dispatcher.sandbox.inbox_groups import with_groups
from dispatcher.sandbox.media import parse_multipart
from dispatcher.sandbox.media import summary as media_summary
from dispatcher.sandbox.options import SandboxOptions
from dispatcher.sandbox.robots import RobotRoom

__all__ = ["Sandbox", "SandboxOptions", "serve_forever"]

log = logging.getLogger("dispatcher.sandbox")

ROUTES = {
    "/gettoken": "gettoken",
    "/topapi/v2/user/getbymobile": "getbymobile",
    "/topapi/v2/user/get": "user_get",
    "/topapi/message/corpconversation/asyncsend_v2": "asyncsend_v2",
    "/topapi/message/corpconversation/getsendprogress": "getsendprogress",
    "/topapi/message/corpconversation/getsendresult": "getsendresult",
    "/topapi/message/corpconversation/recall": "recall",
    "/media/upload": "media_upload",
}
LOOPBACK = {"127.0.0.1", "localhost"}
SECRET_IN_TEXT = re.compile(r"(access_token|appsecret)=[^&\s\"']*", re.IGNORECASE)
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
ERROR_500 = b"<html><head><title>500 Internal Server Error</title></head>\n<body><h1>500</h1></body></html>"


def redact(text: str) -> str:
    return SECRET_IN_TEXT.sub(r"\1=***", text)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: Engine, robots: RobotRoom | None = None) -> None:
        self.engine = engine
        self.robots = robots or RobotRoom()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("sandbox: connection error from %s", client_address[0], exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a pooled client expects
    server: _Server

    def setup(self) -> None:
        super().setup()
        # headers and body go out as two writes; without this, Nagle + delayed ACK add ~40 ms a call
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("sandbox: %s", redact(format % args))

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        log.warning("sandbox: %s", redact(format % args))

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the client went away, or a reset fault closed the socket

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        refused = refusal(self.headers, method, url.path, self.server.server_address[1])
        if refused is not None:
            status, reason = refused
            log.warning("sandbox: refused %s %s: %s", method, url.path, reason)
            self._json({"ok": False, "errcode": status, "errmsg": reason, "error": reason}, status=status)
        elif url.path == "/robot/send" and method == "POST":
            body = parse_body(raw, self.headers.get("Content-Type", ""))
            self._json(self.server.robots.send(query, body, size=len(raw)))
        elif url.path in ROUTES:
            self._api(ROUTES[url.path], method, url.path, query, raw)
        elif url.path.startswith("/_sandbox/"):
            self._control(method, url.path.removeprefix("/_sandbox/"), query, raw)
        elif url.path == "/" and method == "GET":
            self._inbox(query.get("userid") or None)
        elif url.path.startswith("/media/") and method == "GET":
            self._medium(url.path.removeprefix("/media/"))
        else:
            self._json({"errcode": 404, "errmsg": "请求的URI地址不存在"}, status=404)

    # -- DingTalk's API ----------------------------------------------------------------------
    def _api(self, endpoint: str, method: str, path: str, query: dict[str, Any], raw: bytes) -> None:
        engine = self.server.engine
        content_type = self.headers.get("Content-Type", "")
        body = parse_multipart(raw, content_type) if endpoint == "media_upload" else None
        body = body if body is not None else parse_body(raw, content_type)
        logged = media_summary(body) if endpoint == "media_upload" else body  # a file's size, not its bytes
        if engine.options.latency > 0:
            time.sleep(engine.options.latency)
        fault = engine.fault(endpoint)
        if fault == "reset":
            engine.record(endpoint, method, path, query, logged, None, None)
            self._reset()
        elif fault == "fail":
            engine.record(endpoint, method, path, query, logged, 500, None)
            self._send(500, ERROR_500, "text/html; charset=utf-8")
        else:
            answer = engine.call(endpoint, method, query, body)
            sub_code = _sub_code(answer)
            engine.record(endpoint, method, path, query, logged, 200, answer["errcode"], sub_code)
            self._json(answer)

    def _reset(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- /_sandbox/* and the inbox -------------------------------------------------------------
    def _control(self, method: str, name: str, query: dict[str, Any], raw: bytes) -> None:
        engine = self.server.engine
        readers: dict[str, Callable[[], Any]] = {
            "health": lambda: {"ok": True},
            "about": lambda: about(engine.options, f"http://127.0.0.1:{self.server.server_address[1]}"),
            "messages": lambda: engine.messages(query.get("userid") or None),
            "calls": lambda: engine.calls(query.get("endpoint") or None),
            "tasks": engine.tasks,
            "robot_messages": lambda: self.server.robots.messages(query.get("robot") or None),
        }
        writers: dict[str, Callable[[Any], Any]] = {
            "reset": lambda _: engine.reset(),
            "expire_tokens": lambda _: engine.expire_tokens(),
            "options": lambda body: engine.set_options(_expect(body, dict)),
            "users": lambda body: engine.add_users(_expect(body, list)),
            "robots": lambda body: self.server.robots.add_all(_expect(body, list)),
        }
        if method == "GET" and name in readers:
            return self._json(readers[name]())
        if method == "POST" and name in writers:
            try:
                writers[name](json.loads(raw or b"null"))
            except (ValueError, DispatcherError) as exc:
                return self._json({"ok": False, "error": str(exc)}, status=400)
            return self._json({"ok": True})
        known = name in readers or name in writers
        return self._json(
            {"ok": False, "error": f"no {method} /_sandbox/{name}"}, status=405 if known else 404
        )

    def _inbox(self, userid: str | None) -> None:
        engine = self.server.engine
        messages, tasks, names = engine.inbox_snapshot()
        nonce = secrets.token_urlsafe(16)
        app_name = engine.options.app_name
        page = render_page(messages, tasks, names, userid, nonce, engine.media_files(), app_name)
        page = with_groups(page, self.server.robots.messages(), engine.mention_names())
        if userid:
            engine.mark_read(userid, max((m["id"] for m in messages), default=0))
        headers = {"Content-Security-Policy": inbox_policy(nonce), "X-Frame-Options": "DENY"}
        self._send(200, page.encode("utf-8"), "text/html; charset=utf-8", headers)

    def _medium(self, media_id: str) -> None:
        """An uploaded file, served back: the inbox shows images and links files from here."""
        medium = self.server.engine.medium(unquote(media_id))
        if medium is None:
            return self._json({"errcode": 40007, "errmsg": "不合法的媒体文件id"}, status=404)
        # a download, never rendered as a page of this origin
        disposition = f"attachment; filename*=UTF-8''{quote(medium.name)}"
        headers = {"Content-Disposition": disposition} if medium.kind != "image" else {}
        self._send(200, medium.content, medium.content_type(), headers)

    # -- writing -------------------------------------------------------------------------------
    def _json(self, payload: Any, status: int = 200) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send(status, data, "application/json;charset=utf-8")

    def _send(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in {**SAFE_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def allowed_hosts(port: int) -> set[str]:
    """The `Host` values that name this server; anything else is DNS rebinding or a mistake."""
    hosts = {f"{name}:{port}" for name in LOOPBACK}
    return hosts | (LOOPBACK if port == 80 else set())


def refusal(headers: Message, method: str, path: str, port: int) -> tuple[int, str] | None:
    """(status, reason) for a request a web page in the developer's browser could have made, else None.

    A page on another site can make the browser send requests here, and through DNS rebinding read
    the answers [issue 15 §6]: so the Host must name this server on every request, a state-changing
    request must come from no page or this one (Origin), and control requests must be JSON, which a
    cross-site form cannot send without a CORS preflight this server never grants.
    """
    hosts = allowed_hosts(port)
    named = headers.get_all("Host") or []
    if len(named) != 1 or named[0].strip().lower() not in hosts:
        shown = ", ".join(repr(h) for h in named) or "none"
        return 403, f"Host {shown} is not this sandbox; use {' or '.join(sorted(hosts))}"
    if method == "GET":
        return None
    origins = headers.get_all("Origin") or []
    if any(origin.strip().lower() not in {f"http://{h}" for h in hosts} for origin in origins):
        return 403, f"cross-origin request from {origins[0]!r} refused"
    mime = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if path.startswith("/_sandbox/") and mime != "application/json":
        return 415, f"/_sandbox/ requests must be Content-Type application/json, not {mime or 'none'!r}"
    return None


def inbox_policy(nonce: str) -> str:
    """The inbox runs no script, loads only its own nonce'd styles and message images, and is never framed."""
    return (
        f"default-src 'none'; style-src 'nonce-{nonce}'; img-src http: https:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )


def parse_body(raw: bytes, content_type: str) -> dict[str, Any] | None:
    """A JSON object or a form-encoded body as a dict (form values stay strings), else None."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "x-www-form-urlencoded" in content_type.lower():
        return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        if "json" in content_type.lower():
            return None
        form = parse_qs(text, keep_blank_values=True)
        return {k: v[-1] for k, v in form.items()} if form else None
    return body if isinstance(body, dict) else None


def _sub_code(answer: dict[str, Any]) -> int | None:
    if answer["errcode"] != 88:
        return None
    found = re.search(r"subcode=(-?\d+)", str(answer.get("errmsg", "")))
    return int(found.group(1)) if found else None


def _expect(value: Any, kind: type) -> Any:
    if not isinstance(value, kind):
        raise DispatcherError(f"expected a JSON {'object' if kind is dict else 'array'}")
    return value


class Sandbox:
    """The server plus its state; `start()` serves in a background thread."""

    def __init__(
        self,
        options: SandboxOptions | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        robots: RobotRoom | None = None,
    ) -> None:
        if host not in LOOPBACK:
            raise DispatcherError(
                f"the DingTalk sandbox binds to 127.0.0.1 only, not {host!r}",
                hint="it hands out tokens for a known secret; keep it off the network",
            )
        self._engine = Engine(options or SandboxOptions())
        self.robots = robots or RobotRoom()  # the group robots: add_robot() registers one
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    @property
    def options(self) -> SandboxOptions:
        return self._engine.options

    def start(self) -> Sandbox:
        try:
            self._server = _Server(("127.0.0.1", self._port), self._engine, self.robots)
        except OSError as exc:
            raise DispatcherError(
                f"the DingTalk sandbox cannot listen on 127.0.0.1:{self._port}: {exc.strerror}",
                hint="choose another port, or stop what is using it",
            ) from None
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="dingtalk-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_options(self, **changes: Any) -> None:
        self._engine.set_options(changes)

    def expire_tokens(self) -> None:
        self._engine.expire_tokens()

    def add_users(self, users: list[dict[str, Any]]) -> None:
        self._engine.add_users(users)

    def calls(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        return self._engine.calls(endpoint)

    def messages(self, userid: str | None = None) -> list[dict[str, Any]]:
        return self._engine.messages(userid)

    def tasks(self) -> list[dict[str, Any]]:
        return self._engine.tasks()

    def reset(self) -> None:
        self._engine.reset()

    def add_robot(self, name: str, token: str, secret: str | None = None, keyword: str | None = None) -> None:
        """A group robot answering at `/robot/send?access_token=<token>`, with its security settings."""
        self.robots.add(name, token, secret, keyword)

    def robot_messages(self, robot: str | None = None) -> list[dict[str, Any]]:
        return self.robots.messages(robot)


def serve_forever(options: SandboxOptions, port: int = DEFAULT_PORT) -> None:
    """For `dispatcher sandbox`: serve until SIGINT or SIGTERM, printing where to look."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Sandbox(options, port=port) as sandbox:
            print("\n".join(banner(options, sandbox.url)), flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
