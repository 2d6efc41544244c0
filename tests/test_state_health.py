"""Issue 15, part 5: a deleted or overwritten state file stops claiming, alerts, and turns /healthz 503;
and /healthz is 503 while due runs wait too long for a worker. Real files; the state-file tests run
the daemon in-process on a fake clock, the worker test as a real process."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from dispatcher.daemon.health import HealthServer
from dispatcher.daemon.status import STORE_ALERT_TITLE
from dispatcher.sandbox import Sandbox
from tests import daemon_harness, services
from tests.daemon_harness import Daemons, count_state, project, report, wait_until
from tests.daemon_inprocess import FakeClock, Stepper, even_second_now, inprocess_daemon

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
sandbox, state_url, daemons = daemon_harness.sandbox, daemon_harness.state_url, daemon_harness.daemons
postgres_url = services.postgres_url


def healthz(url: str) -> tuple[int, dict[str, Any]]:
    response = requests.get(url + "/healthz", timeout=5)
    return response.status_code, response.json()


def wait_health(url: str, code: int, what: str, timeout: float = 40) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        got, body = healthz(url)
        return body if got == code else None

    return wait_until(check, f"/healthz {code} ({what})", timeout=timeout, every=0.2)


def store_alerts(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [m for m in sandbox.messages("oncall01") if m["msg"]["markdown"]["title"] == STORE_ALERT_TITLE]


def backup(state_file: Path, to: Path) -> Path:
    with sqlite3.connect(state_file) as src, sqlite3.connect(to) as dst:
        src.backup(dst)
    return to


@contextmanager
def health_daemon(
    sandbox: Sandbox, state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Stepper, str]]:
    """An in-process daemon on a fake clock, with its /healthz served on an ephemeral port."""
    config = project(tmp_path / "p", {"tick": report("心跳")})
    with inprocess_daemon(config, sandbox, state_url, FakeClock(even_second_now()), monkeypatch) as daemon:
        server = HealthServer(daemon.daemon.health, daemon.daemon.app.metrics, port=0).start()
        try:
            yield daemon, server.url
        finally:
            server.stop()


def sent(daemon: Stepper) -> int:
    return len(daemon.events.events("run.sent"))


def not_claimed(daemon: Stepper) -> int:
    return len(daemon.events.events("run.not_claimed", report="tick"))


def test_a_deleted_state_file_stops_claiming_alerts_and_fails_healthz_until_it_is_restored(
    sandbox: Sandbox, state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_file = Path(state_url.removeprefix("sqlite:///"))
    with health_daemon(sandbox, state_url, tmp_path, monkeypatch) as (daemon, url):
        daemon.run_until(lambda: sent(daemon) >= 2, "two sent runs")
        assert healthz(url)[0] == 200
        saved = backup(state_file, tmp_path / "saved.db")

        state_file.unlink()
        daemon.run_until(lambda: healthz(url)[0] == 503, "/healthz 503 (state file deleted)")
        body = healthz(url)[1]
        assert body["status"] == "unhealthy"
        assert "was deleted" in body["problems"]["state_store"]
        assert daemon.events.events("state.unavailable", during="health check")
        daemon.run_until(lambda: not_claimed(daemon) >= 1, "a wake-up not claimed")
        assert store_alerts(sandbox), "an alert to admins about the state store"
        assert not state_file.exists(), "the daemon must not recreate an empty state file"
        sent_before = sent(daemon)
        daemon.run_until(lambda: not_claimed(daemon) >= 3, "three wake-ups not claimed")
        assert sent(daemon) <= sent_before + 1  # at most the run already in flight

        shutil.copyfile(saved, state_file)  # the operator restores the backup
        daemon.run_until(lambda: healthz(url)[0] == 200, "/healthz 200 (state file restored)")
        assert daemon.events.events("state.recovered")
        restored = count_state(state_url, "tick", "sent")
        daemon.run_until(
            lambda: count_state(state_url, "tick", "sent") > restored, "a run into the restored file"
        )
    assert len(store_alerts(sandbox)) == 1


def test_a_state_file_overwritten_with_garbage_stops_claiming_and_fails_healthz(
    sandbox: Sandbox, state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_file = Path(state_url.removeprefix("sqlite:///"))
    with health_daemon(sandbox, state_url, tmp_path, monkeypatch) as (daemon, url):
        daemon.run_until(lambda: sent(daemon) >= 2, "two sent runs")
        size = state_file.stat().st_size
        with open(state_file, "r+b") as fh:  # in place: same inode, as a stray `dd` or editor would
            fh.write(os.urandom(size))

        daemon.run_until(lambda: healthz(url)[0] == 503, "/healthz 503 (state file overwritten)")
        assert "not a SQLite database" in healthz(url)[1]["problems"]["state_store"]
        daemon.run_until(lambda: not_claimed(daemon) >= 2, "two wake-ups not claimed")
        before = sent(daemon)
        daemon.run_until(lambda: not_claimed(daemon) >= 4, "four wake-ups not claimed")
        assert sent(daemon) == before
        assert store_alerts(sandbox), "an alert to admins about the state store"


def test_healthz_is_503_while_a_due_run_waits_longer_than_max_wait_for_a_worker(
    daemons: Daemons, tmp_path: Path
) -> None:
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c"
    slow = report("慢", every="1h", run_on_start=True, sql=forever, query_timeout="60s", run_timeout="60s")
    reports = {"slow": slow, "tick": report("心跳")}
    config = project(tmp_path / "p", reports, daemon={"workers": 1, "max_wait": "3s"})
    daemon = daemons.start(config, "--health-port", "0")
    url = daemon.wait_for("health.listening").fields["url"]
    daemon.wait_for("run.started", report="slow")

    body = wait_health(url, 503, "tick waiting for the only worker")
    assert "waited" in body["problems"]["workers"] and "all 1 workers are busy" in body["problems"]["workers"]


def test_check_reports_a_deleted_overwritten_or_replaced_file_and_adopts_a_restored_one(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime

    from dispatcher.store.db import StateStore
    from dispatcher.store.ledger import Ledger

    path = tmp_path / "state.db"
    store = StateStore(f"sqlite:///{path}")
    try:
        assert store.check() is None
        saved = backup(path, tmp_path / "saved.db")
        path.unlink()
        assert "was deleted" in (store.check() or "")
        assert not path.exists(), "a check or a later write must not recreate an empty store"

        shutil.copyfile(saved, path)
        assert "was replaced" in (store.check() or "")
        assert store.check() is None  # a working state store under the name is adopted
        assert Ledger(store).claim("r", datetime(2026, 1, 1, tzinfo=UTC), "me") is not None

        with open(path, "r+b") as fh:
            fh.write(b"garbage!" * 4)
        assert "not a SQLite database" in (store.check() or "")
    finally:
        store.close()


def test_healthz_is_503_unhealthy_with_each_problem_and_200_once_they_clear() -> None:
    from dispatcher.daemon.health import HealthState, health_report

    state = HealthState(started_at=1000.0)
    state.tick(1000.0)
    state.set_problem("state_store", "the state file x was deleted")
    code, body = health_report(state.snapshot(), now=1001.0, stale_after=120)
    assert (code, body["status"]) == (503, "unhealthy")
    assert body["problems"] == {"state_store": "the state file x was deleted"}
    state.set_problem("state_store", None)
    code, body = health_report(state.snapshot(), now=1001.0, stale_after=120)
    assert (code, body["status"], "problems" in body) == (200, "ok", False)


def test_the_wait_clock_measures_the_oldest_job_not_yet_picked_up() -> None:
    from dispatcher.daemon.watchdog import WaitClock

    clock = WaitClock()
    clock.started()  # a job picked up before its submission was reported
    clock.submitted()
    assert clock.oldest_wait() == 0.0
    clock.submitted()
    assert clock.oldest_wait() > 0.0
    clock.started()
    assert clock.oldest_wait() == 0.0


def test_check_on_postgresql_reports_a_store_that_stops_answering(postgres_url: str) -> None:
    from dispatcher.store.db import StateStore

    store = StateStore(postgres_url)
    try:
        assert store.check() is None
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE dispatcher_meta")
        problem = store.check() or ""
        assert "does not answer" in problem and "dispatcher_meta" in problem
        assert "password" not in problem.lower()
    finally:
        store.close()
