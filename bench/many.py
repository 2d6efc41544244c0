"""Scenario 7, many reports: a generated reports.yaml of 500 and 5,000 reports, side by side, of
two shapes: as teams write them (bench/generate_team.py) and uniform (bench/generate.py).

The uniform one: 20 sources (2 PostgreSQL schemas and 1 MariaDB database among them, made as tests/services.py
makes them), 500 recipient groups, cron and interval schedules (bench/generate.py). For each size:
`validate` and `list` as whole processes; then the real `dispatcher run`, timed from spawn until it
has logged every report's next fire time ("scheduled"), then at rest (CPU once settled, peak RSS),
then a reload after one report's title changes, timed from the write to `config.reloaded`.
Whether the reload left the other reports' next fire times alone is read from an in-process
Daemon (the same class `dispatcher run` uses), before and after the same edit, on copies of the
file and the ledger, while the window at rest runs.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench import generate_team
from bench.common import (
    Outcome,
    Row,
    checked,
    clean_env,
    dispatcher_cmd,
    environment,
    mb,
    median,
    proc_cpu_seconds,
    proc_memory_mb,
    ratio,
    run_child,
    sandbox_env,
    seconds,
    wait_until,
)
from bench.daemonproc import DaemonProcess, ledger_states, running_daemon
from bench.generate import Generated, build, last_fires, seed_runs, seed_server
from bench.rest import _settle
from bench.servers import mysql_database, postgres_schema
from dispatcher.sandbox import Sandbox

NAME = "7 many reports"
LIMITS = {"validate": 1.5, "list": 2.0, "scheduled": 5.0, "reload": 2.0}
RSS_LIMIT_MB = 200.0
CPU_LIMIT_PER_MINUTE = 1.0
# Issue 28's targets for the team config, at rest: the wall times reported (a loaded machine
# stretches them), the daemon's own CPU seconds at rest gating, as the uniform config's 1.0 does.
TEAM_LIMITS = {"validate": 1.0, "list": 1.5, "scheduled": 3.0, "reload": 1.0}
TEAM_CPU_LIMIT_PER_MINUTE = 0.5
CHANGED = "r00001"
CREDENTIALS = {"DINGTALK_APP_KEY": "k", "DINGTALK_APP_SECRET": "s", "DINGTALK_AGENT_ID": "1"}


# The two generated shapes, each labelled in the table: the config teams write (issue 28: shared
# templates, params with date macros, query files, varied cron lines) and the uniform one of issue 14.
GENERATORS = {"team config": generate_team.build, "uniform config": build}


def run(sizes: tuple[int, ...], reps: int, window: float) -> Outcome:
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-many-") as tmp:
        servers = [stack.enter_context(postgres_schema()) for _ in range(2)]
        servers.append(stack.enter_context(mysql_database()))
        for url in servers:
            seed_server(url)
        samples: dict[str, dict[int, dict[str, Any]]] = {}
        for label, make in GENERATORS.items():
            samples[label] = {}
            for size in sizes:
                now = datetime.now(UTC)
                minute = (now.minute + 30) % 60  # crons fire then; intervals on the hour
                folder = Path(tmp) / label.split()[0] / str(size)
                extra = {"busy_hour": _far_hour(now)} if make is generate_team.build else {}
                made = make(folder, size, servers=servers, minute=minute, **extra)
                samples[label][size] = _measure(made, reps, window)
    out = Outcome(NAME, data={"samples": samples})
    for label, by_size in samples.items():
        team = label == "team config"
        limits = TEAM_LIMITS if team else LIMITS
        cpu_limit = TEAM_CPU_LIMIT_PER_MINUTE if team else CPU_LIMIT_PER_MINUTE
        out.rows += _outcome(by_size, label, limits, cpu_limit).rows
    return out


def _far_hour(now: datetime) -> int:
    """An hour of the config's zone 12 hours away: the team config's `*/10` lines fire in it."""
    return (now.astimezone(ZoneInfo("Asia/Shanghai")).hour + 12) % 24


def _measure(made: Generated, reps: int, window: float) -> dict[str, Any]:
    from dispatcher.config.check import load_config

    folder, config, state_db = made.path.parent, str(made.path), made.path.parent / "state.db"
    env = clean_env(**CREDENTIALS, DISPATCHER_STATE_URL=f"sqlite:///{state_db}")
    loaded = load_config(made.path, env=CREDENTIALS)  # once: 5,000 reports take seconds to load
    _wait_for_quiet(loaded, window + 90 + 20 * reps)
    seed_runs(f"sqlite:///{state_db}", last_fires(loaded))
    # The in-process reload check works on copies, so it can run beside the window at rest.
    twin, twin_db = folder / "twin.yaml", folder / "twin-state.db"
    shutil.copy(made.path, twin)
    _copy_sqlite(state_db, twin_db)
    cli: dict[str, list[tuple[float, float]]] = {"validate": [], "list": []}
    # One untimed round first (.pyc files, the disk cache), unless the run is the quick one's single
    # round: its times gate nothing there, and scenario 5 has just run both commands.
    for rep in range(reps + 1) if reps > 1 else (1,):
        for command in cli:
            done = checked(run_child(dispatcher_cmd(command, "-c", config), env=env, cwd=folder), command)
            if rep:
                cli[command].append((done.seconds, done.cpu_seconds))
    with Sandbox(port=0) as sb, ThreadPoolExecutor(1) as aside:
        env = sandbox_env(sb.url, DISPATCHER_STATE_URL=f"sqlite:///{state_db}")
        spawned = time.time()
        with running_daemon(made.path, env, folder / "daemon.log") as daemon:
            scheduled = _scheduled(daemon, made.reports) - spawned
            startup_cpu = _settle(daemon.pid)
            # Beside the window: the window counts the daemon's own CPU seconds, which another
            # process's work does not add to, and the check gates only the next fire times.
            keeps = aside.submit(_reload_keeps_next_fires, twin, f"sqlite:///{twin_db}")
            cpu0, t0 = proc_cpu_seconds(daemon.pid), time.monotonic()
            while time.monotonic() - t0 < window:
                daemon.check_alive()
                time.sleep(min(1.0, max(0.0, window - (time.monotonic() - t0))))
            cpu1, t1 = proc_cpu_seconds(daemon.pid), time.monotonic()
            memory = proc_memory_mb(daemon.pid)
            kept = keeps.result()  # before the reload: that one is timed
            reload, validated = _reload(daemon, made.path)
        api_calls = len(sb.calls())
    return {
        "reports": made.reports,
        "servers": made.servers,
        "validate": [s for s, _ in cli["validate"]],
        "validate_cpu": [c for _, c in cli["validate"]],
        "list": [s for s, _ in cli["list"]],
        "list_cpu": [c for _, c in cli["list"]],
        "scheduled": scheduled,
        "startup_cpu_seconds": startup_cpu,
        "window_seconds": t1 - t0,
        "cpu_per_minute": (cpu1 - cpu0) / (t1 - t0) * 60,
        "peak_rss_mb": memory["VmHWM"],
        "reload": reload,
        "reload_validated": validated,
        "runs_started": sum(ledger_states(state_db).values()) - made.reports,
        "api_calls": api_calls,
    } | kept


def _copy_sqlite(source: Path, target: Path) -> None:
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def _wait_for_quiet(cfg: Any, needed: float) -> None:
    """Wait until no report fires in the next `needed` seconds (the intervals fire on the hour)."""
    now = datetime.now(UTC)
    soonest = min(r.parsed_schedule().next_fire_time(now, cfg.report_zone(r)) for r in cfg.reports.values())
    if soonest - now < timedelta(seconds=needed):
        time.sleep((soonest - now).total_seconds() + 5)


def _scheduled(daemon: DaemonProcess, reports: int) -> float:
    """Unix time of the last `report.next_fire` event: every report has its next fire time."""

    def done() -> float | None:
        daemon.check_alive()
        fires = [e["ts"] for e in daemon.events() if e.get("event") == "report.next_fire"]
        return datetime.fromisoformat(max(fires)).timestamp() if len(fires) >= reports else None

    return wait_until(done, "every report's next fire time", timeout=120, every=0.5)


def _edit(config: Path) -> None:
    """Change one report's title, written whole (a rename) as editors and deploy tools do."""
    text = config.read_text(encoding="utf-8")
    changed = text.replace("title: 报表 00001\n", "title: 报表 00001（新）\n", 1)
    assert changed != text, "the generated config has no report r00001"
    temp = config.with_suffix(".tmp")
    temp.write_text(changed, encoding="utf-8")
    os.replace(temp, config)


