"""`dispatcher history` and the last-run column of `dispatcher list`, over a real ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dispatcher.cli.main import main
from dispatcher.store.db import StateStore
from dispatcher.store.ledger import Ledger

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end


def seed_ledger(project) -> None:
    store = StateStore(f"sqlite:///{project / '.dispatcher' / 'state.db'}")
    ledger = Ledger(store)
    for day, state in ((26, "sent"), (27, "failed"), (28, "missed")):
        fire = datetime(2026, 11, day, 1, 0, tzinfo=UTC)
        if state == "missed":
            ledger.record_missed("daily", [fire])
            continue
        run = ledger.claim("daily", fire, "test")
        assert run is not None
        ledger.finish(
            run.id, state, rows=2, msg_bytes=300, recipients=3, error="boom" if state == "failed" else None
        )
    store.close()


def test_history_is_newest_first_in_the_reports_timezone(project, capsys, monkeypatch):
    monkeypatch.delenv("DISPATCHER_STATE_URL", raising=False)
    seed_ledger(project)
    assert main(["history", "-c", str(project / "reports.yaml"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["fire_time"][:10], r["state"]) for r in rows] == [
        ("2026-11-28", "missed"),
        ("2026-11-27", "failed"),
        ("2026-11-26", "sent"),
    ]
    assert main(["history", "daily", "-c", str(project / "reports.yaml"), "--limit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "2026-11-28T09:00:00+08:00" in out[1] and "missed" in out[1]


def test_history_of_an_unknown_report_is_an_error(project, capsys):
    assert main(["history", "nope", "-c", str(project / "reports.yaml")]) == 1
    assert "no report named 'nope'" in capsys.readouterr().err


def test_list_shows_each_reports_last_run_state(project, capsys, monkeypatch):
    monkeypatch.delenv("DISPATCHER_STATE_URL", raising=False)
    seed_ledger(project)
    assert main(["list", "-c", str(project / "reports.yaml"), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["last_run"]["state"] == "missed"
    assert main(["list", "-c", str(project / "reports.yaml")]) == 0
    assert "missed" in capsys.readouterr().out


def test_list_does_not_create_a_state_store(project, capsys, monkeypatch):
    monkeypatch.delenv("DISPATCHER_STATE_URL", raising=False)
    assert main(["list", "-c", str(project / "reports.yaml")]) == 0
    assert not (project / ".dispatcher").exists()
