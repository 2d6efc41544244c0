"""Finding the real PostgreSQL and MariaDB for tests, each test in its own schema or database.

`DISPATCHER_TEST_POSTGRES_URL` and `DISPATCHER_TEST_MYSQL_URL` default to the local services.
An unreachable server skips its tests with the reason, unless `DISPATCHER_REQUIRE_SERVICES=1`
(set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

POSTGRES_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MYSQL_DEFAULT = "mysql+pymysql://root@127.0.0.1:3306/test"


def postgres_base() -> str:
    return os.environ.get("DISPATCHER_TEST_POSTGRES_URL") or POSTGRES_DEFAULT


def mysql_base() -> str:
    return os.environ.get("DISPATCHER_TEST_MYSQL_URL") or MYSQL_DEFAULT


def _unavailable(name: str, url: str, exc: Exception) -> None:
    reason = f"{name} is not reachable at {make_url(url).render_as_string(hide_password=True)}: {exc}"
    if os.environ.get("DISPATCHER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (DISPATCHER_REQUIRE_SERVICES=1; start it with .ci/services)")
    pytest.skip(reason)


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
    schema = f"dt_{uuid.uuid4().hex[:12]}"
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
    database = f"dt_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
    try:
        yield make_url(base).set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database}")
        admin.dispose()
