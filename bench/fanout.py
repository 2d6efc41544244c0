"""Scenario 1, fan-out: one report to many userids and mobiles, against the typical script.

Each repetition gets a fresh sandbox. The dispatcher sends twice from two fresh processes that
share one state store (the second run finds every mobile cached); the script sends once, since it
caches nothing and its second run is the same as its first. The two sides alternate order.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    FLOOR_ENDPOINTS,
    LATENCY,
    PYTHON,
    RECEIPT_ENDPOINTS,
    Outcome,
    Row,
    checked,
    clean_env,
    count_calls,
    median,
    ratio,
    run_child,
    seconds,
)
from dispatcher.sandbox import Sandbox, SandboxOptions

NAME = "1 fan-out"


def run(userids: int, mobiles: int, reps: int) -> Outcome:
    people = userids + mobiles
    sends = math.ceil(people / 100)
    floors = {"first": sends + 1 + mobiles, "second": sends + 1}
    samples: dict[str, list[dict[str, Any]]] = {"first": [], "second": [], "script": []}
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        for rep in range(reps):
            with Sandbox(SandboxOptions(latency=LATENCY, generated_users=people), port=0) as sb:
                state = f"sqlite:///{Path(tmp) / f'state-{rep}.db'}"
                sides = ["dispatcher", "script"] if rep % 2 == 0 else ["script", "dispatcher"]
                for side in sides:
                    if side == "script":
                        samples["script"].append(_measure(sb, "fanout-baseline", userids, mobiles, f"s{rep}"))
                        continue
                    for which in ("first", "second"):
                        extra = ["--state", state]
                        tag = f"d{rep}{which}"
                        samples[which].append(_measure(sb, "fanout-dispatcher", userids, mobiles, tag, extra))
    return _outcome(userids, mobiles, floors, samples)


def _measure(
    sb: Sandbox, command: str, userids: int, mobiles: int, tag: str, extra: list[str] | None = None
) -> dict[str, Any]:
    sb.reset()  # fresh call log and per-minute counters; the token stays valid, as at DingTalk
    cmd = [PYTHON, "-m", "bench.child", command, "--url", sb.url, "--userids", str(userids)]
    cmd += ["--mobiles", str(mobiles), "--tag", tag, *(extra or [])]
    child = checked(run_child(cmd, env=clean_env(), timeout=1800), command)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    calls = sb.calls()
    return {
        "seconds": result["seconds"],
        "calls": count_calls(calls, FLOOR_ENDPOINTS),
        "receipt_calls": count_calls(calls, RECEIPT_ENDPOINTS),
        "by_endpoint": {e: count_calls(calls, [e]) for e in sorted({c["endpoint"] for c in calls})},
        "throttled": sum(1 for c in calls if c["errcode"] == 90018),
        "delivered": len(sb.messages()),
    }


def _outcome(
    userids: int, mobiles: int, floors: dict[str, int], samples: dict[str, list[dict[str, Any]]]
) -> Outcome:
    out = Outcome(NAME, data={"userids": userids, "mobiles": mobiles, "floors": floors, "samples": samples})
    script_calls = max(s["calls"] for s in samples["script"])
    script_time = median(s["seconds"] for s in samples["script"])
    label = {"first": "first run", "second": "second run (mobiles cached)"}
    for which in ("first", "second"):
        worst = max(s["calls"] for s in samples[which])
        floor = floors[which]
        out.rows.append(
            Row(
                NAME,
                f"API calls, {label[which]}",
                f"{worst:,}",
                f"script {script_calls:,}; floor {floor:,}",
                f"{ratio(worst, floor):.2f}× floor (script {ratio(script_calls, floor):.1f}×)",
                f"= floor ({floor:,})",
                all(s["calls"] == floor for s in samples[which]),
            )
        )
    for which in ("first", "second"):
        took = median(s["seconds"] for s in samples[which])
        out.rows.append(
            Row(
                NAME,
                f"wall time, {label[which]}",
                seconds(took),
                f"script {seconds(script_time)}",
                f"{ratio(took, script_time):.3f}",
            )
        )
    receipts = max(s["receipt_calls"] for s in samples["first"])
    out.rows.append(
        Row(NAME, "receipt calls per run (not in the floor; included in the wall time)", f"{receipts}")
    )
    return out
