"""`dispatcher state backup FILE`: a consistent copy of a SQLite state store while the daemon runs.

SQLite's online backup API copies the database page by page under its own locks, so the copy is
one committed state even while a daemon writes (a plain `cp` of a live WAL database is not). A
server database has its own tools; the error says which.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from dispatcher.errors import StateError

SERVER_TOOLS = {
    "postgresql": (
        "back up a PostgreSQL state store with pg_dump, e.g. pg_dump --format=custom "
        "--table='dispatcher_*' -f FILE DBNAME, and restore it with pg_restore --clean -d DBNAME FILE"
    ),
    "mysql": (
        "back up a MySQL/MariaDB state store with mysqldump --single-transaction DBNAME $(the "
        "dispatcher_* tables) > FILE, and restore it with mysql DBNAME < FILE"
    ),
}


@dataclass(frozen=True)
class Backup:
    source: Path
    target: Path
    schema_version: int
    runs: int
    size: int


def backup(url: str, target: Path) -> Backup:
    """Copy the SQLite store at `url` to `target` (a new file), checked before it is in place."""
    backend = make_url(url).get_backend_name()
    if backend != "sqlite":
        family = "mysql" if backend == "mariadb" else backend
        tool = SERVER_TOOLS.get(family, "use the database's own backup tool")
        raise StateError(f"`state backup` copies SQLite state stores; this one is {backend}", hint=tool)
    source = Path(make_url(url).database or "")
    if not source.is_file():
        raise StateError(
            f"no state store at {source} yet: nothing to back up",
            hint="a store is created by the first run, send or history; check DISPATCHER_STATE_URL or state:",
        )
    target = target.expanduser()
    if target.exists():
        raise StateError(f"{target} already exists", hint="name a new file; a backup never overwrites one")
    partial = target.with_name(f".{target.name}.partial")
    try:
        _copy(source, partial)
        version, runs = _check(partial)
        os.replace(partial, target)
    except (OSError, sqlite3.Error) as exc:
        partial.unlink(missing_ok=True)
        raise StateError(f"cannot back up {source} to {target}: {exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Backup(source, target, version, runs, target.stat().st_size)


def _copy(source: Path, target: Path) -> None:
    src = sqlite3.connect(source, timeout=30)  # not mode=ro: a WAL store's reader may need its -shm
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, whatever the source used
        finally:
            dst.close()
    finally:
        src.close()


def _check(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        (verdict,) = conn.execute("PRAGMA integrity_check").fetchone()
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"the copy fails SQLite's integrity check: {verdict}")
        row = conn.execute("SELECT value FROM dispatcher_meta WHERE key = 'schema'").fetchone()
        if row is None:
            raise sqlite3.DatabaseError("it is not a dispatcher state store (no schema version)")
        (runs,) = conn.execute("SELECT COUNT(*) FROM dispatcher_runs").fetchone()
        return int(row[0]), int(runs)
    finally:
        conn.close()
