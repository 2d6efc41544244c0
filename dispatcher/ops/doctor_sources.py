"""`dispatcher doctor`'s source checks: connect, a trivial query, a refused write, a read-only role.

Nothing here can change data. The write probe runs inside the guarded session's transaction and is
rolled back, and it is chosen so that it would change nothing even if a guard failed: a temporary
table (PostgreSQL, SQLite: DDL there is transactional) or a `DELETE … WHERE 1 = 0` (MySQL and
MariaDB, whose DDL would commit by itself). Whether the *role* could write is read from the
catalogs (privileges), never tried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from dispatcher.config.model import Config
from dispatcher.errors import DispatcherError
from dispatcher.sources.query import Sources

DEFAULT_TIMEOUT = 60.0
# The manual's "A read-only role for the sources" (docs/security.md), in short.
GRANTS = {
    "postgresql": (
        "CREATE ROLE dispatcher_ro LOGIN PASSWORD '…' NOSUPERUSER NOCREATEDB NOCREATEROLE; "
        "GRANT CONNECT ON DATABASE shop TO dispatcher_ro; "
        "GRANT USAGE ON SCHEMA public TO dispatcher_ro; "
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO dispatcher_ro; "
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
    ),
    "mysql": (
        "CREATE USER 'dispatcher_ro'@'%' IDENTIFIED BY '…'; GRANT SELECT ON shop.* TO 'dispatcher_ro'@'%';"
    ),
}
# Privileges that can change data or the server, most telling first.
MYSQL_WRITES = (
    "INSERT", "UPDATE", "DELETE", "DROP", "CREATE", "ALTER", "FILE", "SUPER", "INDEX", "TRIGGER", "EVENT",
    "EXECUTE", "CREATE VIEW", "CREATE ROUTINE", "ALTER ROUTINE", "CREATE USER", "RELOAD", "SHUTDOWN",
)  # fmt: skip


@dataclass(frozen=True)
class SourceFinding:
    status: str  # OK, WARN, FAIL
    detail: str
    hint: str | None = None


def source_timeout(config: Config, name: str) -> float:
    """The shortest query_timeout of the reports on `name`: what its slowest-allowed report may take."""
    timeouts = [r.query_timeout for r in config.reports.values() if r.source == name]
    return min(timeouts, default=DEFAULT_TIMEOUT)


def check_source(sources: Sources, name: str, timeout: float) -> SourceFinding:
    """The whole check of one source, given up after `timeout` (a host that never answers)."""
    box: list[SourceFinding] = []
    worker = threading.Thread(target=lambda: box.append(_guarded(sources, name, timeout)), daemon=True)
    worker.start()
    worker.join(timeout + min(timeout, 5.0))  # the slack: connecting, generating the demo database
    if not box:
        return SourceFinding(
            "FAIL",
            f"no answer within {timeout:g}s",
            "check the host, port and firewall in the source URL (its reports' query_timeout bounds this)",
        )
    return box[0]


def _guarded(sources: Sources, name: str, timeout: float) -> SourceFinding:
    try:
        return _probe(sources, name, timeout)
    except DispatcherError as exc:
        return SourceFinding("FAIL", exc.message, exc.hint)
    except (SQLAlchemyError, OSError, ImportError) as exc:
        return SourceFinding(
            "FAIL", f"cannot connect: {_short(exc)}", "check the source URL and that the database is up"
        )


def _probe(sources: Sources, name: str, timeout: float) -> SourceFinding:
    engine = sources.engine(name)  # may generate the demo database: not part of the timing
    started = time.monotonic()
    dialect = engine.dialect.name
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1").scalar()
        conn.rollback()
        seconds = time.monotonic() - started
        if seconds > timeout:
            return SourceFinding("FAIL", f"SELECT 1 took {seconds:.1f}s, more than {timeout:g}s")
        refused = _write_refused(conn, dialect)
        writes = _role_writes(conn, dialect)
    detail = f"connected, SELECT 1 in {seconds * 1000:.0f} ms"
    if refused is False:
        return SourceFinding(
            "FAIL", detail + "; a write was NOT refused", "report this: the session guard failed"
        )
    detail += "; a write was refused" if refused else "; no table to probe a write on"
    if writes:
        grants = GRANTS["postgresql" if dialect == "postgresql" else "mysql"]
        return SourceFinding(
            "WARN", f"{detail}; but the role itself could write ({', '.join(writes)})",
            f"give dispatcher a read-only role (docs/security.md#a-read-only-role-for-the-sources): {grants}",
        )  # fmt: skip
    if dialect == "sqlite":
        return SourceFinding("OK", detail + "; SQLite file opened read-only (no roles)")
    return SourceFinding("OK", detail + "; the role is read-only")


def _write_refused(conn: Connection, dialect: str) -> bool | None:
    """True: refused; False: it went through (and was rolled back); None: nothing to probe."""
    statement = _write_probe(conn, dialect)
    if statement is None:
        return None
    tx = conn.begin()
    try:
        conn.exec_driver_sql(statement)
    except SQLAlchemyError:
        return True
    finally:
        tx.rollback()
    return False


def _write_probe(conn: Connection, dialect: str) -> str | None:
    if dialect == "postgresql":
        return "CREATE TEMPORARY TABLE dispatcher_doctor_probe (x integer)"
    if dialect == "sqlite":
        return "CREATE TABLE dispatcher_doctor_probe (x INTEGER)"
    table = conn.execute(
        text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
            "AND table_type = 'BASE TABLE' ORDER BY table_name LIMIT 1"
        )
    ).scalar()
    conn.rollback()
    return None if table is None else f"DELETE FROM `{str(table).replace('`', '``')}` WHERE 1 = 0"


def _role_writes(conn: Connection, dialect: str) -> list[str]:
    """What the login role may change, from the catalogs; empty for a read-only role."""
    reader: Callable[[Connection], list[str]] | None = {
        "postgresql": _pg_writes, "mysql": _mysql_writes, "mariadb": _mysql_writes,
    }.get(dialect)  # fmt: skip
    if reader is None:
        return []
    try:
        return reader(conn)
    finally:
        conn.rollback()


def _pg_writes(conn: Connection) -> list[str]:
    if conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar():
        return ["superuser"]
    tables = conn.execute(text(_PG_WRITABLE_TABLES)).scalars().all()
    schemas = conn.execute(text(_PG_CREATE_SCHEMAS)).scalars().all()
    found = [f"INSERT/UPDATE/DELETE on {t}" for t in tables]
    return found + [f"CREATE in schema {s}" for s in schemas]


_PG_WRITABLE_TABLES = """
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  AND (has_table_privilege(c.oid, 'INSERT') OR has_table_privilege(c.oid, 'UPDATE')
       OR has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'TRUNCATE'))
