"""Backfill covers the past only (issue 22 §4): fire times that have not come yet are left to the
daemon and counted in the summary, with or without --dry-run, and extreme days are a clear usage
error. "Now" is the clock module's, replaced here: nothing depends on today's date. Real sandbox,
real SQLite state store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatcher import clock
from dispatcher.cli.main import main
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.db import StateStore, state_url
from dispatcher.store.ledger import Ledger
from tests.feature_kit import data, texts, write_project

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
DAILY = """\
daily:
  title: 日报
  schedule: "0 8 * * *"
  source: data
  sql: "SELECT 1 AS n"
  on_empty: send
  to: [ops]
  retries: 0
"""
NOON_3RD = datetime(2026, 11, 3, 4, 0, tzinfo=UTC)  # 12:00 on the 3rd in Shanghai: 08:00 has come


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as box:
        yield box


@pytest.fixture
def project(tmp_path: Path, sandbox: Sandbox) -> Path:
    path = write_project(tmp_path / "p", sandbox, DAILY)
    data(path.parent, "CREATE TABLE t (n INTEGER)")
    return path


def _at(monkeypatch: pytest.MonkeyPatch, instant: datetime) -> None:
    monkeypatch.setattr(clock, "now", lambda: instant)


def _ledger_fire_times(path: Path) -> list[datetime]:
    store = StateStore(state_url(path.parent))
    try:
        return sorted(r.fire_time for r in Ledger(store).history("daily", limit=50))
    finally:
        store.close()


def _backfill(path: Path, start: str, end: str, *extra: str) -> int:
    return main(["-c", str(path), "backfill", "daily", "--from", start, "--to", end, *extra])


def test_backfill_runs_the_past_and_leaves_later_fire_times_to_the_daemon(
    project: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _at(monkeypatch, NOON_3RD)
    assert _backfill(project, "2026-11-01", "2026-11-07") == 0
    out = capsys.readouterr().out
    assert "backfill: 3 fire times: 3 sent; 4 later fire times left to the daemon" in out, out
    assert "2026-11-04" not in out.replace("--to 2026-11-07", "")
    assert len(texts(sandbox, "user004")) == 3
    assert _ledger_fire_times(project) == [datetime(2026, 11, d, 0, 0, tzinfo=UTC) for d in (1, 2, 3)]


def test_backfill_of_today_before_its_fire_time_sends_nothing_and_the_daemon_can_still_claim_it(
    project: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _at(monkeypatch, datetime(2026, 11, 5, 23, 59, tzinfo=UTC))  # 07:59 on the 6th in Shanghai
    assert _backfill(project, "2026-11-06", "2026-11-06") == 0
    assert (
        "backfill: 0 fire times: nothing to do; 1 later fire time left to the daemon"
        in capsys.readouterr().out
    )
    assert sandbox.calls("asyncsend_v2") == []
    store = StateStore(state_url(project.parent))
    try:
        fire = datetime(2026, 11, 6, 0, 0, tzinfo=UTC)
        assert Ledger(store).claim("daily", fire, "daemon") is not None, "the daemon's claim must be free"
    finally:
        store.close()


def test_a_fire_time_exactly_now_has_come_and_is_backfilled(
    project: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _at(monkeypatch, datetime(2026, 11, 6, 0, 0, tzinfo=UTC))  # 08:00 on the 6th in Shanghai
    assert _backfill(project, "2026-11-06", "2026-11-06") == 0
    assert "backfill: 1 fire time: 1 sent" in capsys.readouterr().out
    assert len(texts(sandbox, "user004")) == 1


def test_dry_run_shows_the_same_split_between_past_and_later(
    project: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _at(monkeypatch, NOON_3RD)
    assert _backfill(project, "2026-11-01", "2026-11-07", "--dry-run") == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("2026-11-")]
    assert [line[:10] for line in lines] == ["2026-11-01", "2026-11-02", "2026-11-03"], out
    assert "dry run: 3 fire times; 4 later fire times left to the daemon; nothing was sent or recorded" in out
    assert sandbox.calls("asyncsend_v2") == []


def test_a_range_wholly_in_the_future_runs_nothing_and_says_how_many_were_left(
    project: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _at(monkeypatch, NOON_3RD)
    assert _backfill(project, "2026-11-10", "2027-11-09") == 0
    assert "backfill: 0 fire times: nothing to do; 365 later fire times left to the daemon" in (
        capsys.readouterr().out
    )
    assert sandbox.calls("asyncsend_v2") == [] and _ledger_fire_times(project) == []


def test_a_far_future_end_counts_at_most_the_cap_and_still_runs_the_past(
    project: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _at(monkeypatch, NOON_3RD)
    assert _backfill(project, "2026-11-03", "2999-12-31") == 0
    assert "backfill: 1 fire time: 1 sent; more than 10,000 later fire times left to the daemon" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("option", "day"),
    [("--to", "9999-12-31"), ("--from", "0001-01-01"), ("--from", "1969-12-31"), ("--to", "3000-01-01")],
)
def test_extreme_days_are_a_usage_error_not_an_internal_one(
    project: Path,
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: str,
    day: str,
) -> None:
    _at(monkeypatch, NOON_3RD)
    args = {"--from": "2026-11-01", "--to": "2026-11-02", option: day}
    with pytest.raises(SystemExit) as exit_info:
        _backfill(project, args["--from"], args["--to"])
    assert exit_info.value.code == 2, "bad command-line usage exits 2 (README, CLI)"
    err = capsys.readouterr().err
    assert f"argument {option}: {day} is out of range" in err and "1970-01-01 to 2999-12-31" in err, err
    assert "internal error" not in err and "Traceback" not in err
    assert sandbox.calls("asyncsend_v2") == []


def test_the_widest_accepted_range_is_a_clear_error_about_its_size(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _at(monkeypatch, NOON_3RD)
    assert _backfill(project, "1970-01-01", "2999-12-31") == 1
    err = capsys.readouterr().err
    assert "holds more than 10,000 fire times" in err and "internal error" not in err, err
