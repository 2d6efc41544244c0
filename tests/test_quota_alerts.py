"""The quota forecast of `alert:` reports: the messages they send, not the checks they make.

An alert sends only when it fires, reminds or recovers. Its forecast reads its recent decisions in
the state store; with no history yet it is an estimate (the project's clarification 16):
one message per `repeat` while firing, plus one recovery. Every instant here is fixed, never today.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dispatcher.cli.main import main
from dispatcher.config.check import load_config
from dispatcher.ops.quota import forecast, forecast_text
from dispatcher.store.alert_state import AlertStates
from dispatcher.store.apicalls import ApiCounter
from dispatcher.store.db import StateStore
from tests.conftest import BASE_CONFIG, make_shop_db

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=SHANGHAI)
MONTH_END = datetime(2026, 12, 1, 0, 0, tzinfo=SHANGHAI)
CHECKS_LEFT = int((MONTH_END - NOW).total_seconds() // 60) - 1  # every minute, after NOW, in November


def alert_report(name: str, alert: str) -> str:
    return (
        f'  {name}:\n    title: 告警 {name}\n    schedule: "* * * * *"\n    source: shop\n'
        f"    sql: SELECT 1 AS x\n    to: [admins]\n    receipts: off\n    alert: {alert}\n"
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "queries").mkdir()
    (tmp_path / "queries" / "daily.sql").write_text("SELECT 1 AS x\n", encoding="utf-8")
    make_shop_db(tmp_path / "shop.db")
    text = BASE_CONFIG + alert_report("watched", "{repeat: 1h, recovery: true}")
    text += alert_report("fresh", "{repeat: 1h, recovery: true}")
    text += alert_report("quiet", "{}")
    (tmp_path / "reports.yaml").write_text(text, encoding="utf-8")
    return tmp_path


@pytest.fixture
def store(project: Path) -> Iterator[StateStore]:
    (project / ".dispatcher").mkdir()
    s = StateStore(f"sqlite:///{project / '.dispatcher' / 'state.db'}")
    yield s
    s.close()


def record_week(store: StateStore) -> None:
    """`watched` over the 7 days before NOW: checked from Nov 3, fired twice, recovered twice."""
    states = AlertStates(store)
    day = datetime(2026, 11, 3, 12, 0, tzinfo=SHANGHAI)
    for offset, firing in [
        (timedelta(0), False),  # cleared: the history starts here
        (timedelta(days=2, hours=-2), True),  # fired
        (timedelta(days=2, hours=-2, minutes=1), True),  # suppressed
        (timedelta(days=2, hours=-2, minutes=5), False),  # recovered
        (timedelta(days=5, hours=-2), True),  # fired
        (timedelta(days=5, hours=-1, minutes=-30), False),  # recovered
    ]:
        states.decide("watched", day + offset, firing, 3600.0)


def costs(project: Path, store: StateStore):
    config = load_config(project / "reports.yaml", env={})
    history = AlertStates(store).recent(NOW - timedelta(days=30))
    result = forecast(config, ApiCounter(store, SHANGHAI, 5000), now=NOW, alerts=history)
    return result, {c.id: c for c in result.reports}


def test_an_alert_with_history_is_forecast_from_the_messages_it_sent(project, store):
    record_week(store)
    result, by_id = costs(project, store)
    watched = by_id["watched"]
    # 4 messages (2 fired, 2 recovered) in 7 days; 20.5 days left: ceil(4 * 20.5 / 7) = 12
    assert (watched.runs_left, watched.calls_per_run, watched.calls) == (12, 1, 12)
    assert watched.basis == "history"
    assert "2 fired or reminded, 2 recovered" in watched.note and "7 days" in watched.note
    assert watched.worst_case == CHECKS_LEFT  # what the old forecast charged: every check
    assert result.forecast == sum(c.calls for c in result.reports)


def test_an_alert_without_history_is_an_estimate_per_clarification_16(project, store):
    _, by_id = costs(project, store)
    fresh = by_id["fresh"]
    # firing for the rest of the month: the first message, one reminder an hour after it, one recovery
    hours_left = int((MONTH_END - NOW).total_seconds() // 3600)  # 492, the last one cut by the month's end
    assert fresh.runs_left == 1 + (hours_left - 1) + 1
    assert fresh.basis == "estimate" and "no history" in fresh.note
    assert fresh.worst_case == CHECKS_LEFT
    quiet = by_id["quiet"]  # no repeat, no recovery: one message
    assert (quiet.runs_left, quiet.basis) == (1, "estimate")


def test_less_than_a_day_of_history_is_still_an_estimate(project, store):
    AlertStates(store).decide("watched", NOW - timedelta(hours=3), False, 3600.0)
    _, by_id = costs(project, store)
    assert by_id["watched"].basis == "estimate"


def test_the_quota_text_says_how_each_alert_is_forecast(project, store):
    record_week(store)
    result, _ = costs(project, store)
    text = forecast_text(result, top=10)
    assert "watched" in text and "from 7 days of history" in text
    assert "no history yet" in text and "estimate" in text
    assert "not by their checks" in text


def test_quota_and_doctor_say_alerts_are_forecast_from_history(project, store, capsys, monkeypatch):
    monkeypatch.delenv("DISPATCHER_STATE_URL", raising=False)
    assert main(["quota", "-c", str(project / "reports.yaml"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    alerts = {c["id"]: c for c in doc["reports"] if c["basis"] != "schedule"}
    assert set(alerts) == {"watched", "fresh", "quiet"}
    assert all(c["worst_case"] is not None for c in alerts.values())
    main(["doctor", "-c", str(project / "reports.yaml"), "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert "alerts counted by the messages they send" in checks["monthly quota"]["detail"]
