"""The state store's database: engine, schema migration, health check and guarded connections.

The schema version lives in `dispatcher_meta`; `migrate()` brings an older store up to date.
Everything else in `dispatcher.store` (ledger, userid cache, API call counter) reads and writes
through `connect()` and `begin()`, which turn database failures into StateError.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, Engine, Table, create_engine, insert, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from dispatcher.config.environment import lookup
from dispatcher.errors import StateError
from dispatcher.sources.url import missing_driver_hint, state_url_problem, with_known_driver
from dispatcher.store.schema import ADDED_COLUMNS, SCHEMA_VERSION, meta_table, metadata

__all__ = ["SCHEMA_VERSION", "StateStore", "open_state", "resolve_sqlite_url", "state_url"]

DEFAULT_STATE_PATH = Path(".dispatcher") / "state.db"
_SQLITE_HEADER = b"SQLite format 3\x00"
_SCHEMA_LOCK_KEY = 0x64697370  # "disp": the advisory lock racing PostgreSQL migrations share


def state_url(config_dir: Path, configured: str | None = None) -> str:
    """DISPATCHER_STATE_URL (or its _FILE) wins, then the config's `state:`, then SQLite beside the config."""
    env = lookup("DISPATCHER_STATE_URL")
    url = env or configured
    if url:
        _check_url(url, "DISPATCHER_STATE_URL" if env else "the config's state: key")
        return resolve_sqlite_url(url, config_dir)
    return f"sqlite:///{config_dir / DEFAULT_STATE_PATH}"


def resolve_sqlite_url(url: str, base_dir: Path) -> str:
    """Relative SQLite paths resolve against the config's folder, not the working directory."""
    parsed = make_url(url)
    db = parsed.database
    if parsed.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return url
    if Path(db).is_absolute():
        return url
    return parsed.set(database=str(base_dir / db)).render_as_string(hide_password=False)


class StateStore:
    """The state database over any SQLAlchemy URL; the ledger, userid cache and counters build on it."""

    def __init__(self, url: str) -> None:
        self.url = url
        _check_url(url, "the state store URL")
        try:
            self.engine = _engine(url)
            self.migrate()
        except ImportError as exc:
            backend = make_url(url).get_backend_name()
            raise StateError(
                f"cannot open the state store {_safe_url(url)}: its database driver is not installed "
                f"({_short(exc)})",
                hint=missing_driver_hint(backend),
            ) from None
        except SQLAlchemyError as exc:
            raise StateError(
                f"cannot open the state store {_safe_url(url)}: {_short(exc)}",
                hint="check DISPATCHER_STATE_URL or the config's state: key, and that the database is up",
            ) from None
        self._file = _sqlite_file(url)
        self._identity = _identity(self._file) if self._file else None
        # SQLite's POSIX locks are per process and inode, and closing *any* descriptor of the file
        # drops them all: the header is read through one descriptor held open for the store's life.
        self._fd = os.open(self._file, os.O_RDONLY) if self._file else None
        if self._file is not None:
            # From now on a missing file is a problem check() reports, not a new empty store.
            self.engine.dispose()
            self.engine = _engine(url, existing=self._file)

    def check(self) -> str | None:
        """Why the store cannot be trusted now, or None when it is the file it opened and it answers.

        A deleted or replaced SQLite file would otherwise keep taking writes through open handles
        (into the deleted inode) while every other process sees nothing. A replaced file is
        reported once, then adopted if it answers like a state store: that is how a restore looks.
        """
        problem = self._file_problem() or self._query_problem()
        if problem is not None:
            self.engine.dispose()  # no pooled handle keeps writing into a deleted or replaced file
        return problem

    def _file_problem(self) -> str | None:
        if self._file is None or self._fd is None:
            return None
        try:
            identity = _identity(self._file)
            if identity != self._identity:
                # Another inode: none of our locks live on it, so a new descriptor is safe.
                fd = os.open(self._file, os.O_RDONLY)
                os.close(self._fd)
                self._fd, self._identity = fd, identity
                return f"the state file {self._file} was replaced by another file"
            header = os.pread(self._fd, len(_SQLITE_HEADER), 0)
        except FileNotFoundError:
            return f"the state file {self._file} was deleted"
        except OSError as exc:
            return f"cannot read the state file {self._file}: {exc.strerror or exc}"
        if header != _SQLITE_HEADER:
            return f"the state file {self._file} is not a SQLite database any more (overwritten?)"
        return None

    def _query_problem(self) -> str | None:
        try:
            self.schema_version()
        except (SQLAlchemyError, ValueError) as exc:
            return f"the state store {_safe_url(self.url)} does not answer: {_short(exc)}"
        return None

    def migrate(self) -> None:
        """Create missing tables and record the schema version; safe when processes race."""
        with self.engine.begin() as conn:
            _lock_schema(conn)
            metadata.create_all(conn, checkfirst=True)
            found = conn.execute(select(meta_table.c.value).where(meta_table.c.key == "schema")).scalar()
            if found is None:
                conn.execute(meta_table.insert().values(key="schema", value=str(SCHEMA_VERSION)))
            elif int(found) < SCHEMA_VERSION:
                _upgrade(conn, int(found))
            elif int(found) > SCHEMA_VERSION:
                raise StateError(
                    f"the state store has schema version {found}, newer than this release ({SCHEMA_VERSION})",
                    hint="upgrade dispatcher, or point DISPATCHER_STATE_URL at another database",
                )

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(meta_table.c.value).where(meta_table.c.key == "schema")).scalar_one()
            )

    def close(self) -> None:
        self.engine.dispose()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def connect(self) -> AbstractContextManager[Connection]:
        """A connection whose database failures surface as StateError (no URL password, no traceback)."""
        return _guarded(self.engine.connect, self.url)

    def begin(self) -> AbstractContextManager[Connection]:
        """One transaction, committed on success, with the same StateError guard as `connect()`."""
        return _guarded(self.engine.begin, self.url)


