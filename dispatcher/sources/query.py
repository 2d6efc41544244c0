"""Read-only query execution: one pooled engine per source, bound parameters, row cap, timeout.

Guard rails follow datasette's `execute`: a time limit, a row cap and a `truncated` flag that
travels on to the renderer. Every source is opened so that the *database* refuses writes.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from dispatcher.errors import QueryError
from dispatcher.sources.guard import (
    Deadline,
    canceller,
    close_cursor,
    is_undecodable_text,
    lenient_text,
    server_engine,
    sqlite_reset,
    sqlite_session,
)
from dispatcher.sources.url import (
    DEFAULT_MAX_BYTES,
    INSTALL_HINT,
    format_bytes,
    missing_driver_hint,
    url_problem,
    with_known_driver,
)

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class QueryResult:
    frame: pd.DataFrame
    rows: int
    truncated: bool
    seconds: float
    invalid_text: int = 0  # SQLite text values that were not UTF-8, shown with U+FFFD


@dataclass(frozen=True)
class SourceSpec:
    name: str
    url: str  # already resolved against the config folder


FETCH_CHUNK = 10_000  # rows per fetchmany: few round trips, few Row objects alive at once
FIRST_CHUNK = 100  # before the row width is known
SIZED = {str, bytes, bytearray, memoryview}
DRIVERS = {"psycopg", "pymysql", "sqlite3"}

# Hooks run before a SQLite source file is opened; the demo database registers one.
MissingSqliteHook = Callable[[Path], bool]


class Sources:
    """Engines per source, created on first use and shared (pooled) by every run."""

    def __init__(self, specs: Mapping[str, SourceSpec], on_missing_sqlite: MissingSqliteHook | None = None):
        self.specs = dict(specs)
        self.on_missing_sqlite = on_missing_sqlite
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def engine(self, name: str) -> Engine:
        with self._lock:
            if name not in self._engines:
                self._engines[name] = self._create(self.specs[name])
            return self._engines[name]

    def dispose(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def _create(self, spec: SourceSpec) -> Engine:
        problem = url_problem(spec.url)
        if problem:
            raise QueryError(problem, source=spec.name, hint="check the source URL in reports.yaml")
        try:
            url = make_url(spec.url)
            if url.get_backend_name() == "sqlite":
                return _sqlite_engine(spec, url.database, self.on_missing_sqlite)
            return server_engine(with_known_driver(url))
        except ImportError as exc:
            backend = spec.url.partition(":")[0].partition("+")[0]
            raise QueryError(
                f"the database driver is not installed ({_short(exc)})",
                source=spec.name,
                hint=missing_driver_hint(backend),
            ) from None
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise QueryError(
                f"cannot use URL {_safe(spec.url)}: {_short(exc)}", source=spec.name, hint=INSTALL_HINT
            ) from None


def _sqlite_engine(spec: SourceSpec, database: str | None, hook: MissingSqliteHook | None) -> Engine:
    if not database or database == ":memory:":
        raise QueryError("an in-memory SQLite database has no data to report on", source=spec.name)
    path = Path(database)
    if not path.exists() and not (hook and hook(path)):
        raise QueryError(
            f"SQLite database file {path} does not exist",
            source=spec.name,
            hint="relative paths resolve against the config file's folder",
        )
    # mode=ro: SQLite itself refuses writes and never creates a file by accident.
    uri = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
    engine = create_engine(uri)
    event.listen(engine, "connect", sqlite_session)
    event.listen(engine, "checkin", sqlite_reset)
    return engine


def run_query(
    sources: Sources,
    source: str,
    sql: str,
    params: Mapping[str, Any],
    *,
    max_rows: int,
    timeout: float,
    report: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> QueryResult:
    """Run `sql` read-only with bound `params`; stop fetching after `max_rows` rows.

    Exactly one statement runs: PostgreSQL gets it through the extended protocol (a server-side
    cursor), PyMySQL never enables multi-statements and sqlite3 refuses a second one.
    """
    import pandas as pd  # imported here so validate/list stay fast

    started = time.monotonic()
    engine = sources.engine(source)
    limits = _Limits(max_rows, max_bytes, timeout, report, source)
    try:
        with engine.connect() as conn:
            keys, rows, invalid = _run_read_only(conn, sql, params, limits)
    except QueryError:
        raise
    except Exception as exc:
        if not _is_database_error(exc):
            raise
        raise _query_error(exc, report, source, timeout, sql) from None
    truncated = len(rows) > max_rows
    frame = pd.DataFrame.from_records(rows[:max_rows], columns=keys, coerce_float=True)
    return QueryResult(frame, len(frame), truncated, time.monotonic() - started, invalid)


@dataclass(frozen=True)
class _Limits:
    max_rows: int
    max_bytes: int
    timeout: float
    report: str | None
    source: str


def _run_read_only(
    conn: Connection, sql: str, params: Mapping[str, Any], limits: _Limits
) -> tuple[list[str], list[tuple[Any, ...]], int]:
    """The columns, the rows, and how many SQLite text values were not UTF-8."""
    _begin_read_only(conn, limits.timeout)
    cancel = canceller(conn)
    try:
        with Deadline(limits.timeout, cancel) as deadline:
            try:
                try:
                    return (*_read(conn, sql, params, limits, cancel), 0)
                except Exception as exc:
                    if not is_undecodable_text(exc):
                        raise
                # Rare, so the common case keeps sqlite3's fast decoder: read again, leniently.
                text = lenient_text(conn.connection.dbapi_connection)
                return (*_read(conn, sql, params, limits, cancel), text.invalid)
            except Exception as exc:
                if deadline.fired and _is_database_error(exc):
                    raise _timeout_error(limits) from None
                raise
    finally:
        if not conn.invalidated:
            _end_read_only(conn)


def _read(
    conn: Connection, sql: str, params: Mapping[str, Any], limits: _Limits, cancel: Callable[[], None]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    cursor, complete = None, False
    try:
        cursor = _open_cursor(conn, sql, params)
        if cursor.description is None:
            raise QueryError("the query returned no result set; reports must SELECT", report=limits.report)
        keys = [d[0] for d in cursor.description]
        rows, complete = _fetch(cursor, limits)
        return keys, rows
    finally:
        close_cursor(conn, cursor, complete, cancel)


def _open_cursor(conn: Connection, sql: str, params: Mapping[str, Any]) -> Any:
    """A driver cursor streaming the result: rows are pulled in chunks, never all at once."""
    compiled = text(sql).compile(dialect=conn.dialect)
    bound = compiled.construct_params(dict(params))
    args: Any = tuple(bound[n] for n in compiled.positiontup or ()) if compiled.positional else bound
    raw = conn.connection.dbapi_connection
    assert raw is not None
    dialect = conn.dialect.name
    if dialect == "postgresql":
        cursor = raw.cursor(name="dispatcher_report")  # DECLARE … CURSOR: extended protocol, one SELECT
    elif dialect in ("mysql", "mariadb"):
        import pymysql.cursors

        cursor = raw.cursor(pymysql.cursors.SSCursor)
    else:
        cursor = raw.cursor()  # sqlite3 steps lazily and refuses a second statement
    cursor.execute(compiled.string, args)
    return cursor


def _fetch(cursor: Any, limits: _Limits) -> tuple[list[tuple[Any, ...]], bool]:
    """At most `max_rows + 1` rows as plain tuples, and whether that was the whole result.

    Tuples straight from the driver: pandas builds a frame from them several times faster than
    from SQLAlchemy Rows (bench/, 3). The byte count fails the run once the result outgrows
    `max_bytes`, before it can take the process's memory.
    """
    limit = limits.max_rows + 1
    rows: list[tuple[Any, ...]] = []
    size, want = 0, FIRST_CHUNK
    while len(rows) < limit:
        chunk = cursor.fetchmany(min(want, limit - len(rows)))
        if not chunk:
            return rows, True
        size += _chunk_bytes(chunk)
        # Size the next chunk so that it can hold at most an eighth of max_bytes: wide rows come
        # a few at a time, narrow ones FETCH_CHUNK at a time.
        want = max(1, min(FETCH_CHUNK, limits.max_bytes // 8 * (len(rows) + len(chunk)) // max(size, 1)))
        if size > limits.max_bytes:
            raise _too_big_error(limits)
        rows.extend(chunk if isinstance(chunk[0], tuple) else map(tuple, chunk))
    return rows, False


def _chunk_bytes(chunk: list[Any]) -> int:
    """Approximate size of a chunk: text and binary values by length, other values 8 bytes each."""
    total = 0
    for column in zip(*chunk, strict=True):
        try:
            total += sum(map(len, column))
            continue
        except TypeError:
            pass
        if not SIZED.intersection(map(type, column)):
            total += 8 * len(column)
        else:
            total += sum(len(v) if type(v) in SIZED else 8 for v in column)
    return total


def _begin_read_only(conn: Connection, timeout: float) -> None:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        conn.exec_driver_sql("BEGIN")
    elif dialect == "postgresql":
        conn.exec_driver_sql("BEGIN READ ONLY")
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
    elif dialect in ("mysql", "mariadb"):
        # START TRANSACTION READ ONLY alone lets DDL through (implicit commit); see docs/clarifications.md §2.
        conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
        _mysql_timeout(conn, timeout)
        conn.exec_driver_sql("START TRANSACTION READ ONLY")
    else:
        raise QueryError(f"unsupported database {dialect!r}; use SQLite, PostgreSQL or MySQL")


def _end_read_only(conn: Connection) -> None:
    try:
        conn.exec_driver_sql("ROLLBACK")
    except SQLAlchemyError:
        conn.invalidate()  # a broken connection must not go back to the pool


def _mysql_timeout(conn: Connection, timeout: float) -> None:
    # MariaDB calls it max_statement_time (seconds); MySQL max_execution_time (milliseconds).
    if getattr(conn.dialect, "is_mariadb", False):
        conn.exec_driver_sql(f"SET SESSION max_statement_time = {max(timeout, 0.001):.3f}")
    else:
        conn.exec_driver_sql(f"SET SESSION max_execution_time = {max(1, int(timeout * 1000))}")


def _is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, SQLAlchemyError) or any(
        c.__name__ in ("Error", "DatabaseError", "InterfaceError") and c.__module__.split(".")[0] in DRIVERS
        for c in type(exc).__mro__
    )


ONE_STATEMENT = (
    "a report runs exactly one SQL statement, a query that only reads (SELECT, WITH … SELECT, VALUES)"
)
READ_ONLY_HINT = "reports may only read; nothing was changed"


def _query_error(exc: BaseException, report: str | None, source: str, timeout: float, sql: str) -> QueryError:
    message = _short(exc)
    lowered = message.lower()
    if (
        "interrupted" in lowered
        or "statement timeout" in lowered
        or "max_statement_time" in lowered
        or ("maximum statement execution time" in lowered)
    ):
        return QueryError(
            f"the query ran longer than its query_timeout of {timeout:g}s and was cancelled",
            report=report,
            source=source,
            hint="make the query cheaper, or raise query_timeout for this report",
        )
    if _several_statements(exc, message, sql):
        return QueryError(
            f"the database refused the query ({message}): {ONE_STATEMENT}",
            report=report,
            source=source,
            hint=READ_ONLY_HINT,
        )
    if "readonly" in lowered or "read-only" in lowered or "read only" in lowered:
        return QueryError(
            f"the database refused a write: {message}", report=report, source=source, hint=READ_ONLY_HINT
        )
    return QueryError(message, report=report, source=source)


def _several_statements(exc: BaseException, message: str, sql: str) -> bool:
    """Whether the driver or server refused the text for not being one SELECT.

    This only picks the wording: the refusal itself came from the protocol (PostgreSQL's extended
    protocol and DECLARE, MySQL without multi-statements, sqlite3's one-statement execute).
    """
    orig = getattr(exc, "orig", exc)
    if "one statement at a time" in message or "multiple commands into a prepared statement" in message:
        return True
    if "DECLARE CURSOR" in message:
        return True
    first = (re.findall(r"\w+", sql) or [""])[0]
    if getattr(orig, "sqlstate", None) == "42601" and first and f'at or near "{first}"' in message:
        return True  # DECLARE … CURSOR FOR only takes a query: the first word was not one
    near = re.search(r"near '(.+)' at line", message, re.S)
    if near and getattr(orig, "args", (None,))[0] == 1064:
        head, found, _tail = sql.partition(near.group(1))
        return bool(found) and head.rstrip().endswith(";")
    return False


def _timeout_error(limits: _Limits) -> QueryError:
    return QueryError(
        f"the query ran longer than its query_timeout of {limits.timeout:g}s and was cancelled",
        report=limits.report,
        source=limits.source,
        hint="make the query cheaper, or raise query_timeout for this report",
    )


def _too_big_error(limits: _Limits) -> QueryError:
    return QueryError(
        f"the result is larger than max_bytes ({format_bytes(limits.max_bytes)}); the run was stopped "
        "before it could use that much memory",
        report=limits.report,
        source=limits.source,
        hint="select fewer or smaller columns, lower max_rows, or raise max_bytes for this report",
    )


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text_ = str(orig) if orig is not None else str(exc)
    text_ = text_.split("\n[SQL:")[0].split("\nLINE ")[0]  # PostgreSQL's excerpt shows our DECLARE
    return " ".join(text_.split())[:500]


def _safe(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"
