"""`dispatcher state backup FILE`: SQLite's online backup, restored and then read by `history`."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dispatcher.cli.main import main
from dispatcher.store.db import StateStore
from dispatcher.store.ledger import Ledger
from tests.conftest import BASE_CONFIG, make_shop_db

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
SHANGHAI = timezone(timedelta(hours=8))
FIRES = [datetime(2026, 11, day, 9, 0, tzinfo=SHANGHAI) for day in (25, 26, 27)]


@pytest.fixture(autouse=True)
def _no_state_url(monkeypatch):
    monkeypatch.delenv("DISPATCHER_STATE_URL", raising=False)
    monkeypatch.delenv("DISPATCHER_STATE_URL_FILE", raising=False)


def make_project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "queries").mkdir(exist_ok=True)
    (folder / "queries" / "daily.sql").write_text("SELECT 1 AS x\n", encoding="utf-8")
    make_shop_db(folder / "shop.db")
    config = folder / "reports.yaml"
    config.write_text(BASE_CONFIG, encoding="utf-8")
    return config


def record_runs(folder: Path) -> None:
    store = StateStore(f"sqlite:///{folder / '.dispatcher' / 'state.db'}")
    try:
        ledger = Ledger(store)
        for fire in FIRES:
            run = ledger.claim("daily", fire, "test")
            assert run is not None
            ledger.finish(run.id, "sent", rows=1, msg_bytes=120, recipients=3)
    finally:
        store.engine.dispose()


def test_a_restored_backup_shows_its_runs_in_history(tmp_path, capsys):
    config = make_project(tmp_path / "live")
    (tmp_path / "live" / ".dispatcher").mkdir()
    record_runs(tmp_path / "live")
    backup = tmp_path / "backups" / "state-2026-12-06.db"
    backup.parent.mkdir()

    assert main(["state", "backup", str(backup), "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert str(backup) in out and "schema version" in out and "3 runs" in out
    assert sqlite3.connect(backup).execute("PRAGMA integrity_check").fetchone() == ("ok",)

    # Restore on another machine: a fresh project, the backup copied to where its store lives.
    restored = make_project(tmp_path / "restored")
    (tmp_path / "restored" / ".dispatcher").mkdir()
    shutil.copyfile(backup, tmp_path / "restored" / ".dispatcher" / "state.db")
    assert main(["history", "daily", "--json", "-c", str(restored)]) == 0
    import json

    shown = json.loads(capsys.readouterr().out)
    assert sorted(datetime.fromisoformat(r["fire_time"]) for r in shown) == FIRES
    assert {r["state"] for r in shown} == {"sent"}


def test_a_backup_while_another_connection_writes_is_consistent(tmp_path, capsys):
    config = make_project(tmp_path)
    (tmp_path / ".dispatcher").mkdir()
    record_runs(tmp_path)
    writer = sqlite3.connect(tmp_path / ".dispatcher" / "state.db")
    writer.execute("BEGIN IMMEDIATE")  # a daemon in the middle of a write: the backup does not wait
    writer.execute("UPDATE dispatcher_runs SET rows = 99")
    try:
        assert main(["state", "backup", str(tmp_path / "copy.db"), "-c", str(config)]) == 0
    finally:
        writer.rollback()
        writer.close()
    copy = sqlite3.connect(tmp_path / "copy.db")
    rows = copy.execute("SELECT DISTINCT rows FROM dispatcher_runs").fetchall()
    assert rows == [(1,)]  # the rolled-back write never reached the copy


def test_an_existing_file_is_not_overwritten(tmp_path, capsys):
    config = make_project(tmp_path)
    (tmp_path / ".dispatcher").mkdir()
    record_runs(tmp_path)
    target = tmp_path / "keep.db"
    target.write_bytes(b"an older backup")
    assert main(["state", "backup", str(target), "-c", str(config)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert target.read_bytes() == b"an older backup"


def test_no_state_store_yet_is_a_clear_error_and_creates_nothing(tmp_path, capsys):
    config = make_project(tmp_path)
    assert main(["state", "backup", str(tmp_path / "copy.db"), "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert "no state store" in err and "Traceback" not in err
    assert not (tmp_path / ".dispatcher" / "state.db").exists() and not (tmp_path / "copy.db").exists()


def test_postgresql_points_to_pg_dump(tmp_path, capsys, monkeypatch, postgres_url):
    config = make_project(tmp_path)
    monkeypatch.setenv("DISPATCHER_STATE_URL", postgres_url)
    assert main(["state", "backup", str(tmp_path / "copy.db"), "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert "pg_dump" in err and "pg_restore" in err
    assert not (tmp_path / "copy.db").exists()
