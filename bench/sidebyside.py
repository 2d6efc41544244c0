"""Two checkouts of dispatcher measured in turn on one generated config: before/after on a loaded machine.

    python -m bench.sidebyside --before /path/to/main-checkout --reports 5000 --reps 3

Both sides run this checkout's venv; the "before" side imports dispatcher from `--before` (its
folder first on PYTHONPATH). Sides alternate (A B B A …), so load stretches both alike; the table
shows medians and the ratio after/before. Per round and side: `validate` and `list` as whole
processes, then `dispatcher run` against the sandbox: spawn until every report's next fire time is
logged ("ready"), CPU per minute in a window at rest, peak RSS, and a one-report reload from the
file write to `config.reloaded`. Each daemon gets a fresh copy of the config and the seeded ledger.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import generate_team
from bench.common import (
    checked,
    clean_env,
    dispatcher_cmd,
    median,
    proc_cpu_seconds,
    proc_memory_mb,
    run_child,
    sandbox_env,
)
from bench.daemonproc import running_daemon
from bench.generate import build, last_fires, seed_runs
from bench.many import CREDENTIALS, _copy_sqlite, _far_hour, _reload, _scheduled, _wait_for_quiet
from bench.rest import _settle
from dispatcher.sandbox import Sandbox


def measure(before: Path, config: Path, reports: int, reps: int, window: float) -> dict[str, Any]:
    from dispatcher.config.check import load_config

    loaded = load_config(config, env=CREDENTIALS)
    results: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    order = [s for r in range(reps) for s in (("before", "after") if r % 2 == 0 else ("after", "before"))]
    for n, side in enumerate(order):
        _wait_for_quiet(loaded, window + 300)  # a round: CLI, start, settle (<= 30 s), window, reload
        # Seeded for each round, after the wait: a fire time the wait let pass would otherwise be
        # caught up at the daemon's start (runs, CPU and memory in the window at rest).
        seeded = config.parent / f"seeded{n}.db"
        seed_runs(f"sqlite:///{seeded}", last_fires(loaded))
        extra = {"PYTHONPATH": str(before)} if side == "before" else {}
        for key, value in _one(config, seeded, n, reports, window, extra).items():
            results[side].setdefault(key, []).append(value)
    return results


def _one(
    config: Path, seeded: Path, n: int, reports: int, window: float, extra: dict[str, str]
) -> dict[str, float]:
    folder = config.parent
    env = clean_env(**CREDENTIALS, **extra, DISPATCHER_STATE_URL=f"sqlite:///{folder / 'cli.db'}")
    out: dict[str, float] = {}
    for command in ("validate", "list"):
        done = checked(run_child(dispatcher_cmd(command, "-c", str(config)), env=env, cwd=folder), command)
        out[command], out[f"{command}_cpu"] = done.seconds, done.cpu_seconds
    copy, state = folder / f"run{n}.yaml", folder / f"state{n}.db"
    shutil.copy(config, copy)
    _copy_sqlite(seeded, state)
    with Sandbox(port=0) as sb:
        denv = sandbox_env(sb.url, DISPATCHER_STATE_URL=f"sqlite:///{state}") | extra
        spawned = time.time()
        with running_daemon(copy, denv, folder / f"daemon{n}.log") as daemon:
            out["ready"] = _scheduled(daemon, reports) - spawned
            out["startup_cpu"] = _settle(daemon.pid)
            cpu0, t0 = proc_cpu_seconds(daemon.pid), time.monotonic()
            time.sleep(window)
            cpu1, t1 = proc_cpu_seconds(daemon.pid), time.monotonic()
            out["cpu_per_minute"] = (cpu1 - cpu0) / (t1 - t0) * 60
            out["rss_mb"] = proc_memory_mb(daemon.pid)["VmHWM"]
            out["reload"] = _reload(daemon, copy)[0]
    return out


def table(results: dict[str, dict[str, list[float]]]) -> str:
    lines = ["| figure | before (median) | after (median) | after / before |", "|---|---|---|---|"]
    for key in results["after"]:
        b, a = median(results["before"][key]), median(results["after"][key])
        lines.append(f"| {key} | {b:.3f} | {a:.3f} | {a / b if b else float('nan'):.2f}× |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sidebyside", description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the code to compare with")
    parser.add_argument("--shape", choices=("team", "uniform"), default="team")
    parser.add_argument("--reports", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0, help="seconds at rest per daemon")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-sidebyside-") as tmp:
        now = datetime.now(UTC)
        minute = (now.minute + 30) % 60
        if args.shape == "team":
            made = generate_team.build(Path(tmp), args.reports, minute=minute, busy_hour=_far_hour(now))
        else:
            made = build(Path(tmp), args.reports, minute=minute)
        started = time.time()
        results = measure(args.before.resolve(), made.path, args.reports, args.reps, args.window)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    took = time.time() - started
    print(f"{args.shape} config, {args.reports:,} reports, {args.reps} rounds per side, alternating; "
          f"{took:.0f} s; load average at the end {load}")  # fmt: skip
    print(table(results))
    print({side: {k: [round(x, 3) for x in v] for k, v in r.items()} for side, r in results.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
