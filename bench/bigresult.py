"""Scenario 3, big result: `dispatcher preview` of a huge SQLite query against plain pandas.read_sql.

Both sides are whole processes measured the same way (spawn to exit, each its own peak RSS from
wait4): `dispatcher preview` with the row cap raised to the row count, and a script that imports
pandas and SQLAlchemy and calls `pandas.read_sql` on the same query. They alternate.

Then the caps (issue 15): a query that could return far more than the default 10,000 rows, and one
whose 10,000 rows are 200 KB blobs, must peak within 1.5× of what a query returning just the
capped rows needs. The full run adds PostgreSQL and MariaDB series of 20M and 10M rows.
"""

from __future__ import annotations

import json
import os
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


CAP = 10_000  # the default max_rows
BLOBS = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) "
    "SELECT i, zeroblob(200000) AS blob FROM n"
)
# name -> (environment variable, default URL, the huge query, the same query cut to the cap)
SERVERS = {
    "PostgreSQL": (
        "DISPATCHER_TEST_POSTGRES_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "SELECT g, md5(g::text) AS h FROM generate_series(1, 20000000) AS g",
    ),
    "MariaDB": (
        "DISPATCHER_TEST_MYSQL_URL",
        "mysql+pymysql://root@127.0.0.1:3306/test",
        "SELECT seq, MD5(seq) AS h FROM seq_1_to_10000000",
    ),
}


def run(rows: int, reps: int, servers: bool = False) -> Outcome:
    outcome = run_uncapped(rows, reps)
    with tempfile.TemporaryDirectory(prefix="bench-cap-") as tmp:
        folder = Path(tmp)
        make_big_db(folder / "big.db", min(rows, 100_000))
        cases = [("SQLite, 100,000-row table", "sqlite:///big.db", SQL, 0)]
        cases.append(("SQLite, 10,000 rows of 200 KB blobs", "sqlite:///big.db", BLOBS, 1))
        for name, (var, default, sql) in SERVERS.items() if servers else ():
            cases.append((name + ", " + sql.split(" FROM ")[-1], os.environ.get(var) or default, sql, 0))
        for label, url, sql, code in cases:
            outcome.rows.append(_capped(folder, label, url, sql, code))
    return outcome


def _capped(folder: Path, label: str, url: str, sql: str, code: int) -> Row:
    """Peak RSS of the capped preview against a preview of just what the cap lets through.

    That is the first 10,000 rows for the row cap, and the 320 blobs (64,000,000 bytes) that fit
    under the default max_bytes of 64 MB for the byte cap.
    """
    env = clean_env()
    keep = CAP if code == 0 else 320
    capped = _preview(folder, "capped", url, sql)
    small = _preview(folder, "small", url, f"SELECT * FROM ({sql}) AS s LIMIT {keep}")
    mine, theirs = run_child(capped, env=env), checked(run_child(small, env=env), f"{label}: reference")
    ok = mine.returncode == code and (code == 0 or "max_bytes" in mine.stderr)
    what = "stops at max_rows" if code == 0 else "fails at max_bytes"
    return Row(
        NAME,
        f"{label}: peak RSS, {what}" + ("" if ok else f" (exit {mine.returncode}: {mine.stderr[-200:]})"),
        mb(mine.peak_rss_mb),
        f"the first {keep:,} rows {mb(theirs.peak_rss_mb)}",
        f"{ratio(mine.peak_rss_mb, theirs.peak_rss_mb):.2f}",
        f"≤ {LIMIT}× what the cap lets through",
        ok and ratio(mine.peak_rss_mb, theirs.peak_rss_mb) <= LIMIT,
    )


def _preview(folder: Path, name: str, url: str, sql: str) -> list[str]:
    config = {
        "sources": {"db": url},
        "recipients": {"team": {"userids": ["manager4974"]}},
        "reports": {
            name: {"title": name, "schedule": "0 9 * * *", "source": "db", "sql": sql, "to": ["team"]}
        },
    }
    path = write_config(folder / f"{name}.yaml", config)
    return dispatcher_cmd("preview", name, "-c", str(path), "--json")


def run_uncapped(rows: int, reps: int) -> Outcome:
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
