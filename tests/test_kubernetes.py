"""deploy/kubernetes/ rendered by the real `kubectl kustomize`, and compose.yaml, checked against the
daemon's real command line (dispatcher.cli.main.build_parser), the variables the code and the shipped
reports.yaml read, the image's user and port (Dockerfile), and the measured memory (bench/RESULTS.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatcher.cli.main import build_parser
from tests.services import installed

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "deploy" / "kubernetes"
DEFAULT_SHUTDOWN_TIMEOUT = 30  # daemon.shutdown_timeout's default (README, "Running the daemon")


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    kubectl = installed("kubectl", package="kubernetes-client")
    done = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {doc["kind"]: doc for doc in yaml.safe_load_all(done.stdout)}


def container(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = rendered["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(only)


def dockerfile(instruction: str) -> str:
    lines = (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines()
    (line,) = [line for line in lines if line.startswith(instruction + " ")]
    return line.split(" ", 1)[1]


def variables_the_code_reads() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "dispatcher").rglob("*.py"):
        names |= set(re.findall(r"[\"'](DISPATCHER_[A-Z_]+|DINGTALK_[A-Z_]+)[\"']", path.read_text("utf-8")))
    return names


def required_references(reports_yaml: str) -> set[str]:
    """`${NAME}` without a `:-default` in a reports.yaml, outside its comments."""
    code = "\n".join(line for line in reports_yaml.splitlines() if not line.lstrip().startswith("#"))
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", code))


def test_two_replicas_run_the_daemon_with_the_real_flags(rendered: dict[str, dict[str, Any]]) -> None:
    assert rendered["Deployment"]["spec"]["replicas"] == 2
    args = build_parser().parse_args(container(rendered)["args"])
    assert args.command == "run"
    assert str(args.config) == "/srv/reports/reports.yaml"
    assert args.health_host == "0.0.0.0", "probes and the scraper come from outside the pod"
    assert args.log_format == "json"
    assert not args.sandbox


def test_probes_and_scrape_annotations_use_the_health_port(rendered: dict[str, dict[str, Any]]) -> None:
    spec = container(rendered)
    health_port = build_parser().parse_args(spec["args"]).health_port
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = spec[probe]["httpGet"]
        assert get["path"] == "/healthz", probe
        assert ports.get(get["port"], get["port"]) == health_port, probe
    annotations = rendered["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == health_port
    assert annotations["prometheus.io/path"] == "/metrics"
    service_port = rendered["Service"]["spec"]["ports"][0]
    assert ports[service_port["targetPort"]] == health_port
    assert dockerfile("EXPOSE") == str(health_port)


def test_credentials_come_from_the_secret_under_names_the_daemon_or_its_reports_read(
    rendered: dict[str, dict[str, Any]],
) -> None:
    env = {item["name"]: item for item in container(rendered)["env"]}
    reports_yaml = rendered["ConfigMap"]["data"]["reports.yaml"]
    readable = variables_the_code_reads() | required_references(reports_yaml)
    for name, item in env.items():
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "dispatcher-credentials" and ref["key"] == name
        assert name in readable, f"{name}: neither the code nor reports.yaml reads it"
    assert "DISPATCHER_STATE_URL" in env, "the replicas share a PostgreSQL state store"
    assert required_references(reports_yaml) <= set(env), "every ${VAR} reports.yaml needs is set"


def test_the_configmap_holds_a_project_that_validates(
    rendered: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The ConfigMap's files, laid out as the volume's items mount them, pass `dispatcher validate`."""
    data = rendered["ConfigMap"]["data"]
    volume = next(
        v for v in rendered["Deployment"]["spec"]["template"]["spec"]["volumes"] if "configMap" in v
    )
    assert volume["configMap"]["name"] == rendered["ConfigMap"]["metadata"]["name"]
    for item in volume["configMap"]["items"]:
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]], encoding="utf-8")
    assert set(data) == {item["key"] for item in volume["configMap"]["items"]}, "every file is mounted"
    mount = next(m for m in container(rendered)["volumeMounts"] if m["name"] == volume["name"])
    assert mount["mountPath"] == str(build_parser().parse_args(container(rendered)["args"]).config.parent)
    env = {
        **os.environ,
        "DINGTALK_APP_KEY": "key",
        "DINGTALK_APP_SECRET": "secret",
        "DINGTALK_AGENT_ID": "1",
        "SHOP_DB_URL": "postgresql+psycopg://reader@warehouse:5432/shop",
        "DISPATCHER_STATE_URL": "postgresql+psycopg://dispatcher@db:5432/dispatcher",
    }
    done = subprocess.run(
        [sys.executable, "-m", "dispatcher", "validate", "-c", str(tmp_path / "reports.yaml")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_pod_runs_as_the_images_user_and_stops_warm(rendered: dict[str, dict[str, Any]]) -> None:
    pod = rendered["Deployment"]["spec"]["template"]["spec"]
    uid, gid = (int(part) for part in dockerfile("USER").split(":"))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
    assert pod["terminationGracePeriodSeconds"] > DEFAULT_SHUTDOWN_TIMEOUT
    spec = container(rendered)
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/tmp" in {m["mountPath"] for m in spec["volumeMounts"]}, "matplotlib and tempfiles need /tmp"


def test_resources_come_from_the_measured_figures(rendered: dict[str, dict[str, Any]]) -> None:
    results = (REPO / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    peaks = [int(mb) for mb in re.findall(r"peak RSS of dispatcher run[^|]*\| (\d+) MB", results)]
    assert peaks, "bench/RESULTS.md reports the daemon's peak RSS"
    resources = container(rendered)["resources"]
    mib = {"Mi": 1, "Gi": 1024}

    def megabytes(quantity: str) -> float:
        return int(quantity[:-2]) * mib[quantity[-2:]] * 1.048576  # MiB to MB

    assert megabytes(resources["requests"]["memory"]) >= max(peaks)
    assert megabytes(resources["limits"]["memory"]) > megabytes(resources["requests"]["memory"])
    assert resources["requests"]["cpu"] and resources["limits"]["cpu"]


def test_compose_runs_the_image_on_postgresql_with_secrets_from_the_environment() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    daemon, database = compose["services"]["dispatcher"], compose["services"]["postgres"]
    assert daemon["build"] == "."
    url = daemon["environment"]["DISPATCHER_STATE_URL"]
    assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url
    assert daemon["depends_on"]["postgres"]["condition"] == "service_healthy" and database["healthcheck"]
    for name in ("DINGTALK_APP_KEY", "DINGTALK_APP_SECRET", "DINGTALK_AGENT_ID"):
        assert daemon["environment"][name] == f"${{{name}:?set {name}}}", "from the environment, never inline"
    assert daemon["ports"] == ["127.0.0.1:9108:9108"]
    assert int(daemon["stop_grace_period"].removesuffix("s")) > DEFAULT_SHUTDOWN_TIMEOUT
    assert "/srv/reports" in daemon["volumes"][0]


def test_the_configmaps_query_files_are_the_shipped_ones() -> None:
    # kustomize loads files only from inside its base, so the queries are copies: keep them equal.
    copies = sorted((REPO / "deploy" / "kubernetes" / "reports" / "queries").glob("*.sql"))
    assert copies
    for copy in copies:
        assert copy.read_text(encoding="utf-8") == (REPO / "queries" / copy.name).read_text(encoding="utf-8")
