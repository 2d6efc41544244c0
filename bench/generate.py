"""A big organisation's reports.yaml: thousands of reports, 20 sources, 500 recipient groups.

    python -m bench.generate OUT_DIR --reports 5000     # writes OUT_DIR/reports.yaml and its SQLite files

Schedules mix cron (daily at 08/09/10, weekdays, Mondays, monthly, hourly) and intervals (1h to
1d), drawn with a fixed seed. 17 sources are SQLite files; the other 3 are real
PostgreSQL/MariaDB databases when their URLs are given (the bench creates private schemas for them
as tests/services.py does), else SQLite too. Groups are 20-300 of the sandbox's generated users.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench.child import userid
from bench.daemonproc import ORDERS_SQL, dingtalk_from_env, make_orders_db

SOURCES = 20
GROUPS = 500
USERS = 3000  # the sandbox's generated users the groups draw from
# Cron fields after the minute: daily at 08/09/10, weekdays, Mondays, monthly, and a few hourly.
CRONS = ("9 * * *", "8 * * *", "10 * * *", "9 * * 1-5", "9 * * 1", "10 1 * *", "* * * *")
CRON_WEIGHTS = (30, 20, 5, 15, 15, 5, 2)
EVERY = ("1h", "2h", "6h", "12h", "1d")  # aligned to local midnight: they fire at minute 0


LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(config: dict[str, Any]) -> str:
    """Lists of scalars in flow style, as people write them: the block style would pass the 2 MB limit."""
    return yaml.dump(
        config, Dumper=DUMPER, allow_unicode=True, sort_keys=False, default_flow_style=None, width=200
    )


@dataclass(frozen=True)
class Generated:
    path: Path
    reports: int
    groups: int
    servers: int  # sources that are real PostgreSQL/MariaDB databases


def build(
    folder: Path,
    reports: int,
    servers: list[str] | None = None,
    seed: int = 14,
    minute: int = 0,
    **dingtalk: Any,
) -> Generated:
    """`servers`: URLs of up to 3 prepared databases that hold an `orders` table (see seed_server).

    Cron schedules fire at `minute` past the hour and intervals on the hour, so a scenario can
    pick a minute at which nothing is due.
    """
    config = make(folder, reports, servers, seed, minute, **dingtalk)
    path = folder / "reports.yaml"
    path.write_text(dump(config), encoding="utf-8")
    return Generated(path, reports, GROUPS, len(servers or []))


def make(
    folder: Path,
    reports: int,
    servers: list[str] | None = None,
    seed: int = 14,
    minute: int = 0,
    **dingtalk: Any,
) -> dict[str, Any]:
    """What build writes, as a dict, with its SQLite files made in `folder`."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sources: dict[str, str] = {}
    for i, url in enumerate((servers or [])[:3], start=1):
        sources[f"db{i:02d}"] = url
    for i in range(len(sources) + 1, SOURCES + 1):
        make_orders_db(folder / f"db{i:02d}.db", rows=200, seed=i)
        sources[f"db{i:02d}"] = f"sqlite:///db{i:02d}.db"
    groups = {
        f"team{g:03d}": {
            "userids": [userid(n) for n in rng.sample(range(1, USERS + 1), rng.randint(20, 300))]
        }
        for g in range(1, GROUPS + 1)
    }
    entries = {}
    for i in range(1, reports + 1):
        schedule: str | dict[str, str]
        if rng.random() < 0.8:
            schedule = f"{minute} " + rng.choices(CRONS, CRON_WEIGHTS)[0]
        else:
            schedule = {"every": rng.choice(EVERY)}
        entries[f"r{i:05d}"] = {
            "title": f"报表 {i:05d}",
            "schedule": schedule,
            "source": f"db{rng.randint(1, SOURCES):02d}",
            "sql": ORDERS_SQL,
            "to": [f"team{rng.randint(1, GROUPS):03d}"],
        }
    return {
        "timezone": "Asia/Shanghai",
        "sources": sources,
        "dingtalk": dingtalk_from_env(**dingtalk),
        "recipients": groups,
        "reports": entries,
    }


def seed_server(url: str, rows: int = 200) -> None:
    """The `orders` table in a private schema/database: the same shape as make_orders_db's."""
    import sqlalchemy as sa

    rng = random.Random(url)
    regions = ["华东", "华南", "华北", "西南", "西北", "东北"]
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE orders (id INTEGER PRIMARY KEY, region VARCHAR(8), amount FLOAT)"
            )
            conn.execute(
                sa.text("INSERT INTO orders (id, region, amount) VALUES (:id, :region, :amount)"),
                [
                    {"id": n, "region": rng.choice(regions), "amount": round(rng.uniform(10, 2000), 2)}
                    for n in range(1, rows + 1)
                ],
            )
    finally:
        engine.dispose()


def seed_ledger(config_path: Path, state_url: str, env: dict[str, str]) -> int:
    """A sent run at each report's last fire time, in one transaction: a daemon that was running.

    bench/rest.py claims and finishes each run through the Ledger; for 5,000 reports one bulk
    insert of the same rows is quicker. Without these rows a first start catches up every report
    whose last fire time is within its grace.
    """
    from dispatcher.config.check import load_config

    return seed_runs(state_url, last_fires(load_config(config_path, env=env)))


def last_fires(config: Any) -> list[tuple[str, datetime]]:
    """Each report's last fire time before now, as seed_ledger seeds them (`config`: a loaded Config)."""
    from dispatcher.run.prepare import fire_time_at, now_in

    return [(r.id, fire_time_at(config, r, now_in(config))) for r in config.reports.values()]


def seed_runs(state_url: str, fires: list[tuple[str, datetime]]) -> int:
    """A sent ledger row for each (report, fire time), in one transaction."""
    from dispatcher import clock
    from dispatcher.store.db import StateStore
    from dispatcher.store.schema import runs, utc

    store = StateStore(state_url)
    now = clock.now()
    rows = [
        {
            "report_id": report_id,
            "fire_time": utc(fire).replace(microsecond=0),
            "state": "sent",
            "attempts": 1,
            "started_at": now,
            "ended_at": now,
            "owner": "bench:seed",
            "rows": 6,
            "recipients": 1,
            "task_ids": "[]",
            "receipts": "{}",
        }
        for report_id, fire in fires
    ]
    try:
        with store.begin() as conn:
            conn.execute(runs.insert(), rows)
    finally:
        store.close()
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--reports", type=int, default=5000)
    args = parser.parse_args(argv)
    made = build(args.out, args.reports)
    print(made.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