def _reload(daemon: DaemonProcess, config: Path) -> tuple[float, int]:
    """Seconds from the write to `config.reloaded`, and how many reports that load validated
    again rather than reused (issue 28: one, the changed one)."""
    written = time.time()
    _edit(config)

    def reloaded() -> tuple[float, int] | None:
        daemon.check_alive()
        for e in daemon.events():
            if e.get("event") in ("config.reloaded", "config.rejected"):
                at = datetime.fromisoformat(e["ts"]).timestamp()
                if e["event"] == "config.rejected":
                    raise RuntimeError("the daemon rejected the edited config")
                return at, int(e.get("validated", -1))
        return None

    at, validated = wait_until(reloaded, "config.reloaded", timeout=60, every=0.1)
    return at - written, validated


def _reload_keeps_next_fires(config: Path, state_url: str) -> dict[str, Any]:
    """The next fire times of an in-process Daemon before and after one report changes.

    The daemon's stop flag is set first, so its wake-ups return at once: only the loop's own
    bookkeeping runs, which is what decides the next fire times.
    """
    from dispatcher.app import open_app
    from dispatcher.config.check import load_config
    from dispatcher.daemon.health import HealthState
    from dispatcher.daemon.loop import Daemon
    from dispatcher.run.metrics import Metrics

    env = CREDENTIALS | {"DINGTALK_API_BASE": "http://127.0.0.1:9", "DISPATCHER_STATE_URL": state_url}
    with environment(env), open_app(load_config(config, reuse=True), metrics=Metrics(), owner="bench") as app:
        daemon = Daemon(app, config, HealthState(started_at=time.time()))
        daemon.stop.set()
        daemon.step()
        before = dict(daemon.state.next_fire)
        _edit(config)
        started = time.perf_counter()
        daemon.step()
        took = time.perf_counter() - started
        after = dict(daemon.state.next_fire)
        daemon.runs.close()
    moved = sorted(rid for rid in before if rid != CHANGED and after.get(rid) != before[rid])
    return {"reload_step_seconds": took, "next_fires_moved": len(moved), "moved_examples": moved[:5]}


