"""Scenario 9, the monthly budget: `dispatcher quota --json` against the calls the sandbox counts.

1. The forecast: the shipped reports.yaml plus the 5,000 generated reports (bench/generate.py),
   one `dispatcher quota --json` per receipts mode (off, result, full), as whole processes.
2. The check: a simulated week on a fast clock. The daemon (the same Daemon class `dispatcher run`
   builds, in this process) runs the shipped reports and a sample of the generated ones against
   the sandbox; "now" jumps from one due fire time to the next once the worker pool is idle, as
   tests/daemon_inprocess.py does. The sandbox's count of quota calls (asyncsend_v2 and the
   receipt calls) over the week is compared with what the forecast says that week costs: each
   report's fire times left in the month at the week's start minus those left at its end, times
   the forecast's calls per run. The client's own pacing is lifted for the simulation (a week of
   sends at 20 calls/s of real time would take hours); the calls themselves are unchanged.

The week starts on 2026-12-01 00:00:30 (Asia/Shanghai), with a ledger that already holds each
report's last fire time, as a daemon that was running has it. `monthly_quota: 0` keeps the 80%
alert, itself a call, out of the count. Receipt timing is compressed as well: `receipt_wait` is 50 ms and
the sandbox's tasks finish 0.5 s after the send, so `full` polls progress twice before it reads
the result, as it does against DingTalk, whose tasks are rarely finished at the first poll. The quick run
simulates 1 day with the shipped reports and every 250th generated one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from bench.common import (
    REPO,
    Outcome,
    Row,
    checked,
    clean_env,
    count_calls,
    dispatcher_cmd,
    environment,
    run_child,
    seconds,
)
from bench.generate import dump, make, seed_ledger
from bench.receipts import COUNTED
from dispatcher.sandbox import Sandbox, SandboxOptions

NAME = "9 monthly budget"
MODES = ("off", "result", "full")
TOLERANCE = 0.05
ZONE = ZoneInfo("Asia/Shanghai")
WEEK_START = datetime(2026, 12, 1, 0, 0, 30, tzinfo=ZONE)
CREDENTIALS = {"DINGTALK_APP_KEY": "dingsandboxkey", "DINGTALK_APP_SECRET": "sandbox-secret",
               "DINGTALK_AGENT_ID": "100000001"}  # fmt: skip


def combined(folder: Path, generated: dict[str, Any], every: int = 1) -> dict[str, Any]:
    """The shipped reports.yaml plus every `every`-th generated report, as one config for `folder`."""
    shipped = yaml.safe_load((REPO / "reports.yaml").read_text(encoding="utf-8"))
    if not (folder / "queries").exists():
        shutil.copytree(REPO / "queries", folder / "queries")
    config = dict(shipped)
    config["sources"] = {**shipped["sources"], **generated["sources"]}
    config["recipients"] = {**shipped["recipients"], **generated["recipients"]}
    picked = {rid: r for n, (rid, r) in enumerate(generated["reports"].items()) if n % every == 0}
    config["reports"] = {**shipped["reports"], **picked}
    return config


def with_modes(config: dict[str, Any], stem: Path, **dingtalk: Any) -> dict[str, Path]:
    """One file per receipts mode. The rest is dumped once: 5,000 reports take a second to dump."""
    body = dump({k: v for k, v in config.items() if k != "dingtalk"})
    paths = {}
    for mode in MODES:
        head = dump({"dingtalk": {**config["dingtalk"], "receipts": mode, **dingtalk}})
        paths[mode] = stem.with_name(f"{stem.name}-{mode}.yaml")
        paths[mode].write_text(head + body, encoding="utf-8")
    return paths


def run(reports: int, every: int, days: int, together: bool = False) -> Outcome:
    """`together`: the three `quota` processes run at once (the quick run: how long each took is
    then stretched, and only printed; the forecasts themselves do not change)."""
    from dispatcher.demo.shop import DEMO_FILENAME, ensure_demo_sqlite

    with (
        tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp,
        ThreadPoolExecutor(1 + len(MODES)) as background,
    ):
        folder = Path(tmp)
        # The demo database the shipped reports query takes seconds to build, and only the week
        # needs it: it is built while the forecasts, whole processes, run.
        demo = background.submit(ensure_demo_sqlite, folder / DEMO_FILENAME, WEEK_START.date())
        generated = make(folder, reports)
        whole = with_modes(combined(folder, generated), folder / "combined-1")
        forecasts = {mode: partial(_cli_forecast, whole[mode], folder, mode) for mode in MODES}
        if together:
            running = {mode: background.submit(forecast) for mode, forecast in forecasts.items()}
            monthly = {mode: future.result() for mode, future in running.items()}
        else:
            monthly = {mode: forecast() for mode, forecast in forecasts.items()}
        # Time is compressed for the receipts too: the client waits 50 ms before asking again, and
        # the sandbox's tasks take longer than that to finish, as DingTalk's take longer than 5 s.
        sample = combined(folder, generated, every)
        sim = with_modes(sample, folder / f"combined-{every}", monthly_quota=0, receipt_wait=0.05)
        demo.result()
        week = {mode: _week(sim[mode], folder, mode, days) for mode in MODES}
    return _outcome(reports, every, days, monthly, week)


def _cli_forecast(config: Path, folder: Path, mode: str) -> dict[str, Any]:
    env = clean_env(**CREDENTIALS, DISPATCHER_STATE_URL=f"sqlite:///{folder / f'quota-{mode}.db'}")
    done = checked(
        run_child(dispatcher_cmd("quota", "--json", "-c", str(config)), env=env, cwd=folder), "quota"
    )
    found = json.loads(done.stdout)
    return {"forecast": found["forecast"], "reports": len(found["reports"]), "seconds": done.seconds}


def _week(config: Path, folder: Path, mode: str, days: int) -> dict[str, Any]:
    from dispatcher.config.check import load_config
    from dispatcher.ops.quota import forecast
    from dispatcher.schedule import to_zone
    from dispatcher.store.apicalls import ApiCounter
    from dispatcher.store.db import StateStore
    from dispatcher.store.ledger import Ledger

    state_url = f"sqlite:///{folder / f'week-{mode}.db'}"
    end = WEEK_START + timedelta(days=days)
    options = SandboxOptions(calls_per_second=10_000, recipients_per_minute=10**9, per_user_daily=10**9,
                             generated_users=3000, progress_delay=0.5)  # fmt: skip
    started = time.monotonic()
    with (
        Sandbox(options, port=0) as sb,
        environment(CREDENTIALS | {"DINGTALK_API_BASE": sb.url, "DISPATCHER_STATE_URL": state_url}),
    ):
        cfg = load_config(config)
        runs = _simulate(config, state_url, end)
        calls = sb.calls()
        # After the week, so that a split_by report's cost per run is its last run's slice count.
        store = StateStore(state_url)
        counter, last = ApiCounter(store, to_zone(cfg.timezone), 0), Ledger(store).last_runs()
        at_start, at_end = forecast(cfg, counter, WEEK_START, last), forecast(cfg, counter, end, last)
        store.close()
    left = {c.id: c for c in at_end.reports}
    predicted = sum((c.runs_left - left[c.id].runs_left) * c.calls_per_run for c in at_start.reports)
    counted = count_calls(calls, COUNTED)
    return {
        "predicted": predicted,
        "counted": counted,
        "by_endpoint": {e: count_calls(calls, [e]) for e in COUNTED if count_calls(calls, [e])},
        "reports": len(cfg.reports),
        "runs": runs,
        "seconds": time.monotonic() - started,
    }


def _simulate(config_path: Path, state_url: str, end: datetime) -> dict[str, int]:
    """Run the daemon from WEEK_START to `end`, jumping from one due fire time to the next."""
    from dispatcher import clock
    from dispatcher.app import open_app
    from dispatcher.config.check import load_config
    from dispatcher.daemon.health import HealthState
    from dispatcher.daemon.loop import Daemon
    from dispatcher.dingtalk.pacing import Pacer, Pacing
    from dispatcher.run.metrics import Metrics
    from dispatcher.store.ledger import Ledger

    fake = [WEEK_START]
    real_now = clock.now
    clock.now = lambda: fake[0]
    quiet = logging.getLogger("dispatcher")
    level, quiet.level = quiet.level, logging.ERROR  # "task still sending" warnings, by design here
    try:
        seed_ledger(config_path, state_url, dict(os.environ))
        with open_app(load_config(config_path), metrics=Metrics(), owner="bench-week") as app:
            app.client._http.pacer = Pacer(Pacing(calls_per_second=1e6, recipients_per_minute=10**9))
            daemon = Daemon(app, config_path, HealthState(started_at=time.time()))
            while fake[0] < end:
                daemon.step()
                _settle(daemon)
                soonest = min(daemon.state.next_fire.values())
                fake[0] = max(fake[0] + timedelta(seconds=1), soonest)
            daemon.stop.set()
            daemon.runs.close()
            states: dict[str, int] = {}
            for r in Ledger(app.store).history(None, limit=1_000_000):
                if r.owner != "bench:seed":
                    states[r.state] = states.get(r.state, 0) + 1
    finally:
        clock.now = real_now
        quiet.setLevel(level)
    return states


def _settle(daemon: Any) -> None:
    deadline = time.monotonic() + 120
    while not daemon.runs.idle():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker pool did not go idle")
        time.sleep(0.002)


def _outcome(
    reports: int, every: int, days: int, monthly: dict[str, dict[str, Any]], week: dict[str, dict[str, Any]]
) -> Outcome:
    out = Outcome(NAME, data={"monthly": monthly, "week": week, "every": every, "days": days})
    for mode in MODES:
        m = monthly[mode]
        out.rows.append(
            Row(
                NAME,
                f"dispatcher quota --json: calls forecast for the rest of this month, receipts: {mode} "
                f"(shipped + {reports:,} generated = {m['reports']:,} reports)",
                f"{m['forecast']:,}",
                f"quota took {seconds(m['seconds'])}",
            )
        )
    for mode in MODES:
        w = week[mode]
        off_by = (w["counted"] - w["predicted"]) / w["predicted"] if w["predicted"] else float("inf")
        out.rows.append(
            Row(
                NAME,
                f"simulated {days} days, receipts: {mode} ({w['reports']} reports: shipped + every "
                f"{every}th generated; runs {w['runs']}): quota calls counted by the sandbox",
                f"{w['counted']:,}",
                f"forecast {w['predicted']:,}; {w['by_endpoint']}",
                f"{off_by:+.1%}",
                f"within ±{TOLERANCE:.0%} of the forecast",
                abs(off_by) <= TOLERANCE,
            )
        )
    return out
