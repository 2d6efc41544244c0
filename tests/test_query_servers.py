"""Report sources on real PostgreSQL and MariaDB: read-only guard, server-side timeout, same numbers."""

from __future__ import annotations

import re
import uuid

import pytest
import sqlalchemy as sa

from dispatcher.cli.main import main
from dispatcher.demo import shop as demo
from dispatcher.errors import QueryError
from dispatcher.sources.query import Sources, SourceSpec, run_query
from tests.conftest import REPO
from tests.daemon_harness import wait_until


@pytest.fixture(params=["postgres", "mysql"])
def server_url(request) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def seeded(server_url):
    engine = sa.create_engine(server_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1), (2), (3)")
    engine.dispose()
    sources = Sources({"db": SourceSpec("db", server_url)})
    yield sources, server_url
    sources.dispose()


def table_sum(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT SUM(x) FROM t").scalar_one()
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE t SET x = 0",
        "DELETE FROM t",
        "INSERT INTO t VALUES (9)",
        "DROP TABLE t",
        "CREATE TABLE z (y INT)",
        "TRUNCATE TABLE t",
    ],
)
def test_writes_and_ddl_are_refused_by_the_server_and_nothing_changes(seeded, sql):
    sources, url = seeded
    with pytest.raises(QueryError) as info:
        run_query(sources, "db", sql, {}, max_rows=10, timeout=10, report="r")
    assert "read" in str(info.value).lower()
    assert table_sum(url) == 6
    # The pooled connection stays read-only and usable for the next report.
    assert run_query(sources, "db", "SELECT SUM(x) AS s FROM t", {}, max_rows=1, timeout=10).frame[
        "s"
    ].tolist() == [6]


def test_statement_timeout_is_enforced_by_the_server(seeded):
    sources, url = seeded
    # The alias tells this test's query apart from other sessions' (xdist workers, other runs).
    alias = f"wait_{uuid.uuid4().hex[:12]}"
    slow = f"SELECT {'pg_sleep' if url.startswith('postgresql') else 'SLEEP'}(30) AS {alias}"
    with pytest.raises(QueryError, match="query_timeout"):
        run_query(sources, "db", slow, {}, max_rows=1, timeout=1.0)
    wait_until(lambda: not still_running(url, alias), "the server to stop the cancelled query", timeout=60)


def still_running(url: str, fragment: str) -> bool:
    engine = sa.create_engine(url)
    sql = (
        "SELECT query FROM pg_stat_activity WHERE state = 'active'"
        if url.startswith("postgresql")
        else "SELECT info FROM information_schema.processlist WHERE info IS NOT NULL"
    )
    try:
        with engine.connect() as conn:
            rows = [r[0] or "" for r in conn.exec_driver_sql(sql)]
        return any(
            fragment in r.lower() and "processlist" not in r.lower() and "pg_stat" not in r for r in rows
        )
    finally:
        engine.dispose()


def test_shipped_reports_give_the_same_numbers_as_sqlite(demo_server_url, demo_sqlite):
    sources = Sources(
        {"lite": SourceSpec("lite", f"sqlite:///{demo_sqlite}"), "srv": SourceSpec("srv", demo_server_url)}
    )
    cases = [
        ("daily_sales.sql", {"day": "2026-11-27", "prev_day": "2026-11-26", "prev_week": "2026-11-20"}),
        ("weekly_top.sql", {"start": "2026-11-16", "end": "2026-11-22"}),
        ("refunds_alert.sql", {"day": "2026-11-27", "threshold": 0.05}),
        ("daily_sales_trend.sql", {"start": "2026-11-13", "day": "2026-11-27"}),
        ("daily_orders_by_region.sql", {"day": "2026-11-27"}),
    ]
    try:
        for name, params in cases:
            sql = (REPO / "queries" / name).read_text(encoding="utf-8")
            got = {
                s: run_query(sources, s, sql, params, max_rows=100, timeout=30).frame for s in ("lite", "srv")
            }
            lite = got["lite"].astype(str).values.tolist()
            srv = got["srv"].astype(float, errors="ignore").astype(str).values.tolist()
            assert _numbers(lite) == _numbers(srv), name
            assert len(lite) >= 1
    finally:
        sources.dispose()


def _numbers(rows: list[list[str]]) -> list[list[str]]:
    """Compare as numbers where they are numbers (SQLite gives floats, servers give Decimals)."""

    def norm(v: str) -> str:
        try:
            return f"{float(v):.6f}"
        except ValueError:
            return v

    return [[norm(v) for v in row] for row in rows]


def test_demo_load_cli_refuses_to_overwrite_without_replace(server_url, capsys):
    """In-process CLI. One demo table, made empty by hand, is enough to refuse; one full load
    (seconds) is enough to replace. A load into an empty database is `demo_server_url`'s first step."""
    engine = sa.create_engine(server_url)
    demo.METADATA.tables["regions"].create(engine)
    engine.dispose()
    load = ["demo", "load", "--source", server_url, "--end", "2026-11-28"]
    assert main(load) == 1
    refused = capsys.readouterr().err
    assert "--replace" in refused and "regions" in refused
    assert main([*load, "--replace"]) == 0
    [loaded] = re.findall(r"\borders (\d+)", capsys.readouterr().out)
    assert table_count(server_url, "orders") == int(loaded) > 30_000


def table_count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one()
    finally:
        engine.dispose()


def test_unreachable_source_is_a_query_error():
    sources = Sources(
        {"db": SourceSpec("db", "postgresql+psycopg://postgres:pw@127.0.0.1:1/x?connect_timeout=2")}
    )
    with pytest.raises(QueryError) as info:
        run_query(sources, "db", "SELECT 1", {}, max_rows=1, timeout=5)
    assert "pw@" not in str(info.value)
