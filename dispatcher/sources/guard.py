"""Guards around every source session: read-only and time-limited for the whole session, reset
when a connection goes back to the pool, and a client-side deadline that cancels whatever the SQL says.

query.py opens the transaction and runs the statement; this module makes sure that even a statement
which got past the transaction's guards (a `SET STATEMENT max_statement_time=0 FOR …`, a
`set_config('statement_timeout', '0', true)`, a lock taken and never released) cannot outlive the run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection

from dispatcher.errors import QueryError
from dispatcher.sources.url import MAX_TIMEOUT  # also the session's ceiling if a statement lifts its own

log = logging.getLogger(__name__)

MULTI_STATEMENTS = 1 << 16  # pymysql.constants.CLIENT.MULTI_STATEMENTS, without importing the driver


def server_engine(url: URL) -> Engine:
    """A pooled engine for PostgreSQL or MySQL/MariaDB, with session guards and pool reset installed."""
    backend = url.get_backend_name()
    if backend == "postgresql":
        engine = create_engine(_pg_session_options(url), **_POOL)
        event.listen(engine, "checkin", _pg_reset)
    elif backend in ("mysql", "mariadb"):
        engine = create_engine(url, **_POOL)
        event.listen(engine, "connect", _mysql_session)
        event.listen(engine, "checkin", _mysql_reset)
    else:
        raise QueryError(f"unsupported database {backend!r}; use SQLite, PostgreSQL or MySQL/MariaDB")
    return engine


_POOL: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 4, "max_overflow": 4, "pool_recycle": 1800}


CONNECT_TIMEOUT = 10  # seconds; PyMySQL's own default, and libpq has none


def _pg_session_options(url: URL) -> URL:
    # libpq applies -c settings in order, so ours come last and win over any in the URL.
    ours = f"-c default_transaction_read_only=on -c statement_timeout={int(MAX_TIMEOUT * 1000)}"
    existing = url.query.get("options", "")
    mine = f"{existing if isinstance(existing, str) else ' '.join(existing)} {ours}".strip()
    # Without a connect timeout, a server that accepts but never answers holds a worker until run_timeout.
    timeout = {} if "connect_timeout" in url.query else {"connect_timeout": str(CONNECT_TIMEOUT)}
    return url.update_query_dict({"options": mine, **timeout})


def _pg_reset(dbapi_conn: Any, _record: Any) -> None:
    """DISCARD ALL drops advisory locks, temp tables, prepared plans and SETs a query left behind."""
    if dbapi_conn is None:
        return
    try:
        dbapi_conn.autocommit = True  # DISCARD ALL refuses to run inside a transaction block
        dbapi_conn.execute("DISCARD ALL")
        dbapi_conn.autocommit = False
    except Exception:
        dbapi_conn.close()  # pre-ping replaces it at the next checkout


def _mysql_session(dbapi_conn: Any, _record: Any) -> None:
    if dbapi_conn.client_flag & MULTI_STATEMENTS:
        dbapi_conn.close()
        raise QueryError(
            "the source URL turns on CLIENT.MULTI_STATEMENTS, which would let one report run several "
            "statements",
            hint="remove client_flag from the source URL",
        )
    with dbapi_conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION READ ONLY")
        if "mariadb" in dbapi_conn.get_server_info().lower():
            cur.execute(f"SET SESSION max_statement_time = {MAX_TIMEOUT:.0f}")
        else:
            cur.execute(f"SET SESSION max_execution_time = {int(MAX_TIMEOUT * 1000)}")


def _mysql_reset(dbapi_conn: Any, _record: Any) -> None:
    """GET_LOCK locks live as long as the session; release them before another run gets it."""
    if dbapi_conn is None:
        return
    try:
        with dbapi_conn.cursor() as cur:
            cur.execute("SELECT RELEASE_ALL_LOCKS()")
    except Exception:
        dbapi_conn.close()


def sqlite_session(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA query_only = ON")
    dbapi_conn.set_authorizer(_sqlite_authorizer)


def _sqlite_authorizer(
    action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None
) -> int:
    """SQLite asks before each step it compiles: no ATTACH (it creates files), no PRAGMA that sets a value."""
    import sqlite3

    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and arg2 is not None:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def close_cursor(conn: Connection, cursor: Any, complete: bool, cancel: Callable[[], None]) -> None:
    """Close the cursor without reading what is left of the result."""
    if cursor is None:
        return
    if not complete and conn.dialect.name in ("mysql", "mariadb"):
        abandon_mysql_stream(conn, cancel)  # an SSCursor's close would read every remaining row
        return
    try:
        cursor.close()  # PostgreSQL: CLOSE, the server never computes the rest
    except Exception:
        conn.invalidate()  # the run's own error (or the timeout) is what gets reported


class LenientText:
    """sqlite3's text_factory for one query: a value that is not UTF-8 shows with U+FFFD, and is counted."""

    def __init__(self) -> None:
        self.invalid = 0

    def __call__(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.invalid += 1
            return raw.decode("utf-8", "replace")


def lenient_text(dbapi_conn: Any) -> LenientText:
    """Decode this connection's text leniently until it returns to the pool (`sqlite_reset`)."""
    text = LenientText()
    dbapi_conn.text_factory = text
    return text


def is_undecodable_text(exc: BaseException) -> bool:
    """sqlite3's refusal of a text value that is not UTF-8 (one bad row would fail the whole report)."""
    import sqlite3

    return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith("Could not decode to UTF-8")


def sqlite_reset(dbapi_conn: Any, _record: Any) -> None:
    """Undo what a query may have changed on the connection: ATTACHed files, query_only, the decoder."""
    if dbapi_conn is None:
        return
    try:
        dbapi_conn.text_factory = str
        dbapi_conn.set_authorizer(None)
        for _seq, name, *_ in dbapi_conn.execute("PRAGMA database_list").fetchall():
            if name not in ("main", "temp"):
                dbapi_conn.execute(f'DETACH DATABASE "{name}"')
        sqlite_session(dbapi_conn, _record)
    except Exception:
        dbapi_conn.close()


class Deadline:
    """Cancels the running statement from another thread once `seconds` have passed.

    The server-side limits can be lifted by the SQL itself; this one cannot. A lock keeps the cancel
    from landing after the statement finished (it would hit the next one instead).
    """

    def __init__(self, seconds: float, cancel: Callable[[], None]) -> None:
        self.fired = False
        self._cancel = cancel
        self._done = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()
        self._timer.join()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            try:
                self._cancel()
            except Exception as exc:  # the server-side limit still holds; the run reports the timeout
                log.warning("could not cancel a query at its deadline: %s", type(exc).__name__)


def canceller(conn: Connection) -> Callable[[], None]:
    """How to stop the statement running on `conn` from another thread, per driver."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return lambda: raw.cancel_safe(timeout=5)
    if dialect in ("mysql", "mariadb"):
        return _mysql_killer(conn, raw.thread_id())
    return raw.interrupt  # type: ignore[no-any-return]


def _mysql_killer(conn: Connection, thread_id: int) -> Callable[[], None]:
    dialect, url = conn.dialect, conn.engine.url

    def kill() -> None:
        # A second connection: the first one is busy running the statement.
        cargs, cparams = dialect.create_connect_args(url)
        side = dialect.loaded_dbapi.connect(*cargs, **{**cparams, "connect_timeout": 5})
        try:
            with side.cursor() as cur:
                cur.execute(f"KILL QUERY {int(thread_id)}")
        finally:
            side.close()

    return kill


def abandon_mysql_stream(conn: Connection, cancel: Callable[[], None]) -> None:
    """Stop an unbuffered MySQL result early without reading the rest of it.

    Closing a PyMySQL SSCursor reads every remaining row (10M rows: seconds). Instead the query is
    killed and the connection dropped from the pool; the server stops sending.
    """
    raw = conn.connection.dbapi_connection
    try:
        cancel()
    except Exception as exc:  # dropping the connection below stops the server sending anyway
        log.warning("could not kill an abandoned query: %s", type(exc).__name__)
    result = getattr(raw, "_result", None)
    if result is not None:
        result.unbuffered_active = False  # nothing left to read: the socket is about to close
    conn.invalidate()
