"""The health port under idle and slow connections (issue 22, item 16): threads stay bounded,
/healthz keeps answering, and a connection that sends no whole request is closed at its timeout."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from dispatcher import clock
from dispatcher.daemon import bounded_http, health
from dispatcher.daemon.health import HealthServer, HealthState
from dispatcher.run.metrics import Metrics

DEADLINE = 60.0  # generous: the machine is shared; every wait below polls for its condition


@pytest.fixture
def state() -> HealthState:
    state = HealthState(started_at=clock.now().timestamp() - 5)
    state.tick()
    return state


def _port(srv: HealthServer) -> int:
    port = urlsplit(srv.url).port
    assert port is not None
    return port


def _healthz_within(srv: HealthServer, deadline: float) -> int:
    """/healthz's status, asked again until it answers or the deadline passes."""
    while True:
        try:
            return requests.get(srv.url + "/healthz", timeout=5).status_code
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise


def test_200_idle_connections_keep_the_thread_count_bounded_and_healthz_answers(state: HealthState) -> None:
    with HealthServer(state, Metrics()) as srv:
        assert requests.get(srv.url + "/healthz", timeout=10).status_code == 200
        baseline = threading.active_count()
        idle: list[socket.socket] = []
        try:
            for _ in range(200):
                idle.append(socket.create_connection(("127.0.0.1", _port(srv)), timeout=10))
            # Connections are accepted in order: once /healthz answers, the 200 were accepted before it.
            assert _healthz_within(srv, time.monotonic() + DEADLINE) == 200
            assert threading.active_count() - baseline <= bounded_http.WORKERS + 1
            assert _healthz_within(srv, time.monotonic() + DEADLINE) == 200
        finally:
            for sock in idle:
                sock.close()


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"], ids=["idle", "half-request"])
def test_a_connection_without_a_whole_request_is_closed_after_its_timeout(
    state: HealthState, monkeypatch: pytest.MonkeyPatch, sent: bytes
) -> None:
    monkeypatch.setattr(health, "CONNECTION_TIMEOUT", 0.5)
    with HealthServer(state, Metrics()) as srv:
        with socket.create_connection(("127.0.0.1", _port(srv)), timeout=DEADLINE) as sock:
            sock.sendall(sent)
            # recv() returns b"" when the server closes; the socket's own timeout is the deadline.
            assert sock.recv(1024) == b""
        assert requests.get(srv.url + "/healthz", timeout=10).status_code == 200
