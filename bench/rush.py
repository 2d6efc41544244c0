"""Scenario 2, rush hour: many reports due in the same minute, through the real `dispatcher run`.

Every report has `run_on_start: true` and the state store starts empty, so all of them are due
the moment the daemon starts. Recipients overlap the way real groups do: a pool of managers,
known by mobile, appears in many reports. The per-minute recipient limit of both the sandbox and
the dispatcher is multiplied by the same factor, so the run stays short while the limit still
binds (the factor is chosen so the recipients exceed one minute's allowance).
"""

from __future__ import annotations

import math
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.child import mobile, userid
from bench.common import (
    FLOOR_ENDPOINTS,
    LATENCY,
    RECEIPT_ENDPOINTS,
    Outcome,
    Row,
    call_time,
    count_calls,
    max_in_window,
    mb,
    median,
    proc_memory_mb,
    ratio,
    sandbox_env,
    seconds,
    wait_until,
)
from bench.daemonproc import (
    ORDERS_SQL,
    dingtalk_from_env,
    ledger_states,
    make_orders_db,
    running_daemon,
    write_config,
)
from dispatcher.sandbox import Sandbox, SandboxOptions

NAME = "2 rush hour"
USERS = 1200
MANAGERS = 100  # users 1..100 are addressed by mobile, in many reports each
CALLS_PER_SECOND = 20
SOURCES = 3
TERMINAL = ("sent", "partial", "suppressed", "failed", "skipped")


@dataclass(frozen=True)
class Plan:
    reports: int
    per_minute: int
    recipients: int  # total over all reports, each person counted once per report
    mobiles: int  # distinct mobiles across all reports: each must be looked up once
    sends: int  # asyncsend_v2 calls: batches of at most 100 userids per report

    @property
    def floor_calls(self) -> int:
        return 1 + self.mobiles + self.sends

    @property
    def pacing_floor(self) -> float:
        return self.recipients / self.per_minute * 60


def build(folder: Path, reports: int, per_minute: int, seed: int = 7) -> Plan:
    rng = random.Random(seed)
    for i in range(1, SOURCES + 1):
        make_orders_db(folder / f"src{i}.db", rows=2000, seed=i)
    groups: dict[str, Any] = {}
    entries: dict[str, Any] = {}
    total, mobiles, sends = 0, set(), 0
    for i in range(1, reports + 1):
        size = rng.randint(20, 60)
        chosen_mobiles = [mobile(n) for n in rng.sample(range(1, MANAGERS + 1), rng.randint(1, 6))]
        chosen_userids = [
            userid(n) for n in rng.sample(range(MANAGERS + 1, USERS + 1), size - len(chosen_mobiles))
        ]
        groups[f"g{i:03d}"] = {"userids": chosen_userids, "mobiles": chosen_mobiles}
        entries[f"r{i:03d}"] = {
            "title": f"压测报表 {i:03d}",
            "schedule": "0 9 * * *",
            "source": f"src{(i - 1) % SOURCES + 1}",
            "sql": ORDERS_SQL,
            "to": [f"g{i:03d}"],
            "on_empty": "send",
            "run_on_start": True,
        }
        total += size
        mobiles.update(chosen_mobiles)
        sends += math.ceil(size / 100)
    config = {
        "timezone": "Asia/Shanghai",
        "sources": {f"src{i}": f"sqlite:///src{i}.db" for i in range(1, SOURCES + 1)},
        # Rush hour measures send pacing; receipt calls per mode are scenario 6's. `full` reads a
        # finished task at once, where `result` would hold each run's worker for receipt_wait.
        "dingtalk": dingtalk_from_env(
            calls_per_second=CALLS_PER_SECOND, recipients_per_minute=per_minute, receipts="full"
        ),
        "recipients": groups,
        "reports": entries,
    }
    write_config(folder / "reports.yaml", config)
    return Plan(reports, per_minute, total, len(mobiles), sends)


def run(reports: int, factor: int, reps: int) -> Outcome:
    per_minute = 5000 * factor
    samples = []
    for rep in range(reps):
        with tempfile.TemporaryDirectory(prefix="bench-rush-") as tmp:
            plan = build(Path(tmp), reports, per_minute)
            samples.append(_once(Path(tmp), plan, rep))
    return _outcome(plan, factor, samples)


