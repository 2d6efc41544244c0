"""Scenario 4, daemon at rest: `dispatcher run` with many hourly reports and none due.

The ledger is seeded with a sent run at each report's last fire time, as a daemon that has been
running for a while would have it, and the reports fire at a minute half an hour away, so nothing
is due during the window. The window opens once the start-up work has settled (CPU idle for a
second, or 30 s at most), and memory is the process's peak (VmHWM) over its whole life.
"""

from __future__ import annotations

import socket
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Outcome, Row, mb, proc_cpu_seconds, proc_memory_mb, sandbox_env, seconds
from bench.daemonproc import (
    ORDERS_SQL,
    dingtalk_from_env,
    ledger_states,
    make_orders_db,
    running_daemon,
    write_config,
)
from dispatcher.sandbox import Sandbox

NAME = "4 daemon at rest"
RSS_LIMIT_MB = 120.0
CPU_LIMIT_PER_MINUTE = 0.5
SETTLE_TIMEOUT = 30.0
IDLE_CPU = 0.05  # CPU seconds in one wall second that count as "settled"


def build(folder: Path, reports: int) -> tuple[Path, int]:
    make_orders_db(folder / "src.db", rows=100, seed=1)
    minute = (datetime.now(UTC).minute + 30) % 60  # Asia/Shanghai is a whole-hour offset
    config = {
        "timezone": "Asia/Shanghai",
        "sources": {"src": "sqlite:///src.db"},
        "dingtalk": dingtalk_from_env(),
        "recipients": {"team": {"userids": ["manager4974"]}},
        "reports": {
            f"r{i:03d}": {
                "title": f"每小时报表 {i:03d}",
                "schedule": f"{minute} * * * *",
                "source": "src",
                "sql": ORDERS_SQL,
                "to": ["team"],
            }
            for i in range(1, reports + 1)
        },
    }
    return write_config(folder / "reports.yaml", config), minute


def seed_ledger(config_path: Path, state_url: str) -> int:
    """A sent run at each report's last fire time: the ledger of a daemon that was already running."""
    from dispatcher.config.check import load_config
    from dispatcher.run.prepare import fire_time_at, now_in
    from dispatcher.store.db import StateStore
    from dispatcher.store.ledger import Ledger

    config = load_config(config_path)
    store = StateStore(state_url)
    ledger = Ledger(store)
    owner = f"{socket.gethostname()}:bench"
    for report in config.reports.values():
        run = ledger.claim(report.id, fire_time_at(config, report, now_in(config)), owner)
        assert run is not None
        ledger.finish(run.id, "sent", rows=6, recipients=1)
    store.close()
    return len(config.reports)


def run(reports: int, window: float) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="bench-rest-") as tmp, Sandbox(port=0) as sb:
        folder = Path(tmp)
        config, minute = build(folder, reports)
        state_db = folder / "state.db"
        seeded = seed_ledger(config, f"sqlite:///{state_db}")
        env = sandbox_env(sb.url, DISPATCHER_STATE_URL=f"sqlite:///{state_db}")
        with running_daemon(config, env, folder / "daemon.log") as daemon:
            daemon.started_at()
            settle_cpu = _settle(daemon.pid)
            cpu0, t0 = proc_cpu_seconds(daemon.pid), time.monotonic()
            while time.monotonic() - t0 < window:
                daemon.check_alive()
                time.sleep(min(1.0, window - (time.monotonic() - t0)))
            cpu1, t1 = proc_cpu_seconds(daemon.pid), time.monotonic()
            memory = proc_memory_mb(daemon.pid)
        runs = sum(ledger_states(state_db).values()) - seeded
        data = {
            "reports": reports,
            "minute": minute,
            "window_seconds": t1 - t0,
            "cpu_seconds": cpu1 - cpu0,
            "startup_cpu_seconds": settle_cpu,
            "peak_rss_mb": memory["VmHWM"],
            "rss_mb": memory["VmRSS"],
            "api_calls": len(sb.calls()),
            "runs_started": runs,
        }
    return _outcome(data)


def _settle(pid: int) -> float:
    """Wait until a second passes with (almost) no CPU; returns the CPU used so far."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last = proc_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = proc_cpu_seconds(pid)
        if now - last < IDLE_CPU:
            return now
        last = now
    return last


def _outcome(data: dict[str, Any]) -> Outcome:
    per_minute = data["cpu_seconds"] / data["window_seconds"] * 60
    scale = f"{data['reports']} hourly reports, none due, {seconds(data['window_seconds'])} window"
    return Outcome(
        NAME,
        rows=[
            Row(
                NAME,
                f"peak RSS ({scale})",
                mb(data["peak_rss_mb"]),
                f"now {mb(data['rss_mb'])}",
                "",
                f"< {RSS_LIMIT_MB:.0f} MB",
                data["peak_rss_mb"] < RSS_LIMIT_MB,
            ),
            Row(
                NAME,
                "CPU seconds per minute at rest",
                f"{per_minute:.3f}",
                f"{data['cpu_seconds']:.2f} s in {seconds(data['window_seconds'])}",
                "",
                f"< {CPU_LIMIT_PER_MINUTE}",
                per_minute < CPU_LIMIT_PER_MINUTE,
            ),
            Row(
                NAME,
                "CPU seconds to start (imports, 500 catch-up checks)",
                f"{data['startup_cpu_seconds']:.2f}",
            ),
            Row(
                NAME,
                "runs started, API calls while at rest",
                f"{data['runs_started']}, {data['api_calls']}",
                "",
                "",
                "0, 0",
                data["runs_started"] == 0 and data["api_calls"] == 0,
            ),
        ],
        data=data | {"cpu_seconds_per_minute": per_minute},
    )
