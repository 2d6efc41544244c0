from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from dispatcher import clock
from dispatcher.daemon.health import HealthServer, HealthState, health_report
from dispatcher.errors import DispatcherError
from dispatcher.run.metrics import Metrics

TIMEOUT = 10


def now() -> float:
    return clock.now().timestamp()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def state() -> HealthState:
    return HealthState(started_at=now() - 5)


@pytest.fixture
def server(state: HealthState, metrics: Metrics) -> Iterator[HealthServer]:
    with HealthServer(state, metrics, port=0) as srv:
        yield srv


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample in an exposition, keyed by (sample name, labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(found: dict, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def scrape(srv: HealthServer) -> dict:
    response = requests.get(srv.url + "/metrics", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(response.text)


def test_healthz_is_200_with_last_tick_after_a_tick(server: HealthServer, state: HealthState) -> None:
    tick_at = now() - 1.5
    state.tick(tick_at)
    state.reports = 3
    response = requests.get(server.url + "/healthz", timeout=TIMEOUT)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert datetime.fromisoformat(body["last_tick"]).timestamp() == pytest.approx(tick_at, abs=0.001)
    assert body["last_tick"].endswith("+00:00")
    assert body["reports"] == 3
    assert 5 <= body["uptime_seconds"] < 5 + TIMEOUT
    assert set(body) == {"status", "last_tick", "uptime_seconds", "reports"}


def test_tick_without_a_time_uses_now(state: HealthState) -> None:
    before = now()
    state.tick()
    assert before <= state.snapshot()["last_tick"] <= now()


def test_healthz_is_503_stale_when_the_last_tick_is_older_than_the_limit(
    state: HealthState, metrics: Metrics
) -> None:
    state.tick(now() - 10)
    with HealthServer(state, metrics, stale_after=1.0) as srv:
        response = requests.get(srv.url + "/healthz", timeout=TIMEOUT)
    assert response.status_code == 503
    assert response.json()["status"] == "stale"
    assert response.json()["last_tick"] is not None


def test_healthz_is_503_stopped_when_the_scheduler_has_stopped(
    server: HealthServer, state: HealthState
) -> None:
    state.tick(now())
    state.running = False
    response = requests.get(server.url + "/healthz", timeout=TIMEOUT)
    assert response.status_code == 503
    assert response.json()["status"] == "stopped"


def test_before_the_first_tick_the_start_time_decides_staleness() -> None:
    t = 1_000_000.0
    fresh = HealthState(started_at=t).snapshot()
    code, body = health_report(fresh, now=t + 30, stale_after=120)
    assert (code, body["status"], body["last_tick"]) == (200, "ok", None)
    code, body = health_report(fresh, now=t + 121, stale_after=120)
    assert (code, body["status"]) == (503, "stale")
    assert body["uptime_seconds"] == 121


def test_metrics_expose_every_method_with_labels_and_values(server: HealthServer, metrics: Metrics) -> None:
    metrics.run_finished("daily", "sent", 1.2)
    metrics.run_finished("daily", "sent", 0.03)
    metrics.run_finished("daily", "failed", None)
    metrics.delivered("daily", recipients=150, tasks=2)
    metrics.delivered("daily", recipients=3, tasks=1)
    metrics.api_call("asyncsend_v2", 0, 0.2)
    metrics.api_call("asyncsend_v2", 90018, 0.1)
    metrics.api_call("gettoken", None, 5.0)
    metrics.alert_sent("daily")
    metrics.config_reload(True)
    metrics.config_reload(False)
    metrics.config_reload(False)
    metrics.set_reports(4)
    metrics.tick(1_800_000_000.0)

    found = scrape(server)

    assert sample(found, "dispatcher_runs_total", report="daily", state="sent") == 2
    assert sample(found, "dispatcher_runs_total", report="daily", state="failed") == 1
    # The failed run had no duration, so only the two sent runs are observed.
    assert sample(found, "dispatcher_run_duration_seconds_count", report="daily") == 2
    assert sample(found, "dispatcher_run_duration_seconds_sum", report="daily") == pytest.approx(1.23)
    assert sample(found, "dispatcher_run_duration_seconds_bucket", report="daily", le="0.05") == 1
    assert sample(found, "dispatcher_run_duration_seconds_bucket", report="daily", le="600.0") == 2
    assert sample(found, "dispatcher_deliveries_total", report="daily") == 2
    assert sample(found, "dispatcher_recipients_total", report="daily") == 153
    assert sample(found, "dispatcher_tasks_total", report="daily") == 3
    assert sample(found, "dispatcher_api_calls_total", endpoint="asyncsend_v2", code="0") == 1
    assert sample(found, "dispatcher_api_calls_total", endpoint="asyncsend_v2", code="90018") == 1
    assert sample(found, "dispatcher_api_calls_total", endpoint="gettoken", code="transport") == 1
    assert sample(found, "dispatcher_api_errors_total", endpoint="asyncsend_v2", code="90018") == 1
    assert sample(found, "dispatcher_api_errors_total", endpoint="gettoken", code="transport") == 1
    no_error = ("dispatcher_api_errors_total", frozenset({("endpoint", "asyncsend_v2"), ("code", "0")}))
    assert no_error not in found
    assert sample(found, "dispatcher_api_call_seconds_count", endpoint="asyncsend_v2") == 2
    assert sample(found, "dispatcher_api_call_seconds_sum", endpoint="gettoken") == pytest.approx(5.0)
    assert sample(found, "dispatcher_alerts_total", report="daily") == 1
    assert sample(found, "dispatcher_config_reloads_total", result="ok") == 1
    assert sample(found, "dispatcher_config_reloads_total", result="rejected") == 2
    assert sample(found, "dispatcher_reports") == 4
    assert sample(found, "dispatcher_last_tick_timestamp_seconds") == 1_800_000_000.0


def test_reload_results_are_exported_as_zero_before_any_reload(server: HealthServer) -> None:
    found = scrape(server)
    assert sample(found, "dispatcher_config_reloads_total", result="ok") == 0
    assert sample(found, "dispatcher_config_reloads_total", result="rejected") == 0


def test_two_metrics_instances_do_not_collide(state: HealthState) -> None:
    first, second = Metrics(), Metrics()
    first.run_finished("daily", "sent", 1.0)
    second.run_finished("weekly", "failed", 2.0)
    with HealthServer(state, first) as a, HealthServer(state, second) as b:
        found_a, found_b = scrape(a), scrape(b)
    assert sample(found_a, "dispatcher_runs_total", report="daily", state="sent") == 1
    assert ("dispatcher_runs_total", frozenset({("report", "weekly"), ("state", "failed")})) not in found_a
    assert sample(found_b, "dispatcher_runs_total", report="weekly", state="failed") == 1
    assert ("dispatcher_runs_total", frozenset({("report", "daily"), ("state", "sent")})) not in found_b


@pytest.mark.parametrize("path", ["/", "/health", "/healthz/extra", "/metricsx", "/favicon.ico"])
def test_other_paths_are_404(server: HealthServer, path: str) -> None:
    assert requests.get(server.url + path, timeout=TIMEOUT).status_code == 404


def test_query_string_does_not_hide_the_endpoint(server: HealthServer, state: HealthState) -> None:
    state.tick(now())
    assert requests.get(server.url + "/healthz?probe=1", timeout=TIMEOUT).status_code == 200


def test_binds_localhost_by_name(state: HealthState, metrics: Metrics) -> None:
    state.tick(now())
    with HealthServer(state, metrics, host="localhost") as srv:
        assert requests.get(srv.url + "/healthz", timeout=TIMEOUT).status_code == 200


def test_binds_ipv6_loopback(state: HealthState, metrics: Metrics) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        srv = HealthServer(state, metrics, host="::1")
    except DispatcherError:
        pytest.skip("::1 not configured on this machine")
    state.tick(now())
    with srv:
        assert srv.url.startswith("http://[::1]:")
        assert requests.get(srv.url + "/healthz", timeout=TIMEOUT).status_code == 200


def test_a_port_in_use_is_a_dispatcher_error(
    server: HealthServer, state: HealthState, metrics: Metrics
) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(DispatcherError, match="health-port"):
        HealthServer(state, metrics, port=port)


def test_stop_releases_the_port_and_is_idempotent(state: HealthState, metrics: Metrics) -> None:
    srv = HealthServer(state, metrics).start()
    port = int(srv.url.rsplit(":", 1)[1])
    srv.stop()
    srv.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.url + "/healthz", timeout=TIMEOUT)
    HealthServer(state, metrics, port=port).stop()  # never started: must not hang


def test_requests_are_not_logged_to_stderr(server: HealthServer, capfd: pytest.CaptureFixture[str]) -> None:
    requests.get(server.url + "/healthz", timeout=TIMEOUT)
    requests.get(server.url + "/nope", timeout=TIMEOUT)
    assert capfd.readouterr().err == ""


def test_two_health_states_started_at_the_same_second_are_two_objects() -> None:
    # A merge once left a functools.cache on the class: equal arguments then gave one shared state,
    # so one daemon's tick or stop showed in another's /healthz.
    from dispatcher.daemon.health import HealthState

    first, second = HealthState(started_at=1.0), HealthState(started_at=1.0)
    first.running = False
    assert first is not second and second.running is True
