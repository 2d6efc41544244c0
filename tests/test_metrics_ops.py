"""The series the alert rules (deploy/prometheus/alerts.yml) and the dashboard (deploy/grafana/) read.

The daemon runs as a real process against a real sandbox; /metrics is read as Prometheus would.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher import DISTRIBUTION
from dispatcher.run.metrics import Metrics
from dispatcher.sandbox import Sandbox
from tests.daemon_harness import Daemons, wait_until
from tests.monitoring_kit import QUOTA, ROBOT, start_daemon

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def installed_version() -> str:
    """The version pip recorded for the distribution (what `-V` and the wheel show)."""
    return metadata.version(DISTRIBUTION)


def test_build_info_carries_the_installed_distributions_version() -> None:
    found = samples(generate_latest(Metrics().registry).decode())
    assert value(found, "dispatcher_build_info", version=installed_version()) == 1


def test_scheduled_reports_start_with_zero_failed_and_partial_runs() -> None:
    metrics = Metrics()
    metrics.known_reports(["daily"])
    found = samples(generate_latest(metrics.registry).decode())
    for state in ("sent", "failed", "partial"):
        assert value(found, "dispatcher_runs_total", report="daily", state=state) == 0


def test_a_report_known_again_after_a_reload_keeps_its_counts_and_a_new_one_starts_at_zero() -> None:
    metrics = Metrics()
    metrics.known_reports(["daily"])
    metrics.run_finished("daily", "failed", 1.0)
    metrics.known_reports(["daily", "weekly"])
    found = samples(generate_latest(metrics.registry).decode())
    assert value(found, "dispatcher_runs_total", report="daily", state="failed") == 1
    for state in ("sent", "failed", "partial"):
        assert value(found, "dispatcher_runs_total", report="weekly", state=state) == 0


def test_the_daemon_exports_what_the_alerts_and_the_dashboard_read(
    daemons: Daemons, sandbox: Sandbox, tmp_path: Path, state_url: str
) -> None:
    daemon = start_daemon(daemons, sandbox, tmp_path / "p")
    url = daemon.wait_for("health.listening").fields["url"]

    def scraped() -> Samples | None:
        found = samples(requests.get(url + "/metrics", timeout=10).text)
        wanted = [
            value(found, "dispatcher_runs_total", report="tick", state="sent"),
            value(found, "dispatcher_runs_total", report="grouped", state="partial"),
            value(found, "dispatcher_runs_total", report="broken", state="failed"),
            value(found, "dispatcher_api_errors_total", endpoint="robot_send", code="310000"),
            value(found, "dispatcher_receipts_total", report="tick", status="unread"),
        ]
        return found if all(wanted) else None

    found = wait_until(scraped, "sent, partial and failed runs, a refused robot and receipts", timeout=90)
    assert value(found, "dispatcher_build_info", version=installed_version()) == 1
    assert value(found, "dispatcher_state_store_up") == 1
    # a scheduled report's failure series exist before its first failure: increase() sees that one
    assert value(found, "dispatcher_runs_total", report="tick", state="failed") == 0
    assert (value(found, "dispatcher_claim_lag_seconds_count") or 0) >= 3
    assert value(found, "dispatcher_api_quota_month") == QUOTA
    assert (value(found, "dispatcher_api_calls_month", endpoint="asyncsend_v2") or 0) >= 1
    assert sandbox.robot_messages(ROBOT) == [], "the robot refused every post: its secret is wrong"

    Path(state_url.removeprefix("sqlite:///")).unlink()

    def store_down() -> bool:
        found = samples(requests.get(url + "/metrics", timeout=10).text)
        return value(found, "dispatcher_state_store_up") == 0

    wait_until(store_down, "dispatcher_state_store_up 0 once the state file is gone", timeout=30)