def _outcome(
    samples: dict[int, dict[str, Any]],
    label: str = "",
    limits: dict[str, float] = LIMITS,
    cpu_limit: float = CPU_LIMIT_PER_MINUTE,
) -> Outcome:
    """The rows of one generator's sizes; `label` names the generator in the scenario column."""
    name = f"{NAME} ({label})" if label else NAME
    out = Outcome(NAME, data={"samples": samples})
    small, big = min(samples), max(samples)
    s, b = samples[small], samples[big]
    figures = {
        "validate": (median(b["validate"]), median(s["validate"]), f"CPU {median(b['validate_cpu']):.2f} s"),
        "list": (median(b["list"]), median(s["list"]), f"CPU {median(b['list_cpu']):.2f} s"),
        "scheduled": (b["scheduled"], s["scheduled"], f"start-up CPU {b['startup_cpu_seconds']:.2f} s"),
        "reload": (b["reload"], s["reload"], f"in-process reload step {seconds(b['reload_step_seconds'])}"),
    }
    labels = {
        "validate": "dispatcher validate: wall time",
        "list": "dispatcher list: wall time",
        "scheduled": "dispatcher run: spawn until every report's next fire time is logged",
        "reload": "reload after one report changed: file written until config.reloaded",
    }
    for key, (value, at_small, extra) in figures.items():
        out.rows.append(
            Row(
                name,
                f"{labels[key]} ({big:,} reports; reported, never fails --check)",
                seconds(value),
                f"{small:,} reports {seconds(at_small)}; {extra}",
                f"{ratio(value, at_small):.1f}× for {big // small}× reports" if big != small else "",
                f"< {limits[key]} s",
                value < limits[key],
                gates=False,
            )
        )
    if big != small:
        growth = max(ratio(figures[k][0], figures[k][1]) for k in figures)
        out.rows.append(
            Row(
                name,
                f"growth {small:,} -> {big:,} reports, worst of the four wall times above",
                f"{growth:.1f}×",
                f"{big // small}× reports",
                "",
                f"≤ {big // small}× (linear or better)",
                growth <= big / small,
            )
        )
    out.rows += [
        Row(
            name,
            f"peak RSS of dispatcher run ({big:,} reports, at rest)",
            mb(b["peak_rss_mb"]),
            f"{small:,} reports {mb(s['peak_rss_mb'])}",
            f"{ratio(b['peak_rss_mb'], s['peak_rss_mb']):.1f}×",
            f"< {RSS_LIMIT_MB:.0f} MB",
            b["peak_rss_mb"] < RSS_LIMIT_MB,
        ),
        Row(
            name,
            f"CPU seconds per minute at rest ({big:,} reports, {seconds(b['window_seconds'])} window)",
            f"{b['cpu_per_minute']:.3f}",
            f"{small:,} reports {s['cpu_per_minute']:.3f}",
            f"{ratio(b['cpu_per_minute'], s['cpu_per_minute']):.1f}×",
            f"< {cpu_limit}",
            b["cpu_per_minute"] < cpu_limit,
        ),
        Row(
            name,
            "reports the one-report reload validated again (the others reused from the last load)",
            ", ".join(str(x.get("reload_validated", "?")) for x in samples.values()),
            f"of {', '.join(f'{size:,}' for size in samples)} reports",
            "",
            "1",
            all(x.get("reload_validated") == 1 for x in samples.values()),
        ),
        Row(
            name,
            "other reports' next fire times moved by the reload; runs, API calls at rest",
            f"{b['next_fires_moved']}; {b['runs_started']}, {b['api_calls']}",
            "",
            "",
            "0; 0, 0",
            all(x["next_fires_moved"] == x["runs_started"] == x["api_calls"] == 0 for x in samples.values()),
        ),
    ]
    return out
