"""What the alert, split, backfill, resend, rich, robot and wire tests share: a project on a real SQLite
data file, a real sandbox over HTTP, `Services` built as the daemon builds them, on any state store URL,
and a scripted HTTP server for what the sandbox cannot do."""

from __future__ import annotations

import sqlite3
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from dispatcher.config.check import load_config
from dispatcher.dingtalk.client import Credentials
from dispatcher.robot.client import RobotClient
from dispatcher.run.delivery import make_client
from dispatcher.run.metrics import Metrics
from dispatcher.run.prepare import build_sources
from dispatcher.run.robots import RobotSender, robots_from
from dispatcher.run.runner import execute
from dispatcher.run.services import Services
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.db import StateStore
from dispatcher.store.ledger import Ledger


def write_project(folder: Path, sandbox: Sandbox, reports: str, *, state: str | None = None,
                  recipients: str = "") -> Path:  # fmt: skip
    """reports.yaml with the sandbox's credentials; `reports` is the YAML under `reports:`."""
    folder.mkdir(parents=True, exist_ok=True)
    opts = sandbox.options
    text = textwrap.dedent(f"""\
        timezone: Asia/Shanghai
        sources:
          data: sqlite:///data.db
        dingtalk:
          app_key: {opts.app_key}
          app_secret: {opts.app_secret}
          agent_id: {opts.agent_id}
          api_base: {sandbox.url}
          receipts: "off"
        recipients:
          admins: {{userids: [oncall01]}}
          ops: {{userids: [user004, user005]}}
        """)
    text += textwrap.indent(textwrap.dedent(recipients), "  ")
    if state is not None:
        text += f"state: {state}\n"
    text += "reports:\n" + textwrap.indent(textwrap.dedent(reports), "  ")
    (folder / "reports.yaml").write_text(text, encoding="utf-8")
    return folder / "reports.yaml"


def data(folder: Path, script: str) -> None:
    """Run SQL against the project's data.db (the report's source)."""
    conn = sqlite3.connect(folder / "data.db")
    try:
        conn.executescript(script)
        conn.commit()
    finally:
        conn.close()


# The head of a config whose app is the sandbox's, up to `recipients:`: a str.format template (api_base=...).
# The source `shop` is a SQLite file beside it. Tests that read receipts replace the `receipts` line.
SANDBOX_APP = """\
timezone: Asia/Shanghai
sources:
  shop: sqlite:///shop.db
dingtalk:
  app_key: dingsandboxkey
  app_secret: sandbox-secret
  agent_id: 100000001
  api_base: {api_base}
  receipts: "off"
recipients:
"""


@contextmanager
def services(
    config_path: Path,
    sandbox: Sandbox | None = None,
    owner: str = "test-owner",
    *,
    robots: Callable[[StateStore], RobotClient] | None = None,
) -> Iterator[Services]:
    """`Services` on the config's state store, with the sandbox's app credentials (its defaults when the
    app's API is another server); `robots` builds the group robots' client on that store."""
    from dispatcher.store.db import state_url

    config = load_config(config_path)
    store = StateStore(state_url(config.base_dir, config.state))
    opts = sandbox.options if sandbox is not None else SandboxOptions()
    client = make_client(config, Credentials(opts.app_key, opts.app_secret, opts.agent_id), store)
    sources = build_sources(config)
    sender = RobotSender(robots(store), robots_from(config)) if robots is not None else None
    try:
        yield Services(config, sources, client, Ledger(store), Metrics(), owner, sender)
    finally:
        client.close()
        if sender is not None:
            sender.close()
        sources.dispose()
        store.close()


def run_at(svc: Services, report_id: str, fire: datetime) -> str:
    """Claim and execute one fire time, as a daemon would; the run's final state."""
    run = svc.ledger.claim(report_id, fire, svc.owner)
    assert run is not None, f"{report_id} at {fire} was claimed already"
    return execute(svc, svc.config.reports[report_id], run)


def retry_at(svc: Services, report_id: str) -> str:
    """Claim the one retry that is due within the hour from another replica and execute it; its state."""
    [due] = svc.ledger.due_retries(datetime.now(UTC) + timedelta(hours=1))
    claimed = svc.ledger.claim_retry(due, "another-replica")
    assert claimed is not None
    return execute(svc, svc.config.reports[report_id], claimed)


def texts(sandbox: Sandbox, userid: str) -> list[str]:
    """The markdown (or text) bodies `userid` received, oldest first."""
    return [_body(m["msg"]) for m in sorted(sandbox.messages(userid), key=lambda m: int(m["id"]))]


def _body(msg: dict[str, Any]) -> str:
    kind = msg["msgtype"]
    part = msg[kind]
    return str(part.get("text") or part.get("content") or part.get("markdown") or "")


# -- a scripted server: a per-IP block, a slow answer, an HTML error page, the raw request bytes --


class Answer(NamedTuple):
    status: int
    body: bytes
    delay: float = 0.0  # seconds before answering
    content_type: str = "application/json"
    trickle: float = 0.0  # seconds between the body's bytes, sent one at a time (0: all at once)


class Scripted(ThreadingHTTPServer):
    """Answers gettoken, then the queued `answers` in order, then `done`; records every request in `seen`."""

    daemon_threads = True

    def __init__(self, done: bytes = b'{"errcode":0,"errmsg":"ok","task_id":7}') -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.done = done
        self.answers: list[Answer | tuple[int, bytes, float]] = []
        self.seen: list[dict[str, Any]] = []
        self.trickled = 0  # bytes of a trickled body sent so far
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Scripted

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def _answer(self, body: bytes) -> None:
        server = self.server
        with server.lock:
            seen = {
                "path": self.path,
                "headers": dict(self.headers),
                "body": body,
                "port": self.client_address[1],
            }
            server.seen.append(seen)
            if self.path.startswith("/gettoken"):
                answer = Answer(200, b'{"errcode":0,"access_token":"tok-scripted-1","expires_in":7200}')
            else:
                answer = Answer(*server.answers.pop(0)) if server.answers else Answer(200, server.done)
        time.sleep(answer.delay)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.trickle:
            self._trickle(answer)
        else:
            self.wfile.write(answer.body)

    def _trickle(self, answer: Answer) -> None:
        """The body a byte at a time, until it is all sent or the client hangs up."""
        try:
            for index in range(len(answer.body)):
                self.wfile.write(answer.body[index : index + 1])
                self.wfile.flush()
                with self.server.lock:
                    self.server.trickled = index + 1
                time.sleep(answer.trickle)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: Any) -> None:
        pass


S = TypeVar("S", bound=ThreadingHTTPServer)


def serving(server: S) -> Iterator[S]:
    """Serve on a thread while the caller uses it (a fixture's `yield from`, or a `for` loop)."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
