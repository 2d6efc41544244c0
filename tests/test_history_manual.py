"""History of manual sends and of reports not run yet (issue 9 trip 3), and the schema version 2
migration of a real version-1 store on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, create_engine, insert

from dispatcher.cli.main import main
from dispatcher.store.db import SCHEMA_VERSION, StateStore, state_url
from dispatcher.store.ledger import Ledger
from tests import test_send as send_tests

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
sandbox, creds = send_tests.sandbox, send_tests.creds  # the fixtures
AT, send = send_tests.AT, send_tests.send
FIRE = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)


def history(project: Path, capsys, *extra: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    code = main(["history", "-c", str(project / "reports.yaml"), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_history_of_a_report_never_run_says_it_has_no_runs_yet(project, capsys) -> None:  # type: ignore[no-untyped-def]
    assert history(project, capsys, "daily") == (0, "report 'daily' has no runs yet\n")
    assert history(project, capsys) == (0, "no runs yet\n")


def test_history_of_an_unknown_report_stays_an_error(project, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out = history(project, capsys, "weekly-top")
    assert code == 1
    assert "no report named 'weekly-top'" in out


def test_a_manual_send_is_recorded_as_manual_with_fire_time_in_the_reports_zone(
    project, sandbox, creds, capsys
) -> None:  # type: ignore[no-untyped-def]
    assert send(project, capsys)[0] == 0
    code, out = history(project, capsys, "daily")
    assert code == 0
    assert "2026-11-28T09:00:00+08:00  daily   sent   manual" in out
    code, out = history(project, capsys, "daily", "--json")
    [row] = json.loads(out)
    assert (row["trigger"], row["state"], row["recipients"]) == ("manual", "sent", 2)
    assert row["fire_time"] == "2026-11-28T09:00:00+08:00"
    assert row["next_retry_at"] is None


def test_a_manual_send_never_blocks_the_daemons_claim_nor_counts_for_catch_up(
    project, sandbox, creds, capsys
) -> None:  # type: ignore[no-untyped-def]
    assert send(project, capsys)[0] == 0
    store = StateStore(state_url(project, None))
    try:
        ledger = Ledger(store)
        assert ledger.last_fire_time("daily") is None
        assert ledger.last_runs() == {}
        assert ledger.claim("daily", FIRE, "daemon") is not None
    finally:
        store.close()


def test_a_failed_manual_send_is_recorded_failed(project, sandbox, creds, capsys) -> None:  # type: ignore[no-untyped-def]
    sandbox.set_options(force_errcode={"asyncsend_v2": 60020})
    assert send(project, capsys)[0] == 1
    code, out = history(project, capsys, "daily", "--json")
    [row] = json.loads(out)
    assert (row["trigger"], row["state"]) == ("manual", "failed")
    assert "60020" in row["error"]


# -- schema version 1 -> 2 --


def _v1_store(url: str) -> None:
    """The tables exactly as schema version 1 made them, with one finished run."""
    meta = MetaData()
    Table("dispatcher_meta", meta, Column("key", String(64), primary_key=True),
          Column("value", String(255), nullable=False))  # fmt: skip
    runs = Table(
        "dispatcher_runs", meta,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("report_id", String(200), nullable=False), Column("fire_time", DateTime(), nullable=False),
        Column("state", String(16), nullable=False), Column("attempts", Integer, nullable=False),
        Column("started_at", DateTime()), Column("ended_at", DateTime()), Column("rows", Integer),
        Column("msg_bytes", Integer), Column("recipients", Integer), Column("task_ids", Text),
        Column("receipts", Text), Column("error", Text), Column("owner", String(200)),
        Column("next_retry_at", DateTime()),
    )  # fmt: skip
    engine = create_engine(url)
    try:
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(meta.tables["dispatcher_meta"]).values(key="schema", value="1"))
            conn.execute(insert(runs).values(
                report_id="daily", fire_time=FIRE.replace(tzinfo=None), state="sent", attempts=1,
                recipients=3, task_ids="[7]", receipts="{}",
            ))  # fmt: skip
    finally:
        engine.dispose()


def _check_upgraded(url: str) -> None:
    store = StateStore(url)
    try:
        assert store.schema_version() == SCHEMA_VERSION == 3
        ledger = Ledger(store)
        [old] = ledger.history("daily")
        assert (old.state, old.task_ids, old.batches, old.trigger) == ("sent", [7], {}, "schedule")
        run = ledger.claim("daily", FIRE.replace(hour=2), "daemon")
        assert run is not None
        batches = {
            "accepted": [{"task_id": 8, "userids": ["a"], "dept_ids": [], "recipients": 1}],
            "refused": [],
        }
        ledger.finish(run.id, "partial", recipients=1, task_ids=[8], batches=batches)
        manual = ledger.start_manual("daily", FIRE, "send")
        ledger.finish(manual.id, "sent", trigger="manual")
        newest, manual_row, _ = ledger.history("daily")
        assert newest.accepted_userids == {"a"} and manual_row.trigger == "manual"
    finally:
        store.close()
    StateStore(url).close()  # opening an upgraded store again changes nothing


def test_a_version_1_sqlite_store_is_upgraded_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _v1_store(url)
    _check_upgraded(url)


def test_a_version_1_postgresql_store_is_upgraded_in_place(postgres_url: str) -> None:
    _v1_store(postgres_url)
    _check_upgraded(postgres_url)


def test_a_version_1_mariadb_store_is_upgraded_in_place(mysql_url: str) -> None:
    _v1_store(mysql_url)
    _check_upgraded(mysql_url)


@pytest.mark.parametrize("state", ["partial", "suppressed"])
def test_list_shows_the_last_runs_state(project, capsys, state: str) -> None:  # type: ignore[no-untyped-def]
    store = StateStore(state_url(project, None))
    try:
        ledger = Ledger(store)
        run = ledger.claim("daily", FIRE, "daemon")
        assert run is not None
        ledger.finish(run.id, state)  # type: ignore[arg-type]
    finally:
        store.close()
    assert main(["list", "-c", str(project / "reports.yaml"), "--at", AT]) == 0
    assert f" {state} " in capsys.readouterr().out
