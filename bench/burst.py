"""Scenario 8, the top-of-the-hour burst: 1,000 reports due in the same minute, through `dispatcher run`.

Each report goes to 1-6 teams of 50 of the sandbox's people (50-300), drawn with a fixed seed. The
sandbox holds DingTalk's limits: 20 calls/s per API and 5,000 recipients a minute (the quick run
multiplies the minute's allowance, see bench/run.py). The reports are hourly crons at the next
whole minute, so their fire time is a real one the daemon meets while running, not a catch-up
(the quick run: `every: 20s`, its first fire time, so the window opens within 20 s).
The daemon has 256 workers (the most `daemon.workers` allows) and `receipts: full`, as rush hour
has: the default `result` holds each run's worker for receipt_wait.

The workers bound only execution, not claiming: the loop pass where the reports become due plans
and claims all their fire times at once, in a few batched ledger statements (daemon_runs), and
queues the claimed runs for the workers, whose heartbeat keeps them from other replicas' reapers.
(Before, each report planned and claimed inside its worker, so only the first 256 were claimed
at the fire time and the rest as workers freed up from pacing, minutes later.)

Claim lag is each run's ledger claim (started_at) minus its fire time. Delivery lag is each
report's last accepted asyncsend_v2 minus the fire time, from the sandbox's own log. The pacing
floor is the larger of recipients ÷ the per-minute limit and send calls ÷ 20 per second.
"""

from __future__ import annotations

import math
import random
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.child import userid
from bench.common import (
    LATENCY,
    Outcome,
    Row,
    call_time,
    mb,
    proc_memory_mb,
    ratio,
    sandbox_env,
    seconds,
    wait_until,
)
from bench.daemonproc import ORDERS_SQL, dingtalk_from_env, make_orders_db, running_daemon, write_config
from bench.generate import seed_runs
from bench.soak import FOOTER, ZONE
from dispatcher.sandbox import Sandbox, SandboxOptions

NAME = "8 burst"
USERS = 3000
TEAM = 50
CALLS_PER_SECOND = 20
SOURCES = 3
WORKERS = 256
CLAIM_P99 = 2.0
FINISH_RATIO = 1.1
QUICK_PERIOD = 20  # seconds; the quick burst's floor is about 10 s, so it ends before the next wave
FINAL = ("sent", "partial", "suppressed", "failed", "skipped", "missed")


@dataclass(frozen=True)
class Plan:
    reports: int
    per_minute: int
    recipients: int
    sends: int
    fire: datetime

    @property
    def pacing_floor(self) -> float:
        return max(self.recipients / self.per_minute * 60, self.sends / CALLS_PER_SECOND)


