"""`dispatcher run` as a real subprocess: start it, read its JSON log, stop it warm."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench.common import dispatcher_cmd, wait_until


class DaemonProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.log = log

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue  # the odd non-JSON line, e.g. a warning printed by a library
        return found

    def started_at(self, timeout: float = 60) -> float:
        """Unix time of the `daemon.started` event: the scheduler is up and every report is woken."""

        def started() -> float | None:
            self.check_alive()
            return next((_ts(e) for e in self.events() if e.get("event") == "daemon.started"), None)

        return wait_until(started, "the daemon to start", timeout)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"dispatcher run exited with {self.proc.returncode}:\n{tail}")


@contextmanager
def running_daemon(config: Path, env: dict[str, str], log: Path) -> Iterator[DaemonProcess]:
    with log.open("wb") as out:
        cmd = dispatcher_cmd("run", "-c", str(config), "--log-format", "json")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=config.parent)
        try:
            yield DaemonProcess(proc, log)
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["ts"]).timestamp()


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def ledger_states(state_db: Path) -> dict[str, int]:
    """Run counts by state, read straight from the SQLite ledger (read-only)."""
    if not state_db.exists():
        return {}
    conn = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT state, COUNT(*) FROM dispatcher_runs GROUP BY state").fetchall()
    except sqlite3.OperationalError:
        return {}  # the daemon has not created its tables yet
    finally:
        conn.close()
    return {state: count for state, count in rows}


def dingtalk_from_env(**limits: Any) -> dict[str, Any]:
    return {
        "app_key": "${DINGTALK_APP_KEY}",
        "app_secret": "${DINGTALK_APP_SECRET}",
        "agent_id": "${DINGTALK_AGENT_ID}",
        **limits,
    }


def make_orders_db(path: Path, rows: int, seed: int) -> Path:
    """A small shop table, so each report's query does real (if light) work."""
    import random

    rng = random.Random(seed)
    regions = ["华东", "华南", "华北", "西南", "西北", "东北"]
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, region TEXT, amount REAL)")
    conn.executemany(
        "INSERT INTO orders (region, amount) VALUES (?, ?)",
        ((rng.choice(regions), round(rng.uniform(10, 2000), 2)) for _ in range(rows)),
    )
    conn.commit()
    conn.close()
    return path


ORDERS_SQL = (
    "SELECT region, SUM(amount) AS sales, COUNT(*) AS orders FROM orders GROUP BY region ORDER BY sales DESC"
)
