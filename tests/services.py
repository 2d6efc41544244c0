"""Finding the real PostgreSQL and MariaDB for tests, each test in its own schema or database.

`DISPATCHER_TEST_POSTGRES_URL` and `DISPATCHER_TEST_MYSQL_URL` default to the local services.
An unreachable server skips its tests with the reason, unless `DISPATCHER_REQUIRE_SERVICES=1`
(set by .ci/run), which turns the skip into a failure. `missing` and `installed` apply the same
rule to everything else a test needs from the machine (Chromium, podman, kubectl, promtool).

Every schema, database and role the suite creates is named `unique_name()`: it starts with
`DISPATCHER_TEST_DB_PREFIX` (default `dt_`) and then this session's run id, so that at the end of
the session `sweep()` drops whatever this run left behind (a test killed in its fixture, a
crashed worker) and nothing else.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

POSTGRES_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MYSQL_DEFAULT = "mysql+pymysql://root@127.0.0.1:3306/test"


PREFIX_ENV = "DISPATCHER_TEST_DB_PREFIX"
RUN_ENV = "DISPATCHER_TEST_RUN_ID"  # set once by the controller (tests/conftest.py); workers inherit it
_NAME = re.compile(r"[a-z][a-z0-9_]{0,19}")


def prefix() -> str:
    """The prefix of every database object the suite creates (lower case: MariaDB and PostgreSQL
    then agree on the name without quoting)."""
    value = os.environ.get(PREFIX_ENV) or "dt_"
    if not _NAME.fullmatch(value):
        raise pytest.UsageError(
            f"{PREFIX_ENV}={value!r}: use 1-20 lower-case letters, digits or _, starting with a letter"
        )
    return value


def run_id() -> str:
    """This session's id; one is made when the suite runs without the controller (a lone worker)."""
    return os.environ.setdefault(RUN_ENV, uuid.uuid4().hex[:6])


def unique_name(kind: str = "") -> str:
    """A fresh name for a schema, database or role: prefix, run id, kind, random part."""
    return f"{prefix()}{run_id()}_{kind}{uuid.uuid4().hex[:8]}"


def postgres_base() -> str:
    return os.environ.get("DISPATCHER_TEST_POSTGRES_URL") or POSTGRES_DEFAULT


def mysql_base() -> str:
    return os.environ.get("DISPATCHER_TEST_MYSQL_URL") or MYSQL_DEFAULT


def missing(reason: str, remedy: str = ".ci/run installs it") -> NoReturn:
    """Skip the test for want of something on this machine; under DISPATCHER_REQUIRE_SERVICES=1
    (CI, where everything is installed and started) fail it instead, saying what would mend it."""
    if os.environ.get("DISPATCHER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (DISPATCHER_REQUIRE_SERVICES=1; {remedy})")
    pytest.skip(reason)


def installed(*names: str, package: str) -> str:
    """The path of the first of `names` on PATH, else `missing`, naming the Debian package to install."""
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    missing(f"{names[0]} is not installed (Debian: apt-get install {package})")


def _unavailable(name: str, url: str, exc: Exception) -> None:
    reason = f"{name} is not reachable at {make_url(url).render_as_string(hide_password=True)}: {exc}"
    missing(reason, "start it with .ci/services")


def _admin(url: str, name: str) -> sa.Engine:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as exc:
        engine.dispose()
        _unavailable(name, url, exc)
    return engine


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    with private_postgres() as url:
        yield url


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A URL of a fresh database, dropped afterwards."""
    with private_mysql() as url:
        yield url


@contextmanager
def private_postgres() -> Iterator[str]:
    """A fresh schema for as long as the block runs (fixtures of any scope use it)."""
    base = postgres_base()
    admin = _admin(base, "PostgreSQL")
    schema = unique_name()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@contextmanager
def private_mysql() -> Iterator[str]:
    """A fresh database for as long as the block runs."""
    base = mysql_base()
    admin = _admin(base, "MySQL/MariaDB")
    database = unique_name()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
    try:
        yield make_url(base).set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database}")
        admin.dispose()


# -- the end of the session: drop what this run left behind --


def sweep() -> list[str]:
    """Drop every schema, database and role of this run that is still there; returns their names.

    Fixtures drop their own objects in `finally`; this catches what a killed test or worker left.
    An unreachable server has nothing of this run's to drop.
    """
    mine = f"{prefix()}{run_id()}_"
    return _sweep_postgres(mine) + _sweep_mysql(mine)


def _quiet_engine(url: str) -> sa.Engine | None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError:
        engine.dispose()
        return None
    return engine


def _like(start: str) -> str:
    return start.replace("_", r"\_") + "%"


def _sweep_postgres(mine: str) -> list[str]:
    engine = _quiet_engine(postgres_base())
    if engine is None:
        return []
    dropped = []
    try:
        with engine.connect() as conn:
            query = "SELECT nspname FROM pg_namespace WHERE nspname LIKE %(p)s"
            for (schema,) in conn.exec_driver_sql(query, {"p": _like(mine)}).fetchall():
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                dropped.append(schema)
            query = "SELECT rolname FROM pg_roles WHERE rolname LIKE %(p)s"
            for (role,) in conn.exec_driver_sql(query, {"p": _like(mine)}).fetchall():
                conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
                conn.exec_driver_sql(f'DROP ROLE "{role}"')
                dropped.append(role)
    finally:
        engine.dispose()
    return dropped


def _sweep_mysql(mine: str) -> list[str]:
    engine = _quiet_engine(mysql_base())
    if engine is None:
        return []
    dropped = []
    try:
        with engine.connect() as conn:
            query = "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %(p)s"
            for (database,) in conn.exec_driver_sql(query, {"p": _like(mine)}).fetchall():
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{database}`")
                dropped.append(database)
            query = "SELECT user, host FROM mysql.user WHERE user LIKE %(p)s"
            for user, host in conn.exec_driver_sql(query, {"p": _like(mine)}).fetchall():
                # pymysql formats every statement with %: the host is usually '%' itself
                conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'{host}'".replace("%", "%%"))
                dropped.append(user)
    finally:
        engine.dispose()
    return dropped
