"""A source server that accepts the connection but never answers fails the run within the connect
timeout, instead of holding a worker until run_timeout (libpq has no connect timeout of its own)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from dispatcher.errors import QueryError
from dispatcher.sources.guard import CONNECT_TIMEOUT, _pg_session_options
from dispatcher.sources.query import Sources, SourceSpec, run_query


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def test_a_postgresql_url_gets_a_connect_timeout_unless_it_sets_its_own() -> None:
    url = _pg_session_options(make_url("postgresql+psycopg://u@db.example.com/shop"))
    assert url.query["connect_timeout"] == str(CONNECT_TIMEOUT)
    own = _pg_session_options(make_url("postgresql+psycopg://u@db.example.com/shop?connect_timeout=3"))
    assert own.query["connect_timeout"] == "3"


def test_a_postgresql_server_that_never_answers_fails_within_the_connect_timeout(silent_server: int) -> None:
    url = f"postgresql+psycopg://reader@127.0.0.1:{silent_server}/shop"
    sources = Sources({"shop": SourceSpec("shop", url)})
    outcome: list[BaseException | None] = []

    def query() -> None:
        try:
            run_query(sources, "shop", "SELECT 1", {}, max_rows=10, timeout=600)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test inspects whatever came out
            outcome.append(exc)

    # In a thread with a deadline: without the timeout the connect would hang for good.
    worker = threading.Thread(target=query, daemon=True)
    worker.start()
    worker.join(CONNECT_TIMEOUT + 20)
    sources.dispose()
    assert outcome, "still connecting: the connect timeout did not apply"
    [error] = outcome
    assert isinstance(error, QueryError), error
    assert "timeout" in str(error).lower() or "timed out" in str(error).lower()