def build(folder: Path, reports: int, per_minute: int, quick: bool, seed: int = 8) -> Plan:
    rng = random.Random(seed)
    for i in range(1, SOURCES + 1):
        make_orders_db(folder / f"src{i}.db", rows=500, seed=i)
    now = datetime.now(UTC)
    if quick:  # the next 20 s boundary at least 6 s away: time for the daemon to start
        fire = datetime.fromtimestamp(
            (int(now.timestamp()) + 6) // QUICK_PERIOD * QUICK_PERIOD + QUICK_PERIOD, UTC
        )
        schedule: str | dict[str, str] = {"every": f"{QUICK_PERIOD}s"}
    else:
        fire = (now + timedelta(seconds=20)).replace(second=0, microsecond=0) + timedelta(minutes=1)
        schedule = f"{fire.minute} * * * *"  # Asia/Shanghai is a whole-hour offset
    # Reports go to teams, as a real organisation writes them: each to 1-6 of 60 teams of 50
    # people. (A list of its own per report would not fit the 2 MiB config-file limit at 1,000.)
    people = rng.sample(range(1, USERS + 1), USERS)
    groups = {
        f"team{t:02d}": {"userids": [userid(n) for n in people[t * TEAM : (t + 1) * TEAM]]}
        for t in range(USERS // TEAM)
    }
    entries, total, sends = {}, 0, 0
    for i in range(1, reports + 1):
        teams = rng.sample(sorted(groups), rng.randint(1, 6))
        size = TEAM * len(teams)
        entries[f"b{i:04d}"] = {
            "title": f"整点报表 {i:04d}",
            "schedule": schedule,
            "source": f"src{(i - 1) % SOURCES + 1}",
            "sql": ORDERS_SQL,
            "to": teams,
            "on_empty": "send",
        }
        total += size
        sends += math.ceil(size / 100)
    config = {
        "timezone": "Asia/Shanghai",
        "sources": {f"src{i}": f"sqlite:///src{i}.db" for i in range(1, SOURCES + 1)},
        "dingtalk": dingtalk_from_env(
            calls_per_second=CALLS_PER_SECOND, recipients_per_minute=per_minute, receipts="full"
        ),
        "daemon": {"workers": WORKERS, "shutdown_timeout": 5},
        "recipients": groups,
        "reports": entries,
    }
    write_config(folder / "reports.yaml", config)
    # The fire time before the burst is in the ledger, as in a daemon that was running: without
    # it, a first start would catch that one up at once, a burst of its own.
    before = fire - (timedelta(seconds=QUICK_PERIOD) if quick else timedelta(hours=1))
    seed_runs(f"sqlite:///{folder / 'state.db'}", [(rid, before) for rid in entries])
    return Plan(reports, per_minute, total, sends, fire)


def run(reports: int, factor: int, quick: bool) -> Outcome:
    per_minute = 5000 * factor
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        folder = Path(tmp)
        plan = build(folder, reports, per_minute, quick)
        options = SandboxOptions(
            latency=LATENCY,
            generated_users=USERS,
            calls_per_second=CALLS_PER_SECOND,
            recipients_per_minute=per_minute,
            per_user_daily=100_000,
        )
        state_db = folder / "state.db"
        with Sandbox(options, port=0) as sb:
            env = sandbox_env(sb.url, DISPATCHER_STATE_URL=f"sqlite:///{state_db}")
            with running_daemon(folder / "reports.yaml", env, folder / "daemon.log") as daemon:
                daemon.started_at()

                def finished() -> bool:
                    daemon.check_alive()
                    done = sum(1 for r in _rows(state_db, plan.fire) if r.state in FINAL)
                    return done >= plan.reports

                timeout = (plan.fire - datetime.now(UTC)).total_seconds() + plan.pacing_floor * 3 + 120
                wait_until(finished, "every run of the burst to finish", timeout=timeout, every=0.5)
                memory = proc_memory_mb(daemon.pid)
            rows = _rows(state_db, plan.fire)
            data = _analyse(plan, rows, sb.calls(), sb.tasks()) | {"peak_rss_mb": memory["VmHWM"]}
    return _outcome(plan, factor, data, quick)


def _rows(state_db: Path, fire: datetime) -> list[Any]:
    from dispatcher.store.db import StateStore
    from dispatcher.store.ledger import Ledger

    if not state_db.exists():
        return []
    store = StateStore(f"sqlite:///{state_db}")
    try:
        return [r for r in Ledger(store).history(None, limit=1_000_000) if r.fire_time == fire]
    finally:
        store.close()


def _analyse(
    plan: Plan, rows: list[Any], calls: list[dict[str, Any]], tasks: list[dict[str, Any]]
) -> dict[str, Any]:
    fire = plan.fire.timestamp()
    claims = sorted(r.started_at.timestamp() - fire for r in rows if r.attempts == 1)
    last_send: dict[str, float] = {}
    for task in tasks:
        footer = FOOTER.search(task["msg"].get("markdown", {}).get("text", ""))
        when = datetime.fromisoformat(footer[1]).replace(tzinfo=ZONE) if footer else None
        if when is None or when.timestamp() != fire:
            continue
        title = task["msg"]["markdown"]["title"]
        last_send[title] = max(
            last_send.get(title, 0.0), datetime.fromisoformat(task["at"]).timestamp() - fire
        )
    delivery = sorted(last_send.values())
    states: dict[str, int] = {}
    for r in rows:
        states[r.state] = states.get(r.state, 0) + 1
    return {
        "fire": plan.fire.isoformat(),
        "claim_lag": _dist(claims),
        "delivery_lag": _dist(delivery),
        "finished_after": delivery[-1] if delivery else None,
        "states": states,
        "throttled_90018": sum(1 for c in calls if c["errcode"] == 90018),
        "first_call_after_fire": min((call_time(c) - fire for c in calls), default=None),
    }


def _dist(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    pick = lambda pct: values[min(len(values) - 1, round(pct / 100 * (len(values) - 1)))]  # noqa: E731
    return {"p50": pick(50), "p99": pick(99), "max": values[-1], "n": len(values)}


def _outcome(plan: Plan, factor: int, data: dict[str, Any], quick: bool) -> Outcome:
    out = Outcome(NAME, data={"plan": plan.__dict__ | {"factor": factor}, **data})
    claim, delivery = data["claim_lag"], data["delivery_lag"]
    took = data["finished_after"] or float("inf")
    floor = plan.pacing_floor
    sent = data["states"].get("sent", 0)
    scale = f"{plan.reports:,} reports, {plan.recipients:,} recipients, {plan.per_minute:,}/min"
    out.rows += [
        Row(
            NAME,
            f"claim lag (ledger claim − fire time) p50 / p99 / max ({scale}, {WORKERS} workers)",
            f"{_s(claim['p50'])} / {_s(claim['p99'])} / {_s(claim['max'])}",
            f"{claim['n']} claims",
            "",
            f"p99 ≤ {CLAIM_P99:g} s",
            claim["p99"] is not None and claim["p99"] <= CLAIM_P99 and claim["n"] == plan.reports,
        ),
        Row(
            NAME,
            "time from the fire time to the last accepted send",
            seconds(took),
            f"pacing floor {seconds(floor)}",
            f"{ratio(took, floor):.2f}",
            f"≤ {FINISH_RATIO}× pacing floor" + (" (reported only in the quick run)" if quick else ""),
            ratio(took, floor) <= FINISH_RATIO,
            # Next to the quick burst's 10 s floor, the work before a run's first send (its query
            # and rendering) is a noticeable part; the full run's floor is 34 minutes.
            gates=not quick,
        ),
        Row(
            NAME,
            "delivery lag (each report's last accepted send − fire time) p50 / p99 / max",
            f"{_s(delivery['p50'])} / {_s(delivery['p99'])} / {_s(delivery['max'])}",
        ),
        Row(
            NAME,
            "runs sent; 90018 answers",
            f"{sent}; {data['throttled_90018']}",
            f"of {plan.reports}; states {data['states']}",
            "",
            f"= {plan.reports}; 0",
            sent == plan.reports and data["throttled_90018"] == 0,
        ),
        Row(NAME, "peak RSS of dispatcher run", mb(data["peak_rss_mb"])),
    ]
    return out


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"
