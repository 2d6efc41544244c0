"""`dispatcher run --health-host HOST` (or DISPATCHER_HEALTH_HOST) chooses where /healthz and /metrics listen.

The default stays 127.0.0.1; a container or a Kubernetes pod passes 0.0.0.0 so that `-p` and probes
reach it. These tests bind only loopback addresses: 127.0.0.2 is loopback on Linux but not 127.0.0.1,
so a server reached there (and refused on 127.0.0.1) proves the address was honoured.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dispatcher import clock
from dispatcher.cli.main import build_parser
from dispatcher.cli.ops import health_host
from dispatcher.daemon.health import HealthServer, HealthState
from dispatcher.errors import DispatcherError
from dispatcher.run.metrics import Metrics
from tests.daemon_harness import Daemons, project, report

TIMEOUT = 10
OTHER_LOOPBACK = "127.0.0.2"


@pytest.fixture
def state() -> Iterator[HealthState]:
    health = HealthState(started_at=clock.now().timestamp())
    health.tick()
    yield health


def test_the_health_server_listens_on_the_address_it_is_given(state: HealthState) -> None:
    with HealthServer(state, Metrics(), host=OTHER_LOOPBACK, port=0) as server:
        assert server.url.startswith(f"http://{OTHER_LOOPBACK}:")
        assert requests.get(server.url + "/healthz", timeout=TIMEOUT).status_code == 200
        port = server.url.rsplit(":", 1)[1]
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT)


def test_an_address_this_machine_does_not_have_is_a_clear_error(state: HealthState) -> None:
    with pytest.raises(DispatcherError) as caught:
        HealthServer(state, Metrics(), host="203.0.113.7", port=0)  # TEST-NET-3: never configured here
    assert "203.0.113.7" in str(caught.value)
    assert "--health-host" in (caught.value.hint or "")


def test_run_takes_health_host_and_defaults_to_loopback() -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "--health-host", "0.0.0.0"]).health_host == "0.0.0.0"
    assert health_host(parser.parse_args(["run"]), {}) == "127.0.0.1"


def test_the_flag_wins_over_the_environment_variable() -> None:
    parser = build_parser()
    env = {"DISPATCHER_HEALTH_HOST": "0.0.0.0"}
    assert health_host(parser.parse_args(["run"]), env) == "0.0.0.0"
    assert health_host(parser.parse_args(["run", "--health-host", "::1"]), env) == "::1"
    assert health_host(parser.parse_args(["run"]), {"DISPATCHER_HEALTH_HOST": " "}) == "127.0.0.1"


def test_the_daemon_serves_health_on_the_address_from_the_environment(
    daemons: Daemons, tmp_path: Path
) -> None:
    config = project(tmp_path / "p", {"tick": report("心跳")})
    env = daemons.env(DISPATCHER_HEALTH_HOST=OTHER_LOOPBACK)
    daemon = daemons.start(config, "--health-port", "0", env=env)
    url = daemon.wait_for("health.listening").fields["url"]
    assert url.startswith(f"http://{OTHER_LOOPBACK}:"), url
    daemon.wait_for("run.sent")
    assert requests.get(url + "/healthz", timeout=TIMEOUT).json()["status"] == "ok"
