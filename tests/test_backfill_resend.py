"""Backfill and resend (issue 12 §3): a week with one day already sent, backfilled while a daemon
catches up the same week on the same state store, without a duplicate; the dry run; and a resend
that reaches only the recipients whose receipts said failed. Real sandbox, real SQLite files."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from dispatcher import clock
from dispatcher.cli.main import main
from dispatcher.run.backfill import Progress, Step
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.db import StateStore
from dispatcher.store.ledger import Ledger
from tests.daemon_harness import DEADLINE
from tests.daemon_inprocess import FakeClock, inprocess_daemon
from tests.feature_kit import data, run_at, services, texts, write_project

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
DAILY = """\
daily:
  title: 日报
  schedule: "0 8 * * *"
  source: data
  sql: "SELECT day, amount FROM sales WHERE day = :day"
  params: {day: "{{ yesterday }}"}
  on_empty: send
  to: [ops]
  catchup: all
  grace: 8d
  retries: 0
"""
DAYS = [date(2026, 10, 31) + timedelta(days=i) for i in range(7)]  # each fire time's yesterday
SALES = "CREATE TABLE sales (day TEXT, amount REAL);" + "".join(
    f"INSERT INTO sales VALUES ('{d.isoformat()}', {d.day * 100});" for d in DAYS
)
WEEK = [datetime(2026, 11, d, 0, 0, tzinfo=UTC) for d in range(1, 8)]  # 08:00 in Shanghai


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as box:
        yield box


@pytest.fixture
def after_the_week(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backfill runs only fire times that have come: "now" is after the week, whatever today is."""
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 11, 30, 12, 0, tzinfo=UTC))


def _project(folder: Path, sandbox: Sandbox) -> Path:
    path = write_project(folder, sandbox, DAILY)
    data(folder, SALES)
    return path


def _footers(sandbox: Sandbox, userid: str) -> Counter[str]:
    """How often `userid` got each fire time's message (the footer names the fire time)."""
    return Counter(line for t in texts(sandbox, userid) for line in t.splitlines() if "数据截至" in line)


def test_dry_run_prints_one_line_per_fire_time_and_sends_nothing(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], after_the_week: None
) -> None:
    path = _project(tmp_path / "p", sandbox)
    with services(path, sandbox) as svc:
        assert run_at(svc, "daily", WEEK[2]) == "sent"
    sandbox.reset()
    assert main(["-c", str(path), "backfill", "daily", "--from", "2026-11-01", "--to", "2026-11-07",
                 "--dry-run"]) == 0  # fmt: skip
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("2026-11-0")]
    assert len(lines) == 7
    assert lines[2].startswith("2026-11-03T08:00:00+08:00  kept: already sent")
    assert re.fullmatch(r"2026-11-01T08:00:00\+08:00  run: would send 1 row, \d+ bytes", lines[0]), lines[0]
    assert "would send 1 row" in lines[6]
    assert sandbox.calls("asyncsend_v2") == []


def test_backfill_a_week_alongside_a_running_daemon_sends_each_day_once(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox)
    state = f"sqlite:///{folder / 'state.db'}"
    fake = FakeClock(datetime(2026, 11, 7, 12, 0, tzinfo=UTC))  # 20:00 on the 7th in Shanghai
    with inprocess_daemon(path, sandbox, state, fake, monkeypatch) as daemon:
        with services(path, sandbox, "earlier") as svc:
            assert run_at(svc, "daily", WEEK[2]) == "sent"  # the 3rd went out on time
        codes: list[int] = []
        args = ["-c", str(path), "backfill", "daily", "--from", "2026-11-01", "--to", "2026-11-07"]
        worker = threading.Thread(target=lambda: codes.append(main(args)))
        worker.start()
        daemon.run_until(lambda: not worker.is_alive() and _all_sent(state), "backfill and catch-up")
        worker.join(DEADLINE)
    assert codes == [0]
    footers = _footers(sandbox, "user004")
    assert sorted(footers) == [f"数据截至 2026-11-{d:02d} 08:00" for d in range(1, 8)]
    assert set(footers.values()) == {1}, f"a fire time went out twice: {footers}"
    assert _footers(sandbox, "user005") == footers
    out = capsys.readouterr().out
    assert "2026-11-03T08:00:00+08:00  kept: already sent" in out
    assert "backfill: 7 fire times:" in out


def _all_sent(state: str) -> bool:
    store = StateStore(state)
    try:
        runs = Ledger(store).history("daily", limit=20)
    finally:
        store.close()
    return sorted(r.fire_time for r in runs if r.state == "sent") == WEEK


