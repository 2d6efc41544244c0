"""Queries: bound parameters, read-only on SQLite, row cap, timeout, paths relative to the config."""

from __future__ import annotations

import sqlite3

import pytest

from dispatcher.errors import QueryError
from dispatcher.sources.query import Sources, SourceSpec, run_query


@pytest.fixture
def sources(tmp_path):
    db = tmp_path / "data.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x INTEGER, name TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"n{i}") for i in range(1000)])
    conn.commit()
    conn.close()
    s = Sources({"db": SourceSpec("db", f"sqlite:///{db}")})
    yield s
    s.dispose()


def count_rows(sources) -> int:
    path = sources.specs["db"].url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM t").fetchone()[0]
    finally:
        conn.close()


def test_parameters_are_bound_not_pasted(sources):
    evil = "0 OR 1=1"
    result = run_query(sources, "db", "SELECT x FROM t WHERE name = :n", {"n": evil}, max_rows=10, timeout=5)
    assert result.rows == 0
    result = run_query(sources, "db", "SELECT x FROM t WHERE name = :n", {"n": "n7"}, max_rows=10, timeout=5)
    assert result.frame["x"].tolist() == [7]


def test_fetching_stops_at_the_row_cap_and_marks_truncated(sources):
    result = run_query(sources, "db", "SELECT x FROM t ORDER BY x", {}, max_rows=100, timeout=5)
    assert (result.rows, result.truncated) == (100, True)
    assert result.frame["x"].tolist() == list(range(100))
    exact = run_query(sources, "db", "SELECT x FROM t", {}, max_rows=1000, timeout=5)
    assert (exact.rows, exact.truncated) == (1000, False)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE t SET x = 0",
        "DELETE FROM t",
        "DROP TABLE t",
        "CREATE TABLE z (y)",
        "INSERT INTO t VALUES (1, 'a')",
    ],
)
def test_writes_are_refused_by_the_database_and_nothing_changes(sources, sql):
    with pytest.raises(QueryError, match="refused a write"):
        run_query(sources, "db", sql, {}, max_rows=10, timeout=5, report="r")
    assert count_rows(sources) == 1000
    after = run_query(sources, "db", "SELECT SUM(x) AS s FROM t", {}, max_rows=10, timeout=5)
    assert after.frame["s"].tolist() == [sum(range(1000))]


def test_a_long_query_is_cancelled_at_its_timeout(sources):
    slow = "SELECT COUNT(*) FROM t a, t b, t c"  # 10^9 rows: minutes without the timeout
    with pytest.raises(QueryError, match="query_timeout of 0.3s"):
        run_query(sources, "db", slow, {}, max_rows=10, timeout=0.3)
    # The pooled connection is still usable afterwards.
    assert run_query(sources, "db", "SELECT 1 AS one", {}, max_rows=1, timeout=5).rows == 1


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path):
    missing = tmp_path / "missing.db"
    s = Sources({"db": SourceSpec("db", f"sqlite:///{missing}")})
    with pytest.raises(QueryError, match="does not exist"):
        run_query(s, "db", "SELECT 1", {}, max_rows=1, timeout=5)
    assert not missing.exists()


def test_sql_errors_are_query_errors_without_sql_dump(sources):
    with pytest.raises(QueryError) as info:
        run_query(sources, "db", "SELECT nope FROM t", {}, max_rows=1, timeout=5, report="r1")
    assert "no such column" in str(info.value)
    assert "report 'r1'" in str(info.value)


def test_unknown_driver_gets_an_install_hint():
    s = Sources({"db": SourceSpec("db", "oracle+nosuchdriver://u:secretpw@h/db")})
    with pytest.raises(QueryError) as info:
        run_query(s, "db", "SELECT 1", {}, max_rows=1, timeout=5)
    assert "secretpw" not in str(info.value)
