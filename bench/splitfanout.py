"""Scenario 1b, split fan-out: one `split_by` report, one slice per userid, few distinct contents.

Each recipient gets only their rows, but recipients whose rendered messages are identical share a
batch, so the floor is 1 gettoken plus ceil(recipients of each distinct content / 100) sends. The
run is the daemon's own (claim, query, render per slice, deliver, record) in this process, against
a fresh sandbox and a fresh SQLite state store; calls come from the sandbox's log.
"""

from __future__ import annotations

import math
import sqlite3
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench.common import LATENCY, Outcome, Row, count_calls, seconds
from dispatcher.sandbox import Sandbox, SandboxOptions

NAME = "1b split fan-out"
FLOOR = ("gettoken", "getbymobile", "asyncsend_v2")
FIRE = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)

REPORTS = """\
timezone: Asia/Shanghai
sources: {{data: "sqlite:///data.db"}}
dingtalk: {{app_key: {key}, app_secret: {secret}, agent_id: {agent}, api_base: "{url}", receipts: "off"}}
state: "sqlite:///{state}"
reports:
  per-store:
    title: 门店日报
    schedule: "0 8 * * *"
    source: data
    sql: "SELECT manager, region, sales FROM stores ORDER BY manager"
    split_by: {{column: manager, kind: userid}}
    template: |
      ### {{{{ title }}}}
      {{% for r in rows %}}- {{{{ r.region }}}} {{{{ r.sales }}}}
      {{% endfor %}}
"""


def run(recipients: int, contents: int) -> Outcome:
    """`recipients` managers spread over `contents` regions whose rows (and so messages) are equal."""
    sizes = Counter(i % contents for i in range(1, recipients + 1))
    floor = 1 + sum(math.ceil(n / 100) for n in sizes.values())
    with (
        tempfile.TemporaryDirectory(prefix="bench-split-") as tmp,
        Sandbox(SandboxOptions(latency=LATENCY, generated_users=recipients), port=0) as sb,
    ):
        took, state = _run_once(Path(tmp), sb, recipients, contents)
        calls = sb.calls()
        delivered = len(sb.messages())
    used = count_calls(calls, FLOOR)
    data = {"recipients": recipients, "contents": contents, "floor": floor, "calls": used,
            "delivered": delivered, "state": state, "seconds": took}  # fmt: skip
    out = Outcome(NAME, data=data)
    out.rows.append(
        Row(
            NAME,
            f"API calls, {recipients:,} slices of {contents} distinct contents",
            f"{used:,}",
            f"floor {floor:,}",
            f"{used / floor:.2f}× floor",
            f"= floor ({floor:,})",
            used == floor and delivered == recipients and state == "sent",
        )  # fmt: skip
    )
    out.rows.append(Row(NAME, "wall time (query, render every slice, send)", seconds(took)))
    return out


def _run_once(folder: Path, sb: Sandbox, recipients: int, contents: int) -> tuple[float, str]:
    from dispatcher.config.check import load_config
    from dispatcher.run.delivery import make_client, sandbox_credentials
    from dispatcher.run.metrics import Metrics
    from dispatcher.run.prepare import build_sources
    from dispatcher.run.runner import execute
    from dispatcher.run.services import Services
    from dispatcher.store.db import StateStore
    from dispatcher.store.ledger import Ledger

    _data(folder / "data.db", recipients, contents)
    opts = sb.options
    text = REPORTS.format(key=opts.app_key, secret=opts.app_secret, agent=opts.agent_id, url=sb.url,
                          state=folder / "state.db")  # fmt: skip
    (folder / "reports.yaml").write_text(text, encoding="utf-8")
    config = load_config(folder / "reports.yaml")
    store = StateStore(f"sqlite:///{folder / 'state.db'}")
    client = make_client(config, sandbox_credentials(sb), store)
    sources = build_sources(config)
    try:
        svc = Services(config, sources, client, Ledger(store), Metrics(), "bench")
        run = svc.ledger.claim("per-store", FIRE, "bench")
        assert run is not None
        started = time.perf_counter()
        state = execute(svc, config.reports["per-store"], run)
        return time.perf_counter() - started, state
    finally:
        client.close()
        sources.dispose()
        store.close()


def _data(path: Path, recipients: int, contents: int) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE stores (manager TEXT, region TEXT, sales REAL)")
        rows = [
            (f"u{i:05d}", f"区域{i % contents}", 100.0 * (i % contents)) for i in range(1, recipients + 1)
        ]
        conn.executemany("INSERT INTO stores VALUES (?, ?, ?)", rows)
        conn.commit()
    finally:
        conn.close()
