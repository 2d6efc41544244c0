"""The daemon's health endpoint and Prometheus metrics, for systemd, probes and a scraper.

They listen on 127.0.0.1 unless `--health-host` says otherwise: the endpoint has no authentication,
so only a container or a pod, whose network is the boundary, should bind 0.0.0.0.

`GET /healthz` answers 200 only while the scheduler runs, has ticked recently and reports no problem
(state store unusable, due runs waiting too long for a worker); `GET /metrics`
exposes a registry of this daemon's own, so several daemons (or tests) in one process never collide.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dispatcher import clock
from dispatcher.daemon.bounded_http import BoundedHTTPServer
from dispatcher.errors import DispatcherError
from dispatcher.run.metrics import Metrics

log = logging.getLogger("dispatcher.health")

# A probe or a scraper sends its request at once; a connection silent for longer is dropped.
CONNECTION_TIMEOUT = 10.0


@dataclass
class HealthState:
    """What the daemon knows about its own liveness. Times are Unix seconds; the daemon updates it."""

    started_at: float
    last_tick: float | None = None
    running: bool = True
    reports: int = 0
    problems: dict[str, str] = field(default_factory=dict)  # what -> reason; any makes /healthz 503
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def tick(self, when: float | None = None) -> None:
        with self._lock:
            self.last_tick = clock.now().timestamp() if when is None else when

    def set_problem(self, what: str, reason: str | None) -> None:
        """Record (or, with None, clear) a reason the daemon cannot do its work."""
        with self._lock:
            if reason is None:
                self.problems.pop(what, None)
            else:
                self.problems[what] = reason

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the fields, taken under the lock."""
        with self._lock:
            return {
                "started_at": self.started_at,
                "last_tick": self.last_tick,
                "running": self.running,
                "reports": self.reports,
                "problems": dict(self.problems),
            }


def health_report(snapshot: dict[str, Any], now: float, stale_after: float) -> tuple[int, dict[str, Any]]:
    """The /healthz status code and body for a snapshot at `now`. Pure, so the rules are easy to test."""
    last_tick = snapshot["last_tick"]
    problems = snapshot.get("problems") or {}
    # Before the first tick, the start time stands in: a scheduler that never ticks goes stale too.
    reference = snapshot["started_at"] if last_tick is None else last_tick
    if not snapshot["running"]:
        status = "stopped"
    elif now - reference > stale_after:
        status = "stale"
    elif problems:
        status = "unhealthy"
    else:
        status = "ok"
    body: dict[str, Any] = {
        "status": status,
        "last_tick": None if last_tick is None else _iso_utc(last_tick),
        "uptime_seconds": round(max(0.0, now - snapshot["started_at"]), 3),
        "reports": snapshot["reports"],
    }
    if problems:
        body["problems"] = problems
    return (200 if status == "ok" else 503), body


def _iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


class _Server(BoundedHTTPServer):
    def __init__(
        self, addr: tuple[str, int], state: HealthState, metrics: Metrics, stale_after: float
    ) -> None:
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.state = state
        self.metrics = metrics
        self.stale_after = stale_after
        super().__init__(addr, _Handler, timeout=CONNECTION_TIMEOUT)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("health endpoint failed to answer %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            code, body = health_report(
                self.server.state.snapshot(), clock.now().timestamp(), self.server.stale_after
            )
            self._send(code, "application/json", json.dumps(body).encode(), head)
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.metrics.registry), head)
        else:
            self._send(404, "application/json", b'{"error": "not found"}', head)

    def _send(self, code: int, content_type: str, payload: bytes, head: bool) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)


class HealthServer:
    """`/healthz` and `/metrics` on `host` (loopback unless told otherwise), served from a daemon thread.

    The socket is bound on construction, so `url` is known at once (port 0 picks a free port) and a
    port already in use fails when the daemon starts, not later.
    """

    def __init__(
        self,
        state: HealthState,
        metrics: Metrics,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        stale_after: float = 120.0,
    ) -> None:
        try:
            self._server = _Server((host, port), state, metrics, stale_after)
        except OSError as exc:
            raise DispatcherError(
                f"cannot serve the health endpoint on {host}:{port}: {exc.strerror or exc}",
                hint="pick another --health-port, or stop whatever already listens there; "
                "--health-host must be an address of this machine (127.0.0.1, or 0.0.0.0 for all)",
            ) from None
        bound_host = str(self._server.server_address[0])
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    def start(self) -> HealthServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="dispatcher-health",
                daemon=True,
            )
            self._thread.start()
            log.debug("health endpoint listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port. Safe to call twice or without start()."""
        if self._thread is not None:
            # shutdown() waits for serve_forever to acknowledge, so it must only run once serving began.
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
