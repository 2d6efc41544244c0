"""Issue 15: one statement per query, session-wide guards, pooled state reset, client-side deadline.

Every test runs against the real databases: a SQLite file, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from dispatcher.errors import QueryError
from dispatcher.sources.query import Sources, SourceSpec, run_query
from tests.conftest import run_cli, write
from tests.services import prefix, unique_name


@pytest.fixture
def pg(request) -> str:
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def my(request) -> str:
    return request.getfixturevalue("mysql_url")


MULTI = [
    "SELECT 1 AS a; COMMIT; UPDATE t SET v = 'pwned' WHERE id = 1; SELECT 1 AS b",
    "COMMIT; DELETE FROM t WHERE id = 1 RETURNING *",
    "SELECT 1 AS a; UPDATE t SET v = 'pwned' WHERE id = 1",
]


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def any_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        db = tmp_path / "t.db"
        sqlite3.connect(db).close()
        return f"sqlite:///{db}"
    return request.getfixturevalue({"postgres": "pg", "mysql": "my"}[request.param])


def _admin_exec(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def _values(url: str) -> list[tuple[int, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql("SELECT id, v FROM t ORDER BY id")]
    finally:
        engine.dispose()


@pytest.fixture
def seeded(any_url):
    _admin_exec(
        any_url, "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR(20))", "INSERT INTO t VALUES (1, 'ok')"
    )
    sources = Sources({"db": SourceSpec("db", any_url)})
    yield sources, any_url
    sources.dispose()


@pytest.mark.parametrize("sql", MULTI)
@pytest.mark.parametrize("params", [{}, {"p": 1}])
def test_several_statements_are_refused_by_the_protocol_and_nothing_changes(seeded, sql, params):
    sources, url = seeded
    text = sql if not params else sql.replace("SELECT 1 AS a", "SELECT :p AS a")
    with pytest.raises(QueryError, match="one SQL statement"):
        run_query(sources, "db", text, params if ":p" in text else {}, max_rows=10, timeout=10, report="r")
    assert _values(url) == [(1, "ok")]
    assert run_query(sources, "db", "SELECT v FROM t", {}, max_rows=10, timeout=10).frame["v"].tolist() == [
        "ok"
    ]


def test_preview_of_the_issue_reproduction_exits_1_and_the_row_stays(pg, tmp_path):
    _admin_exec(pg, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'ok')")
    config = write(
        tmp_path / "reports.yaml",
        f"""\
        sources: {{pg: "{pg}"}}
        recipients: {{team: {{userids: [u1]}}}}
        reports:
          evil:
            title: evil
            schedule: "0 9 * * *"
            source: pg
            sql: "{MULTI[0]}"
            to: [team]
        """,
    )
    done = run_cli("preview", "evil", "-c", str(config))
    assert done.returncode == 1, done.stdout
    assert "one SQL statement" in done.stderr and "Traceback" not in done.stderr
    assert _values(pg) == [(1, "ok")]


def test_mysql_connections_never_allow_multi_statements(my):
    # A URL asking for CLIENT.MULTI_STATEMENTS (65536) must not reopen the hole.
    sources = Sources({"db": SourceSpec("db", my + "?client_flag=65536")})
    try:
        with pytest.raises(QueryError, match="MULTI_STATEMENTS"):
            run_query(sources, "db", "SELECT 1 AS a", {}, max_rows=1, timeout=10)
    finally:
        sources.dispose()


# --- Defence in depth: session-wide read-only and timeout ---------------------------------------


def _one_session_value(sources: Sources, sql: str) -> object:
    return run_query(sources, "db", sql, {}, max_rows=1, timeout=10).frame.iloc[0, 0]


def test_postgres_session_is_read_only_and_timed_by_connection_options(pg):
    sources = Sources({"db": SourceSpec("db", pg)})
    try:
        engine = sources.engine("db")
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            cur = raw.cursor()
            cur.execute("SHOW default_transaction_read_only")
            assert cur.fetchone()[0] == "on"
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone()[0] not in ("0", "0ms")
            cur.execute("SHOW search_path")  # the URL's own options survive
            assert cur.fetchone()[0].startswith(prefix())
    finally:
        sources.dispose()


def test_mariadb_session_is_read_only_with_a_statement_time(my):
    sources = Sources({"db": SourceSpec("db", my)})
    try:
        ro = _one_session_value(sources, "SELECT @@SESSION.tx_read_only")
        limit = _one_session_value(sources, "SELECT @@SESSION.max_statement_time")
        assert int(ro) == 1 and float(limit) > 0
    finally:
        sources.dispose()


# --- Pooled connections come back clean --------------------------------------------------------


def _lock_free_elsewhere(url: str, check_sql: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return bool(conn.exec_driver_sql(check_sql).scalar())
    finally:
        engine.dispose()


def test_postgres_advisory_lock_is_released_when_the_connection_returns(pg):
    sources = Sources({"db": SourceSpec("db", pg)})
    try:
        run_query(sources, "db", "SELECT pg_advisory_lock(4242) AS l", {}, max_rows=1, timeout=10)
        assert _lock_free_elsewhere(pg, "SELECT pg_try_advisory_lock(4242)")
    finally:
        sources.dispose()


def test_mariadb_get_lock_is_released_when_the_connection_returns(my):
    sources = Sources({"db": SourceSpec("db", my)})
    try:
        run_query(sources, "db", "SELECT GET_LOCK('dispatcher_t', 0) AS l", {}, max_rows=1, timeout=10)
        assert _lock_free_elsewhere(my, "SELECT IS_FREE_LOCK('dispatcher_t')")
    finally:
        sources.dispose()


def test_sqlite_attach_and_pragmas_do_not_outlive_the_query(tmp_path):
    main, created = tmp_path / "main.db", tmp_path / "created.db"
    conn = sqlite3.connect(main)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    sources = Sources({"db": SourceSpec("db", f"sqlite:///{main}")})
    try:
        for sql in (
            f"ATTACH DATABASE '{created}' AS other",
            f"ATTACH DATABASE 'file:{created}?mode=rwc' AS other",
            "PRAGMA query_only = OFF",
        ):
            with pytest.raises(QueryError, match="not authorized"):
                run_query(sources, "db", sql, {}, max_rows=1, timeout=10)
        assert not created.exists()
        with pytest.raises(QueryError, match="refused a write"):
            run_query(sources, "db", "INSERT INTO t VALUES (1)", {}, max_rows=1, timeout=10)
        names = run_query(sources, "db", "SELECT name FROM pragma_database_list", {}, max_rows=9, timeout=10)
        assert names.frame["name"].tolist() == ["main"]
    finally:
        sources.dispose()


def test_sqlite_pool_reset_detaches_and_restores_query_only(tmp_path):
    from dispatcher.sources.guard import sqlite_reset

    main, other = tmp_path / "main.db", tmp_path / "other.db"
    for path in (main, other):
        sqlite3.connect(path).close()
    raw = sqlite3.connect(main)
    raw.execute(f"ATTACH DATABASE '{other}' AS other")
    raw.execute("PRAGMA query_only = OFF")
    sqlite_reset(raw, None)
    assert [r[1] for r in raw.execute("PRAGMA database_list")] == ["main"]
    assert raw.execute("PRAGMA query_only").fetchone()[0] == 1
    raw.close()


# --- Timeouts ----------------------------------------------------------------------------------


def test_mariadb_set_statement_cannot_lift_the_deadline(my):
    sources = Sources({"db": SourceSpec("db", my)})
    try:
        with pytest.raises(QueryError, match="query_timeout of 1s"):
            run_query(
                sources,
                "db",
                "SET STATEMENT max_statement_time=0 FOR SELECT SLEEP(30)",
                {},
                max_rows=1,
                timeout=1,
            )
        assert run_query(sources, "db", "SELECT 1 AS one", {}, max_rows=1, timeout=5).rows == 1
    finally:
        sources.dispose()


def test_postgres_set_local_cannot_lift_the_deadline(pg):
    sources = Sources({"db": SourceSpec("db", pg)})
    sql = "SELECT set_config('statement_timeout', '0', true), pg_sleep(30)"
    try:
        with pytest.raises(QueryError, match="query_timeout of 1s"):
            run_query(sources, "db", sql, {}, max_rows=1, timeout=1)
        assert run_query(sources, "db", "SELECT 1 AS one", {}, max_rows=1, timeout=5).rows == 1
    finally:
        sources.dispose()


def test_postgres_client_deadline_cancels_even_without_a_server_limit(pg):
    from dispatcher.sources.guard import Deadline, canceller

    sources = Sources({"db": SourceSpec("db", pg)})
    try:
        with sources.engine("db").connect() as conn:
            conn.exec_driver_sql("SET statement_timeout = 0")  # as if the SQL had lifted it
            with Deadline(1.0, canceller(conn)) as deadline, pytest.raises(sa.exc.OperationalError):
                conn.exec_driver_sql("SELECT pg_sleep(30)")
            assert deadline.fired
    finally:
        sources.dispose()


def test_the_deadline_timer_thread_ends_with_the_query(tmp_path: Path):
    db = tmp_path / "x.db"
    sqlite3.connect(db).close()
    sources = Sources({"db": SourceSpec("db", f"sqlite:///{db}")})
    before = threading.active_count()
    try:
        for _ in range(5):
            run_query(sources, "db", "SELECT 1 AS one", {}, max_rows=1, timeout=30)
        assert threading.active_count() <= before
    finally:
        sources.dispose()


# --- The README's read-only role stops what read-only transactions cannot ----------------------


def test_the_readme_postgres_role_refuses_privileged_side_effects(pg):
    from sqlalchemy.engine import make_url

    role = unique_name("ro_")
    base = make_url(pg)
    database, schema = base.database, base.query["options"].split("=", 1)[1]
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    statements = [
        f"CREATE ROLE {role} LOGIN PASSWORD 'pw' NOSUPERUSER NOCREATEDB NOCREATEROLE",
        f"GRANT CONNECT ON DATABASE {database} TO {role}",
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"ALTER ROLE {role} SET default_transaction_read_only = on",
    ]
    try:
        with admin.connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
        sources = Sources(
            {"db": SourceSpec("db", base.set(username=role, password="pw").render_as_string(False))}
        )
        try:
            for sql in (
                "SELECT pg_read_file('/etc/hostname') AS f",
                "SELECT lo_import('/etc/hostname') AS l",
            ):
                with pytest.raises(QueryError, match="permission denied"):
                    run_query(sources, "db", sql, {}, max_rows=1, timeout=10)
        finally:
            sources.dispose()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


def test_the_readme_mariadb_role_refuses_into_outfile(my, tmp_path):
    from sqlalchemy.engine import make_url

    user = unique_name("ro_")
    base = make_url(my)
    _admin_exec(
        my,
        f"CREATE USER '{user}'@'%%' IDENTIFIED BY 'pw'",
        f"GRANT SELECT ON {base.database}.* TO '{user}'@'%%'",
    )
    sources = Sources(
        {"db": SourceSpec("db", base.set(username=user, password="pw").render_as_string(False))}
    )
    target = tmp_path / "out.txt"
    try:
        with pytest.raises(QueryError, match="FILE privilege"):
            run_query(sources, "db", f"SELECT 1 AS a INTO OUTFILE '{target}'", {}, max_rows=1, timeout=10)
        assert run_query(
            sources, "db", "SELECT LOAD_FILE('/etc/hostname') AS f", {}, max_rows=1, timeout=10
        ).frame["f"].tolist() == [None]
    finally:
        sources.dispose()
        _admin_exec(my, f"DROP USER '{user}'@'%%'")
    assert not target.exists()
