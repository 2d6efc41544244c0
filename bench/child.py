"""Work the benchmark runs in child processes, so each has its own memory peak and its own GIL.

    python -m bench.child fanout-dispatcher --url URL --state STATE_URL --userids 1000 --mobiles 200
    python -m bench.child fanout-baseline --url URL --userids 1000 --mobiles 200
    python -m bench.child read-sql --db FILE --sql "SELECT ..."

Each prints one JSON object; timings cover the work only, not the interpreter's start-up.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench.common import SANDBOX_AGENT, SANDBOX_KEY, SANDBOX_SECRET


def userid(i: int) -> str:
    """The sandbox's generated users (dispatcher/sandbox/directory.py): u00001, u00002, ..."""
    return f"u{i:05d}"


def mobile(i: int) -> str:
    return f"139{50000000 + i:08d}"


def fanout_people(userids: int, mobiles: int) -> tuple[list[str], list[str]]:
    """The first `userids` generated users by userid, the next `mobiles` by mobile."""
    return [userid(i) for i in range(1, userids + 1)], [
        mobile(i) for i in range(userids + 1, userids + mobiles + 1)
    ]


def message(tag: str) -> dict[str, Any]:
    from dispatcher.dingtalk.message import markdown_msg

    return markdown_msg("压测通知", f"### 压测通知\n\n- **批次** {tag}\n\n数据截至 {tag}")


def fanout_dispatcher(args: argparse.Namespace) -> dict[str, Any]:
    from dispatcher.dingtalk.client import Credentials, DingTalkClient, Pacing
    from dispatcher.store.db import StateStore
    from dispatcher.store.userids import UseridCache

    userids, mobiles = fanout_people(args.userids, args.mobiles)
    store = StateStore(args.state)  # a daemon holds its store open: not part of the send's time
    started = time.perf_counter()
    client = DingTalkClient(
        Credentials(SANDBOX_KEY, SANDBOX_SECRET, SANDBOX_AGENT),
        base_url=args.url,
        userid_cache=UseridCache(store),
        pacing=Pacing(calls_per_second=20, recipients_per_minute=5000),
    )
    with client:
        result = client.send(message(args.tag), userids=userids, mobiles=mobiles)
    elapsed = time.perf_counter() - started
    store.close()
    return {"seconds": elapsed, "recipients": result.recipients, "batches": result.batches}


def fanout_baseline(args: argparse.Namespace) -> dict[str, Any]:
    from bench.baseline import send_to_everyone

    userids, mobiles = fanout_people(args.userids, args.mobiles)
    people = [("userid", u) for u in userids] + [("mobile", m) for m in mobiles]
    started = time.perf_counter()
    sent = send_to_everyone(args.url, SANDBOX_KEY, SANDBOX_SECRET, SANDBOX_AGENT, people, message(args.tag))
    return {"seconds": time.perf_counter() - started, "sends": sent}


def read_sql(args: argparse.Namespace) -> dict[str, Any]:
    """The reference for the big result: plain pandas.read_sql of the same query, nothing else."""
    import pandas as pd
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{args.db}")
    started = time.perf_counter()
    frame = pd.read_sql(args.sql, engine)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return {"seconds": elapsed, "rows": len(frame)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.child")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("fanout-dispatcher", "fanout-baseline"):
        p = sub.add_parser(name)
        p.add_argument("--url", required=True)
        p.add_argument("--userids", type=int, required=True)
        p.add_argument("--mobiles", type=int, required=True)
        p.add_argument("--tag", default="run")
        if name == "fanout-dispatcher":
            p.add_argument("--state", required=True)
    p = sub.add_parser("read-sql")
    p.add_argument("--db", required=True)
    p.add_argument("--sql", required=True)
    args = parser.parse_args()
    work = {"fanout-dispatcher": fanout_dispatcher, "fanout-baseline": fanout_baseline, "read-sql": read_sql}
    print(json.dumps(work[args.command](args)))


if __name__ == "__main__":
    main()