def test_backfill_force_sends_a_sent_day_again_and_skips_nothing(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], after_the_week: None
) -> None:
    path = _project(tmp_path / "p", sandbox)
    with services(path, sandbox) as svc:
        assert run_at(svc, "daily", WEEK[0]) == "sent"
    args = ["-c", str(path), "backfill", "daily", "--from", "2026-11-01", "--to", "2026-11-01"]
    assert main(args) == 0
    assert "kept: already sent" in capsys.readouterr().out
    assert main([*args, "--force"]) == 0
    assert "2026-11-01T08:00:00+08:00  sent" in capsys.readouterr().out
    assert len(texts(sandbox, "user004")) == 1, "the same content the same day: DingTalk drops it"
    assert len(sandbox.calls("asyncsend_v2")) == 2


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_otherwise() -> None:
    step = Step(datetime(2026, 11, 1, 8, tzinfo=UTC), "sent")
    plain: list[str] = []
    Progress(2, False, plain.append)(step)
    assert plain == ["2026-11-01T08:00:00+00:00  sent\n"]
    bar: list[str] = []
    progress = Progress(2, True, bar.append)
    progress(step)
    progress(step)
    assert bar[0].startswith("\r\033[K[" + "#" * 15 + "-" * 15 + "] 1/2 ") and bar[-1] == "\n"


def test_a_reversed_range_is_a_clear_error(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _project(tmp_path / "p", sandbox)
    assert main(["-c", str(path), "backfill", "daily", "--from", "2026-11-07", "--to", "2026-11-01"]) == 1
    assert "--to 2026-11-01 is before --from 2026-11-07" in capsys.readouterr().err


# -- resend ---------------------------------------------------------------------------------------


def test_resend_reaches_only_the_failed_recipients_without_a_new_query(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox)
    sandbox.set_options(failing_userids=["user005"])  # its first message fails, the next arrives
    with services(path, sandbox) as svc:
        assert run_at(svc, "daily", WEEK[0]) == "sent"
    assert len(texts(sandbox, "user004")) == 1 and texts(sandbox, "user005") == []
    data(folder, "DROP TABLE sales")  # a new query would fail now
    args = ["-c", str(path), "resend", "daily", "--fire-time", "2026-11-01T08:00"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 recipient failed" in out and "user005" in out
    [again] = texts(sandbox, "user005")
    [original] = texts(sandbox, "user004")
    assert again.startswith(original) and "重发于" in again
    assert len(texts(sandbox, "user004")) == 1, "user004 got it the first time: no resend"
    [call] = sandbox.calls("asyncsend_v2")[-1:]
    assert call["body"]["userid_list"] == "user005"
    assert main([*args[:-2], "--fire-time", "2026-11-01T08:00", "--only", "unread"]) == 0
    assert "user004" in capsys.readouterr().out
    assert len(texts(sandbox, "user004")) == 2, "unread: a marked copy, not dropped as duplicate content"


def test_resend_of_a_split_run_resends_each_slice_its_own_message(tmp_path: Path, sandbox: Sandbox) -> None:
    folder = tmp_path / "p"
    reports = """\
    stores:
      title: 门店
      schedule: "0 8 * * *"
      source: data
      sql: "SELECT manager, store FROM stores"
      split_by: {column: manager}
      template: "{{ split_value }}: {% for r in rows %}{{ r.store }} {% endfor %}"
    """
    path = write_project(folder, sandbox, reports)
    data(folder, "CREATE TABLE stores (manager TEXT, store TEXT); "
                 "INSERT INTO stores VALUES ('user001', '静安店'), ('user002', '朝阳店');")  # fmt: skip
    sandbox.set_options(failing_userids=["user001", "user002"])
    with services(path, sandbox) as svc:
        assert run_at(svc, "stores", WEEK[0]) == "sent"
    assert main(["-c", str(path), "resend", "stores", "--fire-time", "2026-11-01T08:00+08:00"]) == 0
    [one] = texts(sandbox, "user001")
    [two] = texts(sandbox, "user002")
    assert "静安店" in one and "朝阳店" not in one and "朝阳店" in two


def test_resend_of_an_unknown_run_is_a_clear_error(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _project(tmp_path / "p", sandbox)
    assert main(["-c", str(path), "resend", "daily", "--fire-time", "2026-11-01T08:00"]) == 1
    assert "has no run at 2026-11-01T08:00:00+08:00" in capsys.readouterr().err
