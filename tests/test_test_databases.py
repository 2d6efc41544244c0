"""The suite keeps to the databases it is given: one prefix for everything it creates, nothing left."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import REPO
from tests.services import mysql_base, postgres_base

LEAKY = """
import sqlalchemy as sa
from tests.services import mysql_base, postgres_base, unique_name


def test_leaves_a_schema_a_role_and_a_database_behind_and_fails():
    pg = sa.create_engine(postgres_base(), isolation_level="AUTOCOMMIT")
    with pg.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {unique_name()}")
        conn.exec_driver_sql(f"CREATE ROLE {unique_name('ro_')} LOGIN PASSWORD 'pw'")
    my = sa.create_engine(mysql_base(), isolation_level="AUTOCOMMIT")
    with my.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {unique_name()}")
        conn.exec_driver_sql(f"CREATE USER '{unique_name('ro_')}'@'%%' IDENTIFIED BY 'pw'")
    raise AssertionError("failed on purpose, with nothing cleaned up")
"""


def objects_named(start: str) -> list[str]:
    like = start.replace("_", r"\_") + "%"
    found: list[str] = []
    for url, queries in (
        (postgres_base(), ("SELECT nspname FROM pg_namespace", "SELECT rolname FROM pg_roles")),
        (
            mysql_base(),
            ("SELECT schema_name FROM information_schema.schemata", "SELECT user FROM mysql.user"),
        ),
    ):
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                for query in queries:
                    column = query.split()[1]
                    found += [
                        r[0] for r in conn.exec_driver_sql(f"{query} WHERE {column} LIKE %(p)s", {"p": like})
                    ]
        finally:
            engine.dispose()
    return found


def test_a_failed_test_leaves_nothing_behind_and_every_name_starts_with_the_prefix(
    tmp_path: Path, postgres_url: str, mysql_url: str
) -> None:
    # postgres_url and mysql_url: both servers are up (or the test is skipped, or fails in CI).
    prefix, run = "dtcheck_", uuid.uuid4().hex[:6]
    (tmp_path / "test_leaky.py").write_text(textwrap.dedent(LEAKY), encoding="utf-8")
    env = {**os.environ, "DISPATCHER_TEST_DB_PREFIX": prefix, "DISPATCHER_TEST_RUN_ID": run}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), str(tmp_path / "test_leaky.py")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed" in done.stdout
    assert "dropped 4 database object(s) this run left behind: dtcheck_" + run in done.stdout, done.stdout
    assert objects_named(prefix + run) == []


def test_a_bad_prefix_stops_the_run_with_the_rule(tmp_path: Path) -> None:
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n", encoding="utf-8")
    env = {**os.environ, "DISPATCHER_TEST_DB_PREFIX": "Drop Table;"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), str(tmp_path / "test_nothing.py")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "DISPATCHER_TEST_DB_PREFIX='Drop Table;'" in done.stdout + done.stderr
