"""`dispatcher run` as a real process: deliveries, signals, replicas, first run, health, logs, errors.

Each test starts real subprocesses against a sandbox on an ephemeral port and its own SQLite
state file; the `daemons` fixture kills whatever is still running when the test ends. (The
interval test runs in-process on a fake clock: see tests/daemon_inprocess.py.)
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from dispatcher import logs
from dispatcher.sandbox import Sandbox
from tests import daemon_harness
from tests.daemon_harness import (
    APP_SECRET,
    REPO,
    Daemons,
    assert_consecutive,
    count_state,
    fire_times,
    project,
    report,
    runs,
    task_fire_times,
    wait_until,
)

sandbox, state_url, daemons = daemon_harness.sandbox, daemon_harness.state_url, daemon_harness.daemons

# Counts to a trillion: a query that is still running whenever the test looks.
ENDLESS_SQL = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000000) "
    "SELECT COUNT(*) AS n FROM c"
)


def endless_report(**keys: Any) -> dict[str, Any]:
    """Runs once at start (a yearly cron with run_on_start) and never finishes its query."""
    once: dict[str, Any] = {"schedule": "0 0 1 1 *", "run_on_start": True}
    return report("慢报表", sql=ENDLESS_SQL, query_timeout="10m", **once, **keys)


def test_interval_report_delivers_every_fire_time_exactly_once_and_without_gaps(
    sandbox: Sandbox, state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.daemon_inprocess import FakeClock, even_second_now, inprocess_daemon

    # In-process on a fake clock: the same daemon parts, without nine real seconds.
    config = project(tmp_path / "p", {"tick": report("心跳")})
    with inprocess_daemon(config, sandbox, state_url, FakeClock(even_second_now()), monkeypatch) as daemon:
        daemon.run_until(lambda: count_state(state_url, "tick", "sent") >= 5, "five sent runs")

    rows = runs(state_url, "tick")
    assert len({r.fire_time for r in rows}) == len(rows)
    sent = fire_times(rows, "sent")
    assert all(r.state in ("sent", "missed") for r in rows), [(r.fire_time, r.state) for r in rows]
    tasks = Counter(task_fire_times(sandbox, "心跳"))
    assert sorted(tasks) == sent  # one task per sent fire time, none for any other
    assert set(tasks.values()) == {1}
    assert_consecutive(sent, 2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_exits_0_within_10s_and_logs_daemon_stopped(
    daemons: Daemons, tmp_path: Path, sig: signal.Signals
) -> None:
    daemon = daemons.start(project(tmp_path / "p", {"tick": report("心跳")}))
    daemon.wait_for("run.sent")
    daemon.send(sig)
    assert daemon.wait_exit(60) == 0
    assert len(daemon.events("daemon.stopped")) == 1
    assert "Traceback" not in daemon.stderr()


def test_a_second_sigterm_during_a_running_run_exits_at_once(daemons: Daemons, tmp_path: Path) -> None:
    daemon = daemons.start(project(tmp_path / "p", {"slow": endless_report()}))
    daemon.wait_for("run.started", report="slow")
    daemon.send(signal.SIGTERM)
    daemon.wait_for("daemon.stopping")
    assert daemon.alive(), "the first SIGTERM is a warm shutdown: it waits for the running run"
    daemon.send(signal.SIGTERM)
    # The run never ends by itself, so any exit at all is the cold shutdown; the deadline is generous.
    assert daemon.wait_exit(60) != 0
    assert not daemon.events("daemon.stopped")


def test_a_run_is_counted_in_flight_before_it_logs_run_started(
    sandbox: Sandbox, state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A warm shutdown waits only for runs counted in flight: a stop signal sent right after
    # run.started (as the test above does) must find the run counted, or the daemon logs
    # daemon.stopped and then hangs on the run's thread.
    from tests.daemon_inprocess import FakeClock, even_second_now, inprocess_daemon

    seen: list[int] = []

    class InFlight(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "run.started":
                seen.append(stepper.daemon.runs.in_flight)

    config = project(tmp_path / "p", {"tick": report("心跳")})
    spy = InFlight()
    with inprocess_daemon(config, sandbox, state_url, FakeClock(even_second_now()), monkeypatch) as stepper:
        logs.log.addHandler(spy)
        try:
            stepper.run_until(lambda: len(seen) >= 2, "two runs started")
        finally:
            logs.log.removeHandler(spy)
    assert seen and min(seen) >= 1, seen


def test_a_warm_shutdown_gives_up_on_a_stuck_run_after_shutdown_timeout(
    daemons: Daemons, tmp_path: Path
) -> None:
    config = project(tmp_path / "p", {"slow": endless_report()}, daemon={"shutdown_timeout": "2s"})
    daemon = daemons.start(config)
    daemon.wait_for("run.started", report="slow")
    daemon.send(signal.SIGTERM)
    stopping = daemon.wait_for("daemon.stopping")
    assert daemon.wait_exit(60) == 0
    abandoned = daemon.wait_for("daemon.abandoned", timeout=1)
    assert (abandoned.ts - stopping.ts).total_seconds() >= 2


def test_two_processes_on_one_state_file_deliver_each_fire_time_once(
    daemons: Daemons, sandbox: Sandbox, state_url: str, tmp_path: Path
) -> None:
    config = project(tmp_path / "p", {"tick": report("心跳")})
    # Both start at once on an empty state file: the schema's creation races too.
    pair = [daemons.start(config, name="a"), daemons.start(config, name="b")]
    wait_until(lambda: count_state(state_url, "tick", "sent") >= 5, "five sent runs (~10 s)")
    # Judged before the stop, up to the first fire time still in flight: at a warm shutdown a
    # replica hands its queued claims back, and two replicas finish fire times out of order, so on a
    # loaded machine the other may have sent a later fire time than one handed back.
    at_stop = runs(state_url)
    in_flight = min((r.fire_time for r in at_stop if r.state == "running"), default=None)
    before_stop = [t for t in fire_times(at_stop, "sent") if in_flight is None or t < in_flight]
    for daemon in pair:
        daemon.send(signal.SIGTERM)
    assert [daemon.wait_exit(60) for daemon in pair] == [0, 0]
    assert all(len(daemon.events("daemon.started")) == 1 for daemon in pair)

    rows = runs(state_url)
    assert len({(r.report_id, r.fire_time) for r in rows}) == len(rows)
    sent = fire_times(rows, "sent")
    tasks = Counter(task_fire_times(sandbox, "心跳"))
    assert sorted(tasks) == sent
    assert set(tasks.values()) == {1}
    assert_consecutive(before_stop, 2)


def test_first_run_of_the_shipped_config_delivers_to_the_sandbox_within_a_minute(
    daemons: Daemons, tmp_path: Path
) -> None:
    folder = tmp_path / "fresh"
    folder.mkdir()
    shutil.copy(REPO / "reports.yaml", folder / "reports.yaml")
    shutil.copytree(REPO / "queries", folder / "queries")
    env = {k: v for k, v in daemons.env().items() if not k.startswith(("DINGTALK_", "DISPATCHER_"))}
    daemon = daemons.start(folder / "reports.yaml", "--sandbox", "--sandbox-port", "0", env=env)

    first = wait_until(lambda: daemon.stdout().splitlines()[:1], "the sandbox address on stdout", 30)
    found = re.fullmatch(r"sandbox inbox: (http://127\.0\.0\.1:\d+/)", first[0])
    assert found, first
    url = found[1]

    def delivered() -> list[dict[str, Any]]:
        return requests.get(url + "_sandbox/messages", timeout=5).json()

    messages = wait_until(delivered, "a message in the sandbox inbox", timeout=120, every=0.5)
    assert "每日销售日报" in {m["msg"]["oa"]["body"]["title"] for m in messages if m["msgtype"] == "oa"}
    assert (folder / "demo.db").exists()
    assert (folder / ".dispatcher" / "sandbox.db").exists(), "the sandbox's ledger is in the project"
    assert not (folder / ".dispatcher" / "state.db").exists(), "and away from production's"


def test_health_port_serves_healthz_and_run_metrics(daemons: Daemons, tmp_path: Path) -> None:
    daemon = daemons.start(project(tmp_path / "p", {"tick": report("心跳")}), "--health-port", "0")
    url = daemon.wait_for("health.listening").fields["url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
    daemon.wait_for("run.sent")

    health = requests.get(url + "/healthz", timeout=5)
    assert health.status_code == 200
    assert health.headers["Content-Type"].startswith("application/json")
    assert health.json()["status"] == "ok" and health.json()["reports"] == 1

    def sent_runs() -> float:
        text = requests.get(url + "/metrics", timeout=5).text
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        wanted = {"report": "tick", "state": "sent"}
        return sum(s.value for s in samples if s.name == "dispatcher_runs_total" and s.labels == wanted)

    assert wait_until(sent_runs, "dispatcher_runs_total{report=tick,state=sent}") >= 1


def test_json_log_format_writes_one_json_event_per_line(
    daemons: Daemons, state_url: str, tmp_path: Path
) -> None:
    daemon = daemons.start(project(tmp_path / "p", {"tick": report("心跳")}), "--log-format", "json")
    daemon.wait_for("run.sent", count=2)
    daemon.send(signal.SIGTERM)
    assert daemon.wait_exit(60) == 0

    text = daemon.stderr()
    assert APP_SECRET not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(line, dict) and isinstance(line.get("event"), str) for line in lines)
    assert {"daemon.started", "run.sent", "daemon.stopped"} <= {line["event"] for line in lines}
    sent = [line for line in lines if line["event"] == "run.sent"]
    assert {line["report"] for line in sent} == {"tick"}
    logged = sorted(datetime.fromisoformat(line["fire_time"]) for line in sent)
    assert logged == fire_times(runs(state_url, "tick"), "sent")


def test_unreachable_state_database_exits_1_with_a_clear_error(tmp_path: Path, daemons: Daemons) -> None:
    config = project(tmp_path / "p", {"tick": report("心跳")})
    url = "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/x?connect_timeout=2"
    done = subprocess.run(
        [sys.executable, "-m", "dispatcher", "run", "-c", str(config)],
        env=daemons.env(DISPATCHER_STATE_URL=url),
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot open the state store"), done.stderr
    assert "127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
