"""Scenario 3, big result: `dispatcher preview` of a huge SQLite query against plain pandas.read_sql.

Both sides are whole processes measured the same way (spawn to exit, each its own peak RSS from
wait4): `dispatcher preview` with the row cap raised to the row count, and a script that imports
pandas and SQLAlchemy and calls `pandas.read_sql` on the same query. They alternate.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

from bench.common import (
    PYTHON,
    Outcome,
    Row,
    checked,
    clean_env,
    dispatcher_cmd,
    mb,
    median,
    ratio,
    run_child,
    seconds,
)
from bench.daemonproc import write_config

NAME = "3 big result"
SQL = "SELECT id, day, region, product, amount, qty FROM sales"
LIMIT = 1.5
REGIONS = ("华东", "华南", "华北", "西南", "西北", "东北")


def make_big_db(path: Path, rows: int) -> Path:
    """`rows` varied sales lines, generated inside SQLite: a million take about a second."""
    regions = " ".join(f"WHEN {i} THEN '{name}'" for i, name in enumerate(REGIONS))
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE sales (id INTEGER PRIMARY KEY, day TEXT, region TEXT, product TEXT,"
        " amount REAL, qty INTEGER)"
    )
    conn.execute(
        f"""
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :rows)
        INSERT INTO sales (day, region, product, amount, qty)
        SELECT printf('2026-%02d-%02d', 1 + i % 12, 1 + i % 28),
               CASE (i * 7) % {len(REGIONS)} {regions} END,
               printf('商品%03d', (i * 31) % 200),
               round(1 + (i * 2654435761 % 499900) / 100.0, 2),
               1 + (i * 13) % 20
        FROM n
        """,
        {"rows": rows},
    )
    conn.commit()
    conn.close()
    return path


def write_project(folder: Path, rows: int) -> Path:
    make_big_db(folder / "big.db", rows)
    config = {
        "timezone": "Asia/Shanghai",
        "sources": {"big": "sqlite:///big.db"},
        "recipients": {"team": {"userids": ["manager4974"]}},
        "reports": {
            "big": {
                "title": "全量明细",
                "schedule": "0 9 * * *",
                "source": "big",
                "sql": SQL,
                "to": ["team"],
                "max_rows": rows,
            }
        },
    }
    return write_config(folder / "reports.yaml", config)


def run(rows: int, reps: int) -> Outcome:
    samples: dict[str, list[dict[str, float]]] = {"preview": [], "read_sql": []}
    with tempfile.TemporaryDirectory(prefix="bench-big-") as tmp:
        config = write_project(Path(tmp), rows)
        env = clean_env()
        preview = dispatcher_cmd("preview", "big", "-c", str(config), "--json")
        reference = [PYTHON, "-m", "bench.child", "read-sql", "--db", str(Path(tmp) / "big.db"), "--sql", SQL]
        for rep in range(reps):
            for side in ("preview", "read_sql") if rep % 2 == 0 else ("read_sql", "preview"):
                child = checked(run_child(preview if side == "preview" else reference, env=env), side)
                shown = json.loads(child.stdout)["rows"]
                if shown != rows:
                    raise RuntimeError(f"{side} saw {shown} rows, expected {rows}")
                samples[side].append({"seconds": child.seconds, "peak_rss_mb": child.peak_rss_mb})
    return _outcome(rows, samples)


def _outcome(rows: int, samples: dict[str, list[dict[str, float]]]) -> Outcome:
    out = Outcome(NAME, data={"rows": rows, "sql": SQL, "samples": samples})
    for key, label, fmt in (("seconds", "wall time", seconds), ("peak_rss_mb", "peak RSS", mb)):
        mine = median(s[key] for s in samples["preview"])
        theirs = median(s[key] for s in samples["read_sql"])
        out.rows.append(
            Row(
                NAME,
                f"preview of {rows:,} rows (max_rows {rows:,}): {label}",
                fmt(mine),
                f"pandas.read_sql {fmt(theirs)}",
                f"{ratio(mine, theirs):.2f}",
                f"≤ {LIMIT}× pandas",
                ratio(mine, theirs) <= LIMIT,
            )
        )
    return out
