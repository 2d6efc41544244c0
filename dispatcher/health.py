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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from dispatcher import clock
from dispatcher.bounded_http import BoundedHTTPServer
from dispatcher.errors import DispatcherError

log = logging.getLogger("dispatcher.health")

# A run spans a fast SQLite query (tens of ms) to a large paced delivery (minutes).
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# One DingTalk call: usually well under a second; the slow tail is timeouts and retries' waits.
API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A probe or a scraper sends its request at once; a connection silent for longer is dropped.
CONNECTION_TIMEOUT = 10.0
# Fire time to ledger claim: ~0.1 s on time (bench/RESULTS.md), up to hours for a caught-up fire time.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
RECEIPT_STATUSES = ("read", "unread", "failed", "invalid", "forbidden")


class Metrics:
    """Every metric the daemon exports, in one registry the caller may share or leave private."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        counter, reg = self._counter, self.registry
        self._runs = counter("dispatcher_runs", "Report runs finished, by final state.", "report", "state")
        self._known: set[str] = set()  # reports whose outcome series exist (known_reports)
        self._run_seconds = Histogram(
            "dispatcher_run_duration_seconds",
            "Wall time of one report run.",
            ["report"],
            buckets=RUN_BUCKETS,
            registry=reg,
        )
        self._deliveries = counter("dispatcher_deliveries", "Reports delivered to DingTalk.", "report")
        self._recipients = counter("dispatcher_recipients", "Recipients addressed by deliveries.", "report")
        self._tasks = counter("dispatcher_tasks", "DingTalk send tasks created.", "report")
        self._api_calls = counter("dispatcher_api_calls", "DingTalk calls by errcode.", "endpoint", "code")
        self._api_errors = counter("dispatcher_api_errors", "DingTalk calls failed.", "endpoint", "code")
        self._api_seconds = Histogram(
            "dispatcher_api_call_seconds",
            "Duration of one DingTalk API call.",
            ["endpoint"],
            buckets=API_BUCKETS,
            registry=reg,
        )
        self._alerts = counter("dispatcher_alerts", "Failure alerts sent to admins.", "report")
        self._reloads = counter("dispatcher_config_reloads", "Config reloads, by result.", "result")
        self._reports = Gauge("dispatcher_reports", "Reports currently scheduled.", registry=reg)
        self._last_tick = Gauge(
            "dispatcher_last_tick_timestamp_seconds", "Unix time of the scheduler's last tick.", registry=reg
        )
        # Both results exist from the start so `increase()` sees the first rejection, not a new series.
        for result in ("ok", "rejected"):
            self._reloads.labels(result=result)
        reg.register(_BuildInfoCollector())
        self._store_up = Gauge(
            "dispatcher_state_store_up", "1 while the state store passes its health check.", registry=reg
        )
        self._store_up.set(1)  # the app opened it (or it would not have started); checks update it
        self._claim_lag = Histogram(
            "dispatcher_claim_lag_seconds",
            "From a run's fire time to its claim in the ledger.",
            buckets=LAG_BUCKETS,
            registry=reg,
        )
        self._receipts = counter("dispatcher_receipts", "Recipients by receipt status.", "report", "status")

    def _counter(self, name: str, doc: str, *labels: str) -> Counter:
        # prometheus_client appends `_total` when exposing: `dispatcher_runs` is `dispatcher_runs_total`.
        return Counter(name, doc, list(labels), registry=self.registry)

    def run_finished(self, report_id: str, state: str, seconds: float | None) -> None:
        self._runs.labels(report=report_id, state=state).inc()
        if seconds is not None:
            self._run_seconds.labels(report=report_id).observe(seconds)

    def delivered(self, report_id: str, recipients: int, tasks: int) -> None:
        self._deliveries.labels(report=report_id).inc()
        self._recipients.labels(report=report_id).inc(recipients)
        self._tasks.labels(report=report_id).inc(tasks)

    def api_call(self, endpoint: str, errcode: int | None, seconds: float) -> None:
        """The DingTalk client's `on_call` hook; `errcode` is None when no answer came back."""
        code = "transport" if errcode is None else str(errcode)
        self._api_calls.labels(endpoint=endpoint, code=code).inc()
        if code != "0":
            self._api_errors.labels(endpoint=endpoint, code=code).inc()
        self._api_seconds.labels(endpoint=endpoint).observe(seconds)

    def watch_api_calls(self, counter: Any) -> None:
        """`dispatcher_api_calls_month{endpoint}`: this month's quota calls of every replica,
        read from the state store at scrape time (an `apicalls.ApiCounter`)."""
        self.registry.register(_ApiMonthCollector(counter))

    def receipts(self, report_id: str, counts: dict[str, int]) -> None:
        """A run's receipt tallies (DeliveryResult.counts()); every status, so zeros are series too."""
        if counts:
            for status in RECEIPT_STATUSES:
                self._receipts.labels(report=report_id, status=status).inc(counts.get(status, 0))

    def claimed(self, lag_seconds: float) -> None:
        self._claim_lag.observe(max(0.0, lag_seconds))

    def state_store(self, up: bool) -> None:
        self._store_up.set(1 if up else 0)

    def alert_sent(self, report_id: str) -> None:
        self._alerts.labels(report=report_id).inc()

    def config_reload(self, ok: bool) -> None:
        self._reloads.labels(result="ok" if ok else "rejected").inc()

    def set_reports(self, n: int) -> None:
        self._reports.set(n)

    def known_reports(self, report_ids: Iterable[str]) -> None:
        """Start each report's outcome series at 0: `increase()` misses a series' first sample, so
        without this the first failure of a report would never show in a rate or an alert.

        Only reports not seen before: the daemon calls this at start and after every reload, and
        15,000 `labels()` lookups for 5,000 reports were a tenth of a reload (issue 28).
        """
        for report_id in report_ids:
            if report_id not in self._known:
                self._known.add(report_id)
                for state in ("sent", "failed", "partial"):
                    self._runs.labels(report_id, state)  # by position: (report, state)

    def tick(self, when: float) -> None:
        self._last_tick.set(when)


class _BuildInfoCollector(Collector):
    """`dispatcher_build_info{version}`, looked up at the first scrape, so that no command that never
    serves /metrics reads package metadata; the same version `-V` and the wheel show."""

    def collect(self) -> Iterator[InfoMetricFamily]:
        from dispatcher import version as installed

        version = {"version": installed()}
        yield InfoMetricFamily("dispatcher_build", "The running dispatcher.", value=version)


class _ApiMonthCollector(Collector):
    def __init__(self, counter: Any) -> None:
        self._counter = counter

    def collect(self) -> Iterator[GaugeMetricFamily]:
        quota = "dingtalk.monthly_quota: calls allowed a month (0: no limit)."
        yield GaugeMetricFamily("dispatcher_api_quota_month", quota, self._counter.quota)
        family = GaugeMetricFamily(
            "dispatcher_api_calls_month",
            "DingTalk calls counted against the monthly quota this calendar month, all replicas.",
            labels=["endpoint"],
        )
        try:
            used = self._counter.used()
        except DispatcherError as exc:  # an unreachable store must not break the scrape
            log.warning("cannot read this month's API calls: %s", exc)
            used = {}
        for endpoint, calls in sorted(used.items()):
            family.add_metric([endpoint], calls)
        yield family


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
