"""The daemon's Prometheus metrics: one registry per Metrics object, so several daemons (or tests)
in one process never collide.

Runs, deliveries and the DingTalk client report here through `Services`; the health server
(`dispatcher.daemon.health`) only exposes the registry. It lives in `run/` because a run is what
it counts, and the composition root builds it without importing the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from dispatcher.errors import DispatcherError

log = logging.getLogger("dispatcher.health")

# A run spans a fast SQLite query (tens of ms) to a large paced delivery (minutes).
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# One DingTalk call: usually well under a second; the slow tail is timeouts and retries' waits.
API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
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
