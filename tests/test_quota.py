"""The monthly API budget: quota calls counted per month in the state store (SQLite, PostgreSQL,
MariaDB), shared by replicas, on /metrics, warned about once at 80%, forecast by `dispatcher quota`,
and 90020 failing a run at once with one alert. Deliveries go to the real sandbox over HTTP."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import generate_latest
from sqlalchemy import text

from dispatcher import clock
from dispatcher.cli.main import main
from dispatcher.config.check import load_config
from dispatcher.dingtalk.client import Credentials, DingTalkClient
from dispatcher.dingtalk.message import markdown_msg
from dispatcher.ops.quota import forecast
from dispatcher.run.metrics import Metrics
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store import schema
from dispatcher.store.apicalls import ApiCounter, month_of
from dispatcher.store.db import StateStore
from tests.conftest import quick_receipts
from tests.services import mysql_url, postgres_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
SHANGHAI = ZoneInfo("Asia/Shanghai")
CREDS = Credentials("dingsandboxkey", "sandbox-secret", 100000001)
AT = "2026-11-28T10:00+08:00"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(seed=9)) as sb:
        yield sb


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def use_sandbox(sandbox: Sandbox, monkeypatch: Any) -> None:
    opts = sandbox.options
    monkeypatch.setenv("TEST_DT_KEY", opts.app_key)
    monkeypatch.setenv("TEST_DT_SECRET", opts.app_secret)
    monkeypatch.setenv("TEST_DT_AGENT", str(opts.agent_id))
    monkeypatch.setenv("DINGTALK_API_BASE", sandbox.url)


def hammer(counters: list[ApiCounter], per_thread: int) -> None:
    def work(counter: ApiCounter) -> None:
        for i in range(per_thread):
            counter.count("asyncsend_v2" if i % 2 else "getsendresult")
            counter.count("getbymobile")  # exempt: never counted

    threads = [threading.Thread(target=work, args=(c,)) for c in counters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# -- counting, on every store --------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres_url", "mysql_url"])
def test_replicas_counting_at_once_lose_no_call(backend: str, request: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}" if backend == "sqlite" else request.getfixturevalue(backend)
    stores = [StateStore(url) for _ in range(4)]  # four "replicas", each with its own engine
    try:
        hammer([ApiCounter(s, SHANGHAI, quota=0) for s in stores], per_thread=40)
        assert ApiCounter(stores[0], SHANGHAI, 0).used() == {"asyncsend_v2": 80, "getsendresult": 80}
    finally:
        for s in stores:
            s.close()


def test_the_month_is_the_calendar_month_in_the_config_time_zone(store: StateStore, monkeypatch: Any) -> None:
    # 2026-11-30 17:00 UTC is already 1 December in Shanghai.
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 11, 30, 17, 0, tzinfo=UTC))
    counter = ApiCounter(store, SHANGHAI, 0)
    counter.count("recall")
    assert counter.month() == "2026-12" and counter.used("2026-12") == {"recall": 1}
    assert counter.used("2026-11") == {}
    assert month_of(datetime(2026, 11, 30, 15, 59, tzinfo=UTC), SHANGHAI) == "2026-11"


def test_the_80_percent_warning_goes_out_once_across_replicas(tmp_path: Path, caplog: Any) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    stores = [StateStore(url), StateStore(url)]
    warned: list[tuple[str, int, int]] = []
    counters = [ApiCounter(s, SHANGHAI, quota=10, on_warn=lambda *a: warned.append(a)) for s in stores]
    caplog.set_level(logging.WARNING)
    try:
        for i in range(14):
            counters[i % 2].count("asyncsend_v2")
        deadline = time.monotonic() + 10
        while not warned and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # a second (wrong) alert thread would have started by now
        assert [(used, quota) for _, used, quota in warned] == [(8, 10)]
        assert [r for r in caplog.records if "quota.warning" in r.getMessage()] != []
        assert not [r for r in caplog.records if "could not record" in r.getMessage()]
        with stores[0].engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM dispatcher_quota_warnings")).scalar() == 1
    finally:
        for s in stores:
            s.close()


def test_quota_0_means_unlimited_and_never_warns(store: StateStore) -> None:
    warned: list[Any] = []
    counter = ApiCounter(store, SHANGHAI, quota=0, on_warn=lambda *a: warned.append(a))
    for _ in range(5):
        counter.count("asyncsend_v2")
    assert counter.used() == {"asyncsend_v2": 5} and warned == []


def test_a_failing_state_store_never_fails_a_delivery(
    store: StateStore, sandbox: Sandbox, caplog: Any
) -> None:
    counter = ApiCounter(store, SHANGHAI, quota=5000)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE dispatcher_api_calls"))
    caplog.set_level(logging.WARNING)
    with DingTalkClient(CREDS, base_url=sandbox.url, on_call=counter.hook(None), receipts="off") as c:
        result = c.send(markdown_msg("日报", "### 日报"), userids=["user001"])
    assert result.task_ids and [m["userid"] for m in sandbox.messages()] == ["user001"]
    assert any("could not count" in r.getMessage() for r in caplog.records)


# -- the whole path: dispatcher send, /metrics, dispatcher quota -------------------------------------


def test_dispatcher_send_counts_its_quota_calls_and_not_the_exempt_ones(
    project: Path, sandbox: Sandbox, monkeypatch: Any, capsys: Any
) -> None:
    use_sandbox(sandbox, monkeypatch)
    assert main(["send", "daily", "-c", str(quick_receipts(project / "reports.yaml")), "--at", AT]) == 0
    wire = Counter(c["endpoint"] for c in sandbox.calls())
    assert wire["gettoken"] == 1 and wire["getbymobile"] == 1

    store = StateStore(f"sqlite:///{project / '.dispatcher' / 'state.db'}")
    try:
        counter = ApiCounter(store, SHANGHAI, 5000)
        assert counter.used() == {"asyncsend_v2": 1, "getsendresult": 1}
        metrics = Metrics()
        metrics.watch_api_calls(counter)
        exported = generate_latest(metrics.registry).decode()
        assert 'dispatcher_api_calls_month{endpoint="asyncsend_v2"} 1.0' in exported
        assert 'dispatcher_api_calls_month{endpoint="getsendresult"} 1.0' in exported
    finally:
        store.close()
    capsys.readouterr()
    assert main(["quota", "-c", str(project / "reports.yaml"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["used"] == {"asyncsend_v2": 1, "getsendresult": 1} and doc["used_total"] == 2
    assert doc["quota"] == 5000 and doc["forecast"] >= 2


def test_the_forecast_counts_fire_times_left_batches_and_receipt_calls(
    project: Path, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = project / "reports.yaml"
    text_ = cfg.read_text(encoding="utf-8")
    many = ", ".join(f'"u{i:05d}"' for i in range(1, 251))  # 250 + 3 people: 3 batches
    text_ = text_.replace(
        "  admins: {userids: [oncall01]}",
        f"  admins: {{userids: [oncall01]}}\n  crowd: {{userids: [{many}]}}",
    )
    text_ += (
        '  hourly:\n    title: 每小时\n    schedule: "0 * * * *"\n    source: shop\n    sql: SELECT 1 AS x\n'
        "    to: [crowd, leads]\n    receipts: full\n"
        '  quiet:\n    title: 静默\n    schedule: "0 9 * * *"\n    source: shop\n    sql: SELECT 1 AS x\n'
        "    to: [admins]\n    receipts: off\n"
    )
    cfg.write_text(text_, encoding="utf-8")
    config = load_config(cfg)
    # 2026-11-30 12:30 Shanghai: hourly fires 13:00 .. 23:00 (11 times), daily and quiet not again.
    # The call is counted at the same instant the forecast asks about, so the month is the same
    # whatever today's date is.
    now = datetime(2026, 11, 30, 12, 30, tzinfo=SHANGHAI)
    monkeypatch.setattr(clock, "now", lambda: now.astimezone(UTC))
    counter = ApiCounter(store, SHANGHAI, 5000)
    counter.count("asyncsend_v2")
    result = forecast(config, counter, now=now)

    costs = {c.id: (c.runs_left, c.calls_per_run, c.calls) for c in result.reports}
    assert costs["hourly"] == (11, 3 + 3 * 3, 11 * 12)  # 3 sends + full receipts 3 per batch
    assert costs["daily"] == (0, 1 + 1, 0)  # leads: 3 people, 1 batch, result: 1 receipt call
    assert costs["quiet"] == (0, 1, 0)
    assert result.reports[0].id == "hourly", "the costliest report first"
    assert result.used_total == 1 and result.forecast == 1 + 132


def test_dispatcher_quota_prints_the_month_and_names_the_costliest_report(project: Path, capsys: Any) -> None:
    assert main(["quota", "-c", str(project / "reports.yaml")]) == 0
    out = capsys.readouterr().out
    assert "quota 5,000 calls" in out and "used       0" in out and "forecast" in out


# -- 90020 in the daemon's runner: no retry, one alert -----------------------------------------------


def test_90020_fails_runs_without_retries_and_alerts_the_admins_once(
    project: Path, sandbox: Sandbox, store: StateStore
) -> None:
    from dispatcher.run.delivery import make_client
    from dispatcher.run.prepare import build_sources
    from dispatcher.run.runner import execute
    from dispatcher.run.services import Services
    from dispatcher.store.ledger import Ledger

    config = load_config(project / "reports.yaml", env={"TEST_DT_KEY": "k"})
    ledger = Ledger(store)
    client = make_client(config, CREDS, store, base_url=sandbox.url)
    svc = Services(config, build_sources(config), client, ledger, Metrics(), "test")
    report = config.reports["daily"]
    try:
        for day in (27, 28):
            # Each run's send meets 90020; the call after it (the alert) gets through.
            sandbox.set_options(force_errcode={"asyncsend_v2": 90020}, force_errcode_times=1)
            run = ledger.claim("daily", datetime(2026, 11, day, 1, 0, tzinfo=UTC), "test")
            assert run is not None
            assert execute(svc, report, run) == "failed"
    finally:
        svc.sources.dispose()
        client.close()

    runs = ledger.history("daily")
    assert [(r.state, r.next_retry_at) for r in runs] == [("failed", None), ("failed", None)]
    assert all("monthly API quota" in (r.error or "") and "receipts" in (r.error or "") for r in runs)
    sends = sandbox.calls("asyncsend_v2")
    assert [c["sub_code"] or c["errcode"] for c in sends] == [90020, 0, 90020], "one alert, no retries"
    assert [c["body"].get("userid_list") for c in sends][1] == "oncall01"
    assert sandbox.calls("getsendresult") == [], "the alert reads no receipts"


def test_the_counter_registers_its_tables_in_the_state_schema() -> None:
    assert {"dispatcher_api_calls", "dispatcher_quota_warnings"} <= set(schema.metadata.tables)