@contextmanager
def _guarded(opener: Callable[[], AbstractContextManager[Connection]], url: str) -> Iterator[Connection]:
    """Database failures become StateError: no URL password, no traceback."""
    try:
        with opener() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StateError(f"state store {_safe_url(url)} failed: {_short(exc)}") from None


def _upgrade(conn: Connection, found: int) -> None:
    """Bring an older store's existing tables up to SCHEMA_VERSION (create_all made the new ones)."""
    for version in range(found + 1, SCHEMA_VERSION + 1):
        for table, column, sql_type in ADDED_COLUMNS.get(version, ()):
            if not _has_column(conn, table, column):
                _add_column(conn, table, column, sql_type)
    conn.execute(update(meta_table).where(meta_table.c.key == "schema").values(value=str(SCHEMA_VERSION)))


def _has_column(conn: Connection, table: str, column: str) -> bool:
    return column in {c["name"] for c in inspect(conn).get_columns(table)}


def _add_column(conn: Connection, table: str, column: str, sql_type: str) -> None:
    if sql_type == "TIMESTAMP" and conn.dialect.name == "mysql":
        sql_type = "DATETIME"  # a MariaDB TIMESTAMP may update itself on every write of the row
    try:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))
    except SQLAlchemyError:
        # MariaDB takes no schema lock here: a process starting at the same moment may have won.
        if not _has_column(conn, table, column):
            raise


def _check_url(url: str, where: str) -> None:
    """The problems sources are refused for, refused here too, before SQLAlchemy parses anything."""
    problem = state_url_problem(url)
    if problem is None:
        try:
            make_url(url)
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            problem = f"not a usable database URL: {_short(exc)}"
    if problem is not None:
        raise StateError(
            f"{where}: {problem}",
            hint="set DISPATCHER_STATE_URL or state: to e.g. sqlite:///state.db or postgresql+psycopg://user@host/db",
        )


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    db = parsed.database
    if parsed.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def _lock_schema(conn: Connection) -> None:
    # Racing processes take turns, so later ones find the tables made and create nothing.
    # pysqlite would otherwise commit each CREATE on its own, leaving the race open table by table.
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _engine(url: str, existing: Path | None = None) -> Engine:
    """With `existing`, connections open that SQLite file read-write but never create it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # WAL + a busy timeout let several local processes share one state file safely.
        engine = create_engine(url, connect_args={"timeout": 30})
        if existing is not None:
            uri = f"{existing.resolve().as_uri()}?mode=rw"
            engine = create_engine(
                url, creator=lambda: sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
            )
        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            _enable_wal(cur)
            cur.close()

        return engine
    return create_engine(with_known_driver(parsed), pool_pre_ping=True)


def _enable_wal(cur: sqlite3.Cursor) -> None:
    # Switching a new file to WAL answers "database is locked" at once, without the busy timeout,
    # while another process does the same: processes opening a new store together take turns.
    deadline = time.monotonic() + 30
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return " ".join(text.split())[:300]


@contextmanager
def open_state(
    config_dir: Path, configured: str | None, *, create: bool = True
) -> Iterator[StateStore | None]:
    """The state store of a config, closed on exit; None when `create` is False and a SQLite
    state file does not exist yet (`list` never creates one). Light on purpose: `list` uses it
    without importing the app (bench scenario 7)."""
    url = state_url(config_dir, configured)
    if not create and make_url(url).get_backend_name() == "sqlite":
        if not Path(make_url(url).database or "").is_file():
            yield None
            return
    store = StateStore(url)
    try:
        yield store
    finally:
        store.close()


def ensure_row(store: StateStore, table: Table, key: Column[Any], value: str, **rest: Any) -> None:
    """Insert the row `key == value` unless it exists; another process inserting it first is fine.

    The pacing windows keep one lock row per key (robots, DingTalk's limits): each reservation
    updates it first, which serialises reservations of the key across replicas.
    """
    with store.connect() as conn:
        with conn.begin():
            exists = conn.execute(select(key).where(key == value)).first() is not None
        if not exists:
            try:
                with conn.begin():
                    conn.execute(insert(table).values({key.name: value, **rest}))
            except IntegrityError:
                pass  # another replica created it first
