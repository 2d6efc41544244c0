"""Stores written before the store package (schema version 2) keep working unchanged, and gain the
columns of later versions (3: dispatcher_runs.heartbeat_at) in place.

tests/data/state_v2.sqlite and state_v2_ddl.json were made by the code of commit ead57d1, before
state.py and ledger.py became dispatcher/store/ and their two UTC conventions became one type.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateTable

from dispatcher import clock
from dispatcher.store.db import SCHEMA_VERSION, StateStore
from dispatcher.store.ledger import Ledger
from dispatcher.store.schema import ADDED_COLUMNS, meta_table, metadata
from dispatcher.store.userids import UseridCache
from tests.services import mysql_url, postgres_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
DATA = Path(__file__).parent / "data"
OLD_DDL: dict[str, dict[str, str]] = json.loads((DATA / "state_v2_ddl.json").read_text(encoding="utf-8"))
FIRE = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
DIALECTS: dict[str, Dialect] = {
    "postgresql": postgresql.dialect(),
    "mysql": mysql.dialect(),
    "sqlite": sqlite.dialect(),
}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_every_table_keeps_the_ddl_existing_stores_were_created_with(dialect: str) -> None:
    # Tables added since (created by create_all, e.g. dispatcher_robot_sends) are new, not changed.
    now = {
        t.name: _without_later_columns(t.name, str(CreateTable(t).compile(dialect=DIALECTS[dialect])).strip())
        for t in metadata.sorted_tables
        if t.name in OLD_DDL[dialect]
    }
    # New tables are fine (create_all makes them); the ones existing stores have must not change.
    assert {name: now.get(name) for name in OLD_DDL[dialect]} == OLD_DDL[dialect]


def _without_later_columns(table: str, ddl: str) -> str:
    """The DDL less the columns versions after 2 add (`migrate` adds them to an existing table)."""
    later = {column for version, added in ADDED_COLUMNS.items() if version > 2 for t, column, _ in added
             if t == table}  # fmt: skip
    return "\n".join(line for line in ddl.split("\n") if line.strip().split(" ")[0] not in later)


def test_a_v2_sqlite_file_from_before_reads_and_writes_as_it_did(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    shutil.copy(DATA / "state_v2.sqlite", path)
    store = StateStore(f"sqlite:///{path}")
    try:
        _check_v2_rows(store, userid_max_age=timedelta(days=365 * 50))
        UseridCache(store).put_userids("key", {"13900000000": "u2"})
    finally:
        store.close()
    with create_engine(f"sqlite:///{path}").connect() as conn:
        stamps = conn.execute(
            text("SELECT resolved_at FROM dispatcher_userid_cache ORDER BY mobile")
        ).scalars()
        fires = conn.execute(text("SELECT fire_time FROM dispatcher_runs ORDER BY fire_time")).scalars().all()
        old, new = list(stamps)
    assert len(old) == len(new) == len("2026-11-30 02:14:49.227845"), "the same text form as before"
    assert fires == ["2026-11-02 01:00:00.000000", "2026-11-03 01:00:00.000000"]


@pytest.fixture(params=["postgresql", "mysql"])
def old_server_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """A server database holding the tables and rows the code before the store package wrote."""
    url = request.getfixturevalue("postgres_url" if request.param == "postgresql" else "mysql_url")
    engine = create_engine(url)
    with engine.begin() as conn:
        for ddl in OLD_DDL[request.param].values():
            conn.exec_driver_sql(ddl)
        conn.execute(meta_table.insert().values(key="schema", value="2"))
        resolved = "'2026-11-02 01:00:00+00'" if request.param == "postgresql" else "'2026-11-02 01:00:00'"
        conn.execute(
            text(
                "INSERT INTO dispatcher_userid_cache (app_key, mobile, userid, resolved_at) "
                f"VALUES ('key', '13800000000', 'u1', {resolved})"
            )
        )
        conn.execute(
            text(
                "INSERT INTO dispatcher_runs (report_id, fire_time, state, attempts, task_ids, receipts) "
                "VALUES ('daily', '2026-11-02 01:00:00', 'sent', 1, '[7]', '{}')"
            )
        )
        conn.execute(text("INSERT INTO dispatcher_alerts VALUES ('daily', '2026-11-02 01:00:00')"))
    engine.dispose()
    yield url


def test_a_v2_server_store_from_before_reads_and_writes_as_it_did(
    old_server_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clock, "now", lambda: FIRE + timedelta(days=1))
    store = StateStore(old_server_store)
    try:
        _check_v2_rows(store, userid_max_age=timedelta(days=7))
        monkeypatch.setattr(clock, "now", lambda: FIRE + timedelta(days=7, seconds=1))
        assert UseridCache(store).get_userids("key", ["13800000000"], timedelta(days=7)) == {}
    finally:
        store.close()


def _check_v2_rows(store: StateStore, userid_max_age: timedelta) -> None:
    assert store.schema_version() == SCHEMA_VERSION == 3
    assert UseridCache(store).get_userids("key", ["13800000000"], userid_max_age) == {"13800000000": "u1"}
    ledger = Ledger(store)
    [run] = ledger.history("daily")
    assert (run.fire_time, run.state, run.task_ids) == (FIRE, "sent", [7])
    assert ledger.claim("daily", FIRE, "new:1") is None, "the old row still holds its fire time"
    claimed = ledger.claim("daily", FIRE + timedelta(days=1), "new:1")
    assert claimed is not None and claimed.heartbeat_at is None
    # Version 3: the heartbeat column was added, and the reaper judges a row by it.
    assert ledger.heartbeat([claimed.id], "new:1") == 1
    [held] = [run for run in ledger.history("daily") if run.id == claimed.id]
    assert held.heartbeat_at is not None
    assert ledger.reap_stale(lambda _: 60.0, now=held.heartbeat_at + timedelta(seconds=59)) == []
    [reaped] = ledger.reap_stale(lambda _: 60.0, now=held.heartbeat_at + timedelta(seconds=61))
    assert (reaped.id, reaped.state) == (claimed.id, "failed")
    assert not ledger.alert_allowed("daily", now=FIRE + timedelta(minutes=30))
    assert ledger.alert_allowed("daily", now=FIRE + timedelta(hours=2))
