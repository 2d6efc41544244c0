"""Run every scenario side by side and write bench/results/latest.{json,md}.

    python -m bench            # the full run: the README's table (also written to bench/RESULTS.md)
    python -m bench --quick    # the reduced run: smaller counts, fewer repetitions
    python -m bench --quick --check --out DIR   # what .ci/run does after the tests

With --check, the exit code is 1 when any gating target FAILS (a target in absolute seconds only
reports MISS); without it, the run only reports.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    bigresult,
    budget,
    burst,
    clistart,
    fanout,
    many,
    receipts,
    rendertime,
    report,
    rest,
    rush,
    soak,
    splitfanout,
)
from bench.common import LATENCY, REPO, Outcome, Row


@dataclass(frozen=True)
class Settings:
    mode: str
    fanout_userids: int
    fanout_mobiles: int
    fanout_reps: int
    rush_reports: int
    rush_factor: int  # both per-minute recipient limits are 5000 × this
    rush_reps: int
    big_rows: int
    big_reps: int
    rest_reports: int
    rest_window: float  # seconds; the CPU target is per minute whatever the window
    cli_reps: int
    receipt_users: int = 1000
    split_recipients: int = 1000  # the split fan-out's slices, over 5 distinct contents
    many_sizes: tuple[int, ...] = (500, 5000)
    many_reps: int = 3
    many_window: float = 60.0
    burst_reports: int = 1000
    burst_factor: int = 1  # the per-minute recipient limit is 5000 × this
    budget_every: int = 50  # the simulated week runs the shipped reports and every Nth generated one
    budget_days: int = 7
    soak_seconds: float = 60.0
    soak_pause: float = 10.0  # SIGSTOP; 30 s in the hour-long soak
    render_reps: int = 7


FULL = Settings("full", 1000, 200, 3, 300, 2, 3, 1_000_000, 5, 500, 60.0, 10)
QUICK = Settings(
    "quick",
    100,
    20,
    1,
    100,
    1,
    1,
    600_000,  # smaller, the fixed start-up cost weighs more than the rows and the ratio drifts
    3,  # one pair of runs on a loaded machine was a coin toss: 1.78x once, 1.00x right after
    500,
    15.0,
    3,
    300,
    split_recipients=300,
    many_sizes=(5000,),
    many_reps=1,
    many_window=10.0,
    burst_reports=100,
    burst_factor=20,
    budget_every=250,
    budget_days=1,
)

# The quick run's scenarios whose gates are counts, memory or a daemon's own CPU seconds: they run
# beside the soak. The daemon at rest, idle for most of its time, runs in a thread of its own; the
# others one after another, the light ones first, while the soak measures its steady claim lag
# (the claims before its first SIGSTOP or kill), the heavy ones during the kill and the drain.
BESIDE_SOAK = ("receipts", "split", "fanout", "many", "budget")
IDLE_LANE = ("rest",)
SETS_CLOCK = "budget"  # its simulated week replaces dispatcher.clock.now process-wide: it runs alone

SOAK = replace(FULL, mode="soak", soak_seconds=3600.0, soak_pause=30.0)

NOTES = {
    "full": [
        "Fan-out: the typical script (bench/baseline.py) fetches a token per message, looks every mobile "
        "up every time and sends one asyncsend_v2 per user; it caches nothing, so its second run equals its "
        "first. The dispatcher's wall time includes reading receipts, which the script does not do.",
        "Rush hour: both per-minute recipient limits (sandbox and dispatcher) are 2× DingTalk's 5,000 so the "
        "run takes about a minute; the recipients still exceed one minute's allowance, so the limit binds.",
    ],
    "soak": [
        "The hour-long soak of scenario 10 alone (python -m bench --soak): three replicas on one PostgreSQL "
        "state database, one killed with SIGKILL at a random moment and restarted 60 s later, another "
        "stopped with SIGSTOP for 30 s.",
    ],
    "quick": [
        "Quick run: fan-out to 100 userids + 20 mobiles (full: 1,000 + 200); rush hour with 100 reports, "
        "whose recipients stay under one minute's allowance (the full run makes that limit bind); a "
        "600,000-row big result, three repetitions (full: 1,000,000, five); a 15 s daemon-at-rest "
        "window, CPU scaled per minute.",
        "Quick run: the soak runs in its own process beside receipts, daemon at rest, fan-out, split "
        "fan-out, many reports and the budget, whose gates are counts, memory or a daemon's own CPU "
        "seconds; the wall times those print are stretched by it and gate nothing here.",
    ],
}


def scenarios(s: Settings) -> dict[str, Callable[[], Outcome]]:
    return {
        "fanout": lambda: fanout.run(s.fanout_userids, s.fanout_mobiles, s.fanout_reps),
        "split": lambda: splitfanout.run(s.split_recipients, 5),
        "rush": lambda: rush.run(s.rush_reports, s.rush_factor, s.rush_reps),
        "big": lambda: bigresult.run(s.big_rows, s.big_reps, servers=s.mode == "full"),
        "rest": lambda: rest.run(s.rest_reports, s.rest_window),
        "cli": lambda: clistart.run(s.cli_reps),
        "receipts": lambda: receipts.run(s.receipt_users),
        "many": lambda: many.run(s.many_sizes, s.many_reps, s.many_window),
        "burst": lambda: burst.run(s.burst_reports, s.burst_factor, quick=s.mode == "quick"),
        "budget": lambda: budget.run(5000, s.budget_every, s.budget_days, together=s.mode == "quick"),
        "soak": lambda: soak.run(s.soak_seconds, s.soak_pause),
        "render": lambda: rendertime.run(s.render_reps),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reduced run for CI (about 3 minutes)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results", help="folder for latest.json/md"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a gating target fails (CI runs it so)"
    )
    parser.add_argument(
        "--soak", action="store_true", help="only the hour-long soak of three replicas (scenario 10)"
    )
    parser.add_argument("--only", nargs="+", choices=list(scenarios(QUICK)), help="run only these scenarios")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.soak:
        settings, args.only = SOAK, ["soak"]
    started = time.monotonic()
    outcomes = run_all(settings, [name for name in scenarios(settings) if name in (args.only or [name])])
    meta = {
        "mode": settings.mode,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "seconds": round(time.monotonic() - started, 1),
        "latency_ms": round(LATENCY * 1000),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "settings": settings.__dict__,
        "notes": NOTES[settings.mode],
    }
    json_path, md_path = report.write(args.out, outcomes, meta)
    rows = [r for o in outcomes for r in o.rows]
    print(report.markdown(outcomes, meta))
    print("\n".join(report.verdicts(rows)))
    if settings.mode == "full" and not args.only:
        results = REPO / "bench" / "RESULTS.md"
        results.write_text(report.with_soak(report.markdown(outcomes, meta), results), encoding="utf-8")
    if settings.mode == "soak":
        results = REPO / "bench" / "RESULTS.md"
        results.write_text(report.soak_section(results, report.markdown(outcomes, meta)), encoding="utf-8")
    print(f"\n{report.summary(rows)}; wrote {json_path} and {md_path} in {meta['seconds']:.0f} s")
    return exit_code(rows, args.check)


def _commit() -> str:
    """The checked-out commit, for the record (RESULTS.md); "" outside a git checkout."""
    import subprocess

    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def exit_code(rows: list[Row], check: bool) -> int:
    """1 under `--check` when a gating target failed; a report alone always exits 0."""
    return 1 if check and any(r.failed for r in rows) else 0


def run_all(settings: Settings, names: list[str]) -> list[Outcome]:
    """The scenarios one after another, except that the quick run's soak runs beside BESIDE_SOAK.

    The soak spends most of its time waiting (fire times, pacing, the drain); in its own process
    it leaves a core to the scenarios that gate only counts, memory or a daemon's own CPU seconds.
    Those wall times the quick run still prints are then stretched, and none of them gates. The
    scenarios that gate a wall time or a lag run alone, before the soak starts. The daemon at rest
    runs beside the first of the others, and the budget waits for it (SETS_CLOCK).
    """
    works = scenarios(settings)
    beside = [n for n in names if n in BESIDE_SOAK + IDLE_LANE]
    if settings.mode != "quick" or "soak" not in names or not beside:
        return [_run_one(name, works[name]) for name in names]
    done = {n: _run_one(n, works[n]) for n in names if n not in beside and n != "soak"}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        print("running soak in its own process, beside " + ", ".join(beside), file=sys.stderr, flush=True)
        soaking = pool.submit(_soak, settings.soak_seconds, settings.soak_pause)
        with ThreadPoolExecutor(1) as lane:
            idle = lane.submit(lambda: {n: _run_one(n, works[n]) for n in IDLE_LANE if n in names})
            for name in (n for n in BESIDE_SOAK if n in names):
                if name == SETS_CLOCK:
                    done |= idle.result()
                done[name] = _run_one(name, works[name])
            done |= idle.result()
        try:
            done["soak"] = soaking.result()
        except Exception as exc:  # the process itself died; _run_one inside it catches the rest
            done["soak"] = _failed("soak", exc)
    return [done[name] for name in names]


def _soak(duration: float, pause: float) -> Outcome:
    """The soak in a spawned process: its sandbox's threads then share no GIL with the others'."""
    return _run_one("soak", lambda: soak.run(duration, pause))


def _run_one(name: str, work: Callable[[], Outcome]) -> Outcome:
    """A scenario that crashes is a FAIL row, and the others still run."""
    print(f"running {name} …", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        outcome = work()
        outcome.data["scenario_seconds"] = round(time.monotonic() - started, 1)
        # On stderr as it happens, so a slow CI run shows where its minutes went.
        print(f"{name} took {outcome.data['scenario_seconds']:.1f} s", file=sys.stderr, flush=True)
        return outcome
    except Exception as exc:
        traceback.print_exc()
        return _failed(name, exc)


def _failed(name: str, exc: Exception) -> Outcome:
    error = f"error: {exc}"[:300]
    return Outcome(name, [Row(name, "the scenario ran to completion", error, target="runs", passed=False)])