def _once(folder: Path, plan: Plan, rep: int) -> dict[str, Any]:
    options = SandboxOptions(
        latency=LATENCY,
        generated_users=USERS,
        calls_per_second=CALLS_PER_SECOND,
        recipients_per_minute=plan.per_minute,
    )
    state_db = folder / "state.db"
    with Sandbox(options, port=0) as sb:
        env = sandbox_env(sb.url, DISPATCHER_STATE_URL=f"sqlite:///{state_db}")
        with running_daemon(folder / "reports.yaml", env, folder / "daemon.log") as daemon:
            started = daemon.started_at()

            def finished() -> bool:
                daemon.check_alive()
                return sum(ledger_states(state_db).get(s, 0) for s in TERMINAL) >= plan.reports

            wait_until(finished, "every report to finish", timeout=plan.pacing_floor * 3 + 120, every=0.5)
            memory = proc_memory_mb(daemon.pid)
        states = ledger_states(state_db)
        return _analyse(sb.calls(), sb.tasks(), started, plan) | {
            "states": states,
            "peak_rss_mb": memory["VmHWM"],
        }


def _analyse(
    calls: list[dict[str, Any]], tasks: list[dict[str, Any]], started: float, plan: Plan
) -> dict[str, Any]:
    accepted = [c for c in calls if c["endpoint"] == "asyncsend_v2" and c["errcode"] == 0]
    last = max(call_time(c) for c in accepted)
    per_second = {
        endpoint: max_in_window([(call_time(c), 1) for c in calls if c["endpoint"] == endpoint], 1.0)
        for endpoint in sorted({c["endpoint"] for c in calls})
    }
    recipients = [(call_time(c), len(c["body"]["userid_list"].split(","))) for c in accepted]
    minute_limited = sum(
        1 for t in tasks for f in t["send_result"]["forbidden_list"] if f["code"] == "143103"
    )
    return {
        "seconds": last - started,
        "calls": count_calls(calls, FLOOR_ENDPOINTS),
        "receipt_calls": count_calls(calls, RECEIPT_ENDPOINTS),
        "by_endpoint": {e: count_calls(calls, [e]) for e in sorted({c["endpoint"] for c in calls})},
        "throttled": sum(1 for c in calls if c["errcode"] == 90018),
        "max_calls_per_second": per_second,
        "max_recipients_per_minute": max_in_window(recipients, 60.0),
        "recipients_sent": sum(n for _, n in recipients),
        "forbidden_143103": minute_limited,
    }


def _outcome(plan: Plan, factor: int, samples: list[dict[str, Any]]) -> Outcome:
    out = Outcome(NAME, data={"plan": plan.__dict__ | {"factor": factor}, "samples": samples})
    took = median(s["seconds"] for s in samples)
    floor = plan.pacing_floor
    worst_calls = max(s["calls"] for s in samples)
    busiest = max(max(s["max_calls_per_second"].values()) for s in samples)
    fullest = max(s["max_recipients_per_minute"] for s in samples)
    sent = min(s["states"].get("sent", 0) for s in samples)
    throttled = max(s["throttled"] for s in samples)  # 90018: the sandbox saw too many calls
    dropped = max(s["forbidden_143103"] for s in samples)  # accepted but not delivered: over the minute
    scale = f"{plan.reports} reports, {plan.recipients:,} recipients, {plan.per_minute:,}/min (×{factor})"
    out.rows += [
        Row(
            NAME,
            f"time until the last message is accepted ({scale})",
            seconds(took),
            f"pacing floor {seconds(floor)}",
            f"{ratio(took, floor):.2f}",
            "≤ 1.2× pacing floor",
            ratio(took, floor) <= 1.2,
        ),
        Row(
            NAME,
            "API calls (gettoken + getbymobile + asyncsend_v2)",
            f"{worst_calls:,}",
            f"floor {plan.floor_calls:,}",
            f"{ratio(worst_calls, plan.floor_calls):.2f}",
            f"= floor ({plan.floor_calls:,})",
            all(s["calls"] == plan.floor_calls for s in samples),
        ),
        Row(
            NAME,
            "pacing: most calls to one API in any 1 s",
            f"{busiest}",
            f"limit {CALLS_PER_SECOND}; 90018 answers {throttled}",
            "",
            f"≤ {CALLS_PER_SECOND}, no 90018",
            busiest <= CALLS_PER_SECOND and throttled == 0,
        ),
        Row(
            NAME,
            "pacing: most recipients in any 60 s",
            f"{fullest:,}",
            f"limit {plan.per_minute:,}; 143103 forbidden {dropped}",
            "",
            f"≤ {plan.per_minute:,}, no 143103",
            fullest <= plan.per_minute and dropped == 0,
        ),
        Row(
            NAME, "runs sent", f"{sent}", f"of {plan.reports}", "", f"= {plan.reports}", sent == plan.reports
        ),
        Row(NAME, "receipt calls (not in the floor)", f"{max(s['receipt_calls'] for s in samples):,}"),
        Row(NAME, "peak RSS of dispatcher run", mb(median(s["peak_rss_mb"] for s in samples))),
    ]
    return out
