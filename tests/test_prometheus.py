"""The alert rules and the Grafana dashboard against the real tools: promtool's rule unit tests, and a
real Prometheus (Debian's `prometheus` package) scraping a real daemon.

The daemon (tests/monitoring_kit.py) sends, fails, delivers partially, has a robot refused and passes
80 % of its monthly quota; a second target in the job is a port nothing listens on. Every query of
deploy/grafana/dispatcher.json and every rule's expression must then return data, and each alert must
be pending or firing, except:
- DispatcherNotTicking: the daemon ticks, so its expression is legitimately empty; it must still
  evaluate without error (rule health "ok").
- DispatcherStateStoreUnavailable and DispatcherConfigRejected have data only once the test deletes
  the state file and saves a broken reports.yaml, which it does after checking the rest: a daemon
  without its state store no longer reads the month's API calls, so the quota panels would go empty.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dispatcher.sandbox import Sandbox
from tests.daemon_harness import Daemons, replace_file, wait_until
from tests.monitoring_kit import start_daemon
from tests.services import installed

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dispatcher.json"
# Grafana's variables, as a dashboard over the last hour with every report selected would expand them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s", "$report": ".*"}
NO_DATA_BY_DESIGN = {"DispatcherNotTicking"}
NEEDS_A_BROKEN_DAEMON = {"DispatcherStateStoreUnavailable", "DispatcherConfigRejected"}
DEADLINE = 120.0


def tool(name: str) -> str:
    return installed(name, package="prometheus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, with Grafana's variables expanded."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
                expr = expr.replace(name, GRAFANA_VARIABLES[name])
            assert "$" not in expr, f"{panel['title']}: a variable the test does not expand: {expr}"
            found.append((panel["title"], expr))
    return found


def rule_expressions() -> dict[str, str]:
    import yaml

    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def test_the_rule_unit_tests_pass_under_promtool() -> None:
    promtool = tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_example_scrape_config_is_valid() -> None:
    promtool = tool("promtool")
    config = REPO / "deploy" / "prometheus" / "prometheus.yml"
    checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_dashboard_panel_reads_prometheus_through_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("runs", "deliveries", "receipts", "quota", "claim lag"):
        assert topic in titles


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", f"{expr}: {answer}"
        return list(answer["data"]["result"])

    def rules(self) -> dict[str, dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/v1/rules", timeout=10).json()
        return {rule["name"]: rule for group in answer["data"]["groups"] for rule in group["rules"]}


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[Path, Prometheus]]:
    """A real Prometheus on a free loopback port; the test writes its targets into `targets.json`."""
    binary = tool("prometheus")
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "targets.json").write_text("[]", encoding="utf-8")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "dispatcher",
                "file_sd_configs": [{"files": [str(folder / "targets.json")], "refresh_interval": "1s"}],
            }
        ],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config), encoding="utf-8")
    address = f"127.0.0.1:{free_port()}"
    with open(folder / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address={address}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=folder,
        )  # fmt: skip
    server = Prometheus(f"http://{address}")

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError((folder / "prometheus.log").read_text(errors="replace")[-3000:])
        try:
            return requests.get(f"{server.url}/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(ready, "Prometheus to be ready", timeout=60, every=0.2)
        yield folder, server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def wait_for_data(server: Prometheus, queries: list[tuple[str, str]]) -> None:
    """Poll until every query returns at least one series; on timeout, name the ones still empty."""
    left = queries
    deadline = time.monotonic() + DEADLINE
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        left = [(name, expr) for name, expr in left if not server.query(expr)]
    shown = "\n".join(f"{name}: {expr}" for name, expr in left)
    assert not left, f"no data after {DEADLINE:.0f}s:\n{shown}"


def wait_for_alerts(server: Prometheus, names: set[str]) -> None:
    def active() -> bool:
        states = {name: rule["state"] for name, rule in server.rules().items() if name in names}
        return all(state in ("pending", "firing") for state in states.values())

    wait_until(active, f"alerts {sorted(names)} pending or firing", timeout=DEADLINE, every=1.0)


@pytest.mark.slow
def test_a_real_prometheus_scraping_a_daemon_answers_every_dashboard_query_and_rule(
    daemons: Daemons, sandbox: Sandbox, tmp_path: Path, state_url: str, prometheus: tuple[Path, Prometheus]
) -> None:
    folder, server = prometheus
    daemon = start_daemon(daemons, sandbox, tmp_path / "p")
    target = daemon.wait_for("health.listening").fields["url"].removeprefix("http://")
    nobody = f"127.0.0.1:{free_port()}"  # a replica that is down: DispatcherDown has a real series
    (folder / "targets.json").write_text(json.dumps([{"targets": [target, nobody]}]), encoding="utf-8")

    rules = rule_expressions()
    first = dashboard_queries() + [
        (name, expr) for name, expr in rules.items() if name not in NO_DATA_BY_DESIGN | NEEDS_A_BROKEN_DAEMON
    ]
    wait_for_data(server, first)
    wait_for_alerts(server, {"DispatcherDown", "DispatcherRunsFailing", "DispatcherQuotaHigh"})
    wait_for_alerts(server, {"DispatcherRobotRefusing"})

    replace_file(daemon.config, "reports: [this is not a mapping\n")
    Path(state_url.removeprefix("sqlite:///")).unlink()
    wait_for_data(server, [(name, rules[name]) for name in sorted(NEEDS_A_BROKEN_DAEMON)])
    wait_for_alerts(server, NEEDS_A_BROKEN_DAEMON)

    evaluated = server.rules()
    assert set(evaluated) == set(rules)
    for name, rule in evaluated.items():
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
    for name in NO_DATA_BY_DESIGN:
        assert server.query(rules[name]) == [], f"{name} has data, but the daemon ticks"
        assert evaluated[name]["state"] == "inactive"
