"""Private PostgreSQL schemas and MariaDB databases for a scenario, as tests/services.py makes them.

The URLs come from DISPATCHER_TEST_POSTGRES_URL / DISPATCHER_TEST_MYSQL_URL (the local services by
default). Each block gets a fresh schema or database, dropped when it ends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

POSTGRES = (
    os.environ.get("DISPATCHER_TEST_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL = os.environ.get("DISPATCHER_TEST_MYSQL_URL") or "mysql+pymysql://root@127.0.0.1:3306/test"


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose search_path is a fresh schema."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    admin = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        url = make_url(POSTGRES).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


@contextmanager
def mysql_database() -> Iterator[str]:
    """A URL of a fresh database."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    admin = sa.create_engine(MYSQL, isolation_level="AUTOCOMMIT")
    database = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
        yield make_url(MYSQL).set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database}")
        admin.dispose()
