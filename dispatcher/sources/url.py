"""Source URLs and result sizes, checked without importing SQLAlchemy or a driver.

`validate` must stay fast and work offline, so the URL is checked against the pattern SQLAlchemy
itself parses (sqlalchemy.engine.url), and the login user is judged from the URL alone.
"""

from __future__ import annotations

import re
from typing import Any

from dispatcher import install_hint

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
MIN_TIMEOUT, MAX_TIMEOUT = 1.0, 86400.0  # query_timeout's range, in seconds

# backend -> (drivers we run with, the driver a bare `backend://` URL gets, the extra that installs it)
BACKENDS: dict[str, tuple[tuple[str, ...], str | None, str | None]] = {
    "sqlite": (("pysqlite",), None, None),
    "postgresql": (("psycopg",), "psycopg", "postgres"),
    "mysql": (("pymysql",), "pymysql", "mysql"),
    "mariadb": (("pymysql",), "pymysql", "mysql"),
}
SUPERUSERS = {"postgresql": "postgres", "mysql": "root", "mariadb": "root"}
INSTALL_HINT = f"PostgreSQL needs {install_hint('postgres')}; MySQL/MariaDB {install_hint('mysql')}"
EXAMPLES = (
    "e.g. sqlite:///shop.db, postgresql+psycopg://user:password@host:5432/db or mysql+pymysql://user@host/db"
)

# The grammar of sqlalchemy.engine.url._parse_url.
_URL = re.compile(
    r"""
    (?P<name>[\w\+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/\?]+)\]|(?P<ipv4host>[^/:\?]+))?(?::(?P<port>[^/\?]*))?)?
    (?:/(?P<database>[^\?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.X | re.S,
)


def url_problem(url: str) -> str | None:
    """What is wrong with a source URL, or None. Never repeats the URL (it may hold a password)."""
    match = _URL.fullmatch(url.strip())
    if match is None:
        return f"not a usable database URL; expected {EXAMPLES}"
    if match["port"] and not match["port"].isdigit():
        return f"not a usable database URL: the port must be a number; expected {EXAMPLES}"
    backend, _, driver = match["name"].partition("+")
    if backend not in BACKENDS:
        return f"not a usable database URL: unsupported database {backend!r}; expected {EXAMPLES}"
    drivers, _default, _extra = BACKENDS[backend]
    if driver and driver not in drivers:
        return (
            f"not a usable database URL: unknown database driver {driver!r} for {backend}; "
            f"use {backend}+{drivers[0]}://"
        )
    if backend == "sqlite" and (match["database"] or ":memory:") == ":memory:":
        return "an in-memory SQLite database has no data to report on; give a file, e.g. sqlite:///shop.db"
    return None


def state_url_problem(url: str) -> str | None:
    """url_problem for the state store's URL, where an in-memory SQLite database forgets every run."""
    match = _URL.fullmatch(url.strip())
    if (
        match
        and match["name"].partition("+")[0] == "sqlite"
        and (match["database"] or ":memory:") == ":memory:"
    ):
        return "an in-memory SQLite state store would forget every run; give a file, e.g. sqlite:///state.db"
    return url_problem(url)


def superuser_warning(url: str) -> str | None:
    """A warning when the URL logs in as the superuser (`postgres`, `root`); judged from the URL alone."""
    match = _URL.fullmatch(url.strip())
    user = (match["username"] or "") if match else ""
    if not match or not user or SUPERUSERS.get(match["name"].partition("+")[0]) != user:
        return None
    return (
        f"logs in as the superuser {user!r} (judged from the URL, without connecting); "
        "give dispatcher a read-only role, see docs/security.md"
    )


def query_timeout_in_range(value: float) -> float:
    # Below 1s the server limits round to "no limit"; beyond a day a report never finishes.
    if value < MIN_TIMEOUT:
        raise ValueError(f"query_timeout {value:g}s is too short: it must be at least 1s")
    if value > MAX_TIMEOUT:
        raise ValueError(f"query_timeout {value:g}s is too long: it must be at most 1 day (86400s)")
    return value


def with_known_driver(url: Any) -> Any:
    """A bare `postgresql://` or `mysql://` (a sqlalchemy URL) gets the driver dispatcher installs."""
    backend, _, driver = url.drivername.partition("+")
    default = BACKENDS.get(backend, ((), None, None))[1]
    return url.set(drivername=f"{backend}+{default}") if default and not driver else url


def missing_driver_hint(backend: str) -> str:
    extra = BACKENDS.get(backend, ((), None, None))[2]
    return install_hint(extra) if extra else INSTALL_HINT


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


def parse_size(value: Any) -> int:
    """`64MB`, `512 KB`, `1GB` or a number of bytes (units are binary: 1 MB = 1024 KB)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size such as 64MB")
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?b?)\s*", str(value), re.I)
    if match is None:
        raise ValueError(f"{value!r} is not a size such as 64MB, 512KB or 1GB")
    return int(float(match[1]) * _UNITS[match[2].lower()])


def format_bytes(size: int) -> str:
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size} bytes"
