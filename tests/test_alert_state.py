"""Alert state (issue 12 §2): every transition, a query failure that is no recovery, the CLI's view,
and two replicas sharing one PostgreSQL state store. Real sandbox, real SQLite data file."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatcher.cli.main import main
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.alert_state import AlertState, AlertStates, next_state
from dispatcher.store.db import StateStore
from dispatcher.templating.recovery import human_duration
from tests.feature_kit import data, run_at, services, texts, write_project

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
T0 = datetime(2026, 11, 28, 1, 30, tzinfo=UTC)  # 09:30 in Shanghai
HOUR = timedelta(hours=1)

ALERT = """\
refunds-alert:
  title: 退款告警
  schedule: "30 * * * *"
  source: data
  sql: "SELECT reason, n FROM problems"
  to: [ops]
  retries: 0
  alert:
    repeat: 2h
    recovery: true
    recovery_template: "✅ {{ title }} 已恢复（持续 {{ duration }}）"
"""


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as box:
        yield box


def _project(folder: Path, sandbox: Sandbox, state: str | None = None) -> Path:
    path = write_project(folder, sandbox, ALERT, state=state)
    data(folder, "CREATE TABLE problems (reason TEXT, n INTEGER); INSERT INTO problems VALUES ('破损', 3);")
    return path


def _ok(folder: Path) -> None:
    data(folder, "DELETE FROM problems")


def _firing(folder: Path) -> None:
    data(folder, "INSERT INTO problems VALUES ('错发', 1)")


def _state(svc_store: StateStore) -> AlertState | None:
    return AlertStates(svc_store).get("refunds-alert")


# -- the pure transition ------------------------------------------------------------------------


def test_every_transition_of_the_pure_state_machine() -> None:
    ok = AlertState("a", "ok", None, 0, None, None)
    fired, event = next_state(ok, T0, True, 7200)
    assert event == "fired"
    assert (fired.state, fired.since, fired.runs, fired.last_notified) == ("firing", T0, 1, T0)
    held, event = next_state(fired, T0 + HOUR, True, 7200)
    assert event == "suppressed" and (held.runs, held.last_notified) == (2, T0)
    reminded, event = next_state(held, T0 + 2 * HOUR, True, 7200)
    assert event == "reminded" and (reminded.runs, reminded.last_notified) == (3, T0 + 2 * HOUR)
    never, event = next_state(fired, T0 + 30 * HOUR, True, None)
    assert event == "suppressed", "without repeat a firing alert never reminds"
    recovered, event = next_state(reminded, T0 + 3 * HOUR, False, 7200)
    assert event == "recovered" and (recovered.state, recovered.runs) == ("ok", 0)
    still_ok, event = next_state(recovered, T0 + 4 * HOUR, False, 7200)
    assert event == "cleared" and still_ok.state == "ok"
    assert human_duration(9000) == "2小时30分钟" and human_duration(42) == "42秒"


# -- through the runner, against the sandbox ------------------------------------------------------


def test_fire_suppress_fail_remind_recover_on_sqlite(tmp_path: Path, sandbox: Sandbox) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox)
    with services(path, sandbox) as svc:
        assert run_at(svc, "refunds-alert", T0) == "sent"
        assert len(texts(sandbox, "user004")) == 1 and "破损" in texts(sandbox, "user004")[0]
        _firing(folder)
        assert run_at(svc, "refunds-alert", T0 + HOUR) == "skipped"
        assert len(texts(sandbox, "user004")) == 1, "a firing alert within `repeat` must not send again"
        state = _state(svc.ledger.store)
        assert state is not None and (state.state, state.runs, state.since) == ("firing", 2, T0)

        data(folder, "ALTER TABLE problems RENAME TO gone")
        assert run_at(svc, "refunds-alert", T0 + 2 * HOUR) == "failed"
        state = _state(svc.ledger.store)
        assert state is not None and state.state == "firing", "a query failure is not a recovery"
        assert [m["userid"] for m in sandbox.messages() if m["userid"] == "user004"] == ["user004"]
        data(folder, "ALTER TABLE gone RENAME TO problems")

        assert run_at(svc, "refunds-alert", T0 + 3 * HOUR) == "sent", "2h after the first: a reminder"
        assert len(texts(sandbox, "user004")) == 2
        _ok(folder)
        assert run_at(svc, "refunds-alert", T0 + 4 * HOUR) == "sent"
        recovery = texts(sandbox, "user004")[-1]
        assert recovery.startswith("✅ 退款告警 已恢复（持续 4小时）"), recovery
        assert {m["userid"] for m in sandbox.messages()} >= {"user004", "user005"}
        assert texts(sandbox, "user005")[-1] == recovery, "the recovery goes to the same recipients"
        assert run_at(svc, "refunds-alert", T0 + 5 * HOUR) == "skipped"
        assert len(texts(sandbox, "user004")) == 3, "an ok alert with no rows sends nothing"
        events = [e["event"] for e in AlertStates(svc.ledger.store).events("refunds-alert")]
    assert events == ["cleared", "recovered", "reminded", "suppressed", "fired"]


def test_recovery_false_sends_nothing_on_recovery(tmp_path: Path, sandbox: Sandbox) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox)
    path.write_text(path.read_text(encoding="utf-8").replace("recovery: true", "recovery: false"), "utf-8")
    with services(path, sandbox) as svc:
        assert run_at(svc, "refunds-alert", T0) == "sent"
        _ok(folder)
        assert run_at(svc, "refunds-alert", T0 + HOUR) == "skipped"
        state = _state(svc.ledger.store)
    assert len(texts(sandbox, "user004")) == 1
    assert state is not None and state.state == "ok"


def test_list_shows_the_alert_state_and_history_the_transitions(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox)
    with services(path, sandbox) as svc:
        run_at(svc, "refunds-alert", T0)
        run_at(svc, "refunds-alert", T0 + HOUR)
    assert main(["-c", str(path), "list", "--at", "2026-11-28T11:00"]) == 0
    listed = capsys.readouterr().out
    assert "firing since 09:30 (2 runs)" in listed, listed
    assert main(["-c", str(path), "history", "refunds-alert"]) == 0
    history = capsys.readouterr().out
    assert "ALERT" in history and "suppressed" in history and "fired" in history, history


def test_history_says_ok_for_an_alert_that_never_fired(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox)
    _ok(folder)
    with services(path, sandbox) as svc:
        assert run_at(svc, "refunds-alert", T0) == "skipped"
    assert main(["-c", str(path), "history", "refunds-alert"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert row.split()[header.split().index("ALERT")] == "ok", row
    assert "cleared" not in row
    assert main(["-c", str(path), "history", "refunds-alert", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["alert"] == "ok"


def test_validate_rejects_a_broken_recovery_template_and_on_empty_error(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _project(tmp_path / "p", sandbox)
    good = path.read_text(encoding="utf-8")
    path.write_text(good.replace("{{ duration }}", "{{ duration "), "utf-8")
    assert main(["-c", str(path), "validate"]) == 1
    assert "reports.refunds-alert.alert.recovery_template" in capsys.readouterr().err
    path.write_text(good.replace("    retries: 0\n", "    retries: 0\n    on_empty: error\n"), "utf-8")
    assert main(["-c", str(path), "validate"]) == 1
    assert "on_empty 'error' contradicts it" in capsys.readouterr().err


# -- two replicas on PostgreSQL -------------------------------------------------------------------


def test_two_replicas_on_postgres_share_state_and_decide_each_fire_time_once(
    tmp_path: Path, sandbox: Sandbox, postgres_url: str
) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox, state=postgres_url)
    with services(path, sandbox, "replica-a") as a, services(path, sandbox, "replica-b") as b:
        assert run_at(a, "refunds-alert", T0) == "sent"
        assert run_at(b, "refunds-alert", T0 + HOUR) == "skipped", "b sees the state a left"
        assert run_at(a, "refunds-alert", T0 + 2 * HOUR) == "sent"  # repeat 2h: a reminder
        _ok(folder)
        assert run_at(b, "refunds-alert", T0 + 3 * HOUR) == "sent"  # the recovery
        assert len(texts(sandbox, "user004")) == 3
        decisions = _race(a.ledger.store, b.ledger.store, T0 + 4 * HOUR)
    assert [d.event for d in decisions] == ["fired", "fired"]
    assert sorted(d.first for d in decisions) == [False, True], "exactly one replica decided"


def _race(one: StateStore, two: StateStore, fire: datetime) -> list:  # type: ignore[type-arg]
    """Both stores decide the same fire time at the same moment, many times over."""
    found: list = []  # type: ignore[type-arg]
    barrier = threading.Barrier(2)

    def decide(store: StateStore) -> None:
        barrier.wait()
        found.append(AlertStates(store).decide("refunds-alert", fire, True, 7200))

    threads = [threading.Thread(target=decide, args=(s,)) for s in (one, two)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return found


def test_two_stores_on_mariadb_decide_a_fire_time_once(mysql_url: str) -> None:
    one, two = StateStore(mysql_url), StateStore(mysql_url)
    try:
        decisions = _race(one, two, T0)
        later = AlertStates(one).decide("refunds-alert", T0 + HOUR, True, 7200)
    finally:
        one.close()
        two.close()
    assert sorted((d.event, d.first) for d in decisions) == [("fired", False), ("fired", True)]
    assert (later.event, later.runs) == ("suppressed", 2)


def test_two_replicas_racing_on_postgres_agree_on_every_fire_time(postgres_url: str) -> None:
    """A replica that read the state after the other's decision but looked for the event before it
    took the fire time for a late one (3 of 300 races on PostgreSQL, before the reads swapped)."""
    one, two = StateStore(postgres_url), StateStore(postgres_url)
    try:
        races = [_race(one, two, T0 + i * HOUR) for i in range(300)]
    finally:
        one.close()
        two.close()
    split = [[d.event for d in r] for r in races if len({d.event for d in r}) != 1]
    assert split == [], f"{len(split)} of 300 races split their decision: {split[:3]}"
    assert all(sorted(d.first for d in r) == [False, True] for r in races)
