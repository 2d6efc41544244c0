"""Scenario 6, receipts within budget: quota-counted DingTalk calls per send batch in each mode.

Every non-exempt call spends the organisation's monthly quota (5,000 on the standard edition), so
the figure that matters is how many such calls one asyncsend_v2 batch costs once its receipts are
read. Each mode sends to the same users from a fresh sandbox whose tasks finish after a delay, as
DingTalk's do; the client is the one the daemon uses, with a short `receipt_wait`.
"""

from __future__ import annotations

import math
from typing import Any

from bench.common import LATENCY, SANDBOX_AGENT, SANDBOX_KEY, SANDBOX_SECRET, Outcome, Row, count_calls
from dispatcher.sandbox import Sandbox, SandboxOptions

NAME = "6 receipts"
COUNTED = ("asyncsend_v2", "getsendprogress", "getsendresult", "recall", "media_upload")
TARGETS = {"off": 1.0, "result": 2.0, "full": 4.0}  # full: 1 send + at most 3 receipt calls per task
WAIT = 0.3  # receipt_wait; the sandbox's tasks finish after PROGRESS_DELAY
PROGRESS_DELAY = 0.2


def run(users: int) -> Outcome:
    samples = {mode: _measure(mode, users) for mode in TARGETS}
    out = Outcome(NAME, data={"users": users, "samples": samples})
    for mode, target in TARGETS.items():
        sample = samples[mode]
        per_batch = sample["counted"] / sample["batches"]
        mark = "=" if mode == "off" else "≤"
        out.rows.append(
            Row(
                NAME,
                f"quota calls per send batch, receipts: {mode} ({sample['batches']} batches, "
                f"{sample['receipts_complete']} complete receipts)",
                f"{per_batch:.2f}",
                f"{sample['counted']} calls: {sample['by_endpoint']}",
                "",
                f"{mark} {target:.1f}",
                per_batch == target if mode == "off" else per_batch <= target,
            )
        )
    return out


def _measure(mode: str, users: int) -> dict[str, Any]:
    from dispatcher.dingtalk.client import Credentials, DingTalkClient
    from dispatcher.dingtalk.message import markdown_msg

    options = SandboxOptions(latency=LATENCY, generated_users=users, progress_delay=PROGRESS_DELAY)
    with Sandbox(options, port=0) as sb:
        creds = Credentials(SANDBOX_KEY, SANDBOX_SECRET, SANDBOX_AGENT)
        with DingTalkClient(creds, base_url=sb.url, receipts=mode, receipt_wait=WAIT) as client:
            msg = markdown_msg("回执压测", f"### 回执压测\n\n- **模式** {mode}")
            result = client.send(msg, userids=[f"u{i:05d}" for i in range(1, users + 1)])
        calls = sb.calls()
    counted = count_calls(calls, COUNTED)
    per_endpoint = {e: count_calls(calls, [e]) for e in COUNTED}
    return {
        "batches": result.batches,
        "expected_batches": math.ceil(users / 100),
        "counted": counted,
        "by_endpoint": ", ".join(f"{e} {n}" for e, n in per_endpoint.items() if n),
        "receipts_complete": sum(r.complete for r in result.receipts),
    }