ORDER BY 1 LIMIT 3
"""
_PG_CREATE_SCHEMAS = """
SELECT nspname FROM pg_namespace
WHERE has_schema_privilege(oid, 'CREATE') AND nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%'
ORDER BY 1 LIMIT 3
"""


def _mysql_writes(conn: Connection) -> list[str]:
    grantee = (
        "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', "
        "SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')"
    )
    query = " UNION ".join(
        f"SELECT PRIVILEGE_TYPE, {scope} FROM information_schema.{table} WHERE GRANTEE = {grantee}"
        for table, scope in (
            ("USER_PRIVILEGES", "'*.*'"),
            ("SCHEMA_PRIVILEGES", "CONCAT(TABLE_SCHEMA, '.*')"),
            ("TABLE_PRIVILEGES", "CONCAT(TABLE_SCHEMA, '.', TABLE_NAME)"),
        )
    )
    rows: list[Any] = list(conn.execute(text(query)).all())
    rank = {p: i for i, p in enumerate(MYSQL_WRITES)}
    writes = sorted({(rank[str(p).upper()], f"{p} on {s}") for p, s in rows if str(p).upper() in rank})
    found = [label for _rank, label in writes]
    return found[:3] + ([f"{len(found) - 3} more"] if len(found) > 3 else [])


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split())[:300]
