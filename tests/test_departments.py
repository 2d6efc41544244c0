"""A work notification to a department, against the real sandbox over HTTP: department 123 (销售部)
holds 12 people with its sub-departments. DingTalk answers getsendresult only for small tasks, so
the default `receipts: result` reads none for a department task; `send`, `history` and the run's
record say so and how to get them (`receipts: full`), instead of counting 0 or 1 recipients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatcher.cli.main import main
from dispatcher.config.check import load_config
from dispatcher.dingtalk.client import Credentials, DingTalkClient
from dispatcher.dingtalk.message import markdown_msg
from dispatcher.run.delivery import make_client
from dispatcher.run.metrics import Metrics
from dispatcher.run.prepare import build_sources
from dispatcher.run.runner import execute
from dispatcher.run.services import Services
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.db import StateStore
from dispatcher.store.db import state_url as store_url
from dispatcher.store.ledger import Ledger
from tests.conftest import quick_receipts

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
CREDS = Credentials("dingsandboxkey", "sandbox-secret", 100000001)
MSG = markdown_msg("日报", "### 日报  \n  合计 **12**")
SALES = 123
NOTE = "department 123 reached its members without per-person receipts (receipts: result)"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as box:
        yield box


def members(sandbox: Sandbox) -> set[str]:
    return {m["userid"] for m in sandbox.messages()}


def to_sales(project: Path, receipts: str | None = None) -> Path:
    path = project / "reports.yaml"
    admins = "  admins: {userids: [oncall01]}\n"
    text = path.read_text(encoding="utf-8").replace(admins, admins + "  sales: {dept_ids: [123]}\n")
    text = text.replace(
        "    to: [leads]\n", "    to: [sales]\n" + (f"    receipts: {receipts}\n" if receipts else "")
    )
    path.write_text(text, encoding="utf-8")
    return quick_receipts(path)


@pytest.fixture
def env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    opts = sandbox.options
    values = {"TEST_DT_KEY": opts.app_key, "TEST_DT_SECRET": opts.app_secret,
              "TEST_DT_AGENT": str(opts.agent_id), "DINGTALK_API_BASE": sandbox.url}  # fmt: skip
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def test_result_mode_reads_no_receipt_for_a_department_task_and_says_how_to_get_them(
    sandbox: Sandbox,
) -> None:
    with DingTalkClient(CREDS, base_url=sandbox.url, receipts="result", receipt_wait=0.1) as client:
        result = client.send(MSG, dept_ids=[SALES])
    assert len(members(sandbox)) == 12
    assert sandbox.calls("getsendresult") == []
    assert result.notes == [NOTE + "; set receipts: full to read them"]
    assert result.reached() is None, "the receipts cannot tell who holds it"


def test_full_mode_reads_a_department_task_s_receipts(sandbox: Sandbox) -> None:
    with DingTalkClient(CREDS, base_url=sandbox.url, receipts="full", receipt_wait=0.1) as client:
        result = client.send(MSG, userids=["manager4974"], dept_ids=[SALES])
    [receipt] = result.receipts
    assert receipt.complete and set(receipt.unread) == members(sandbox) and len(receipt.unread) == 13
    assert len(sandbox.calls("getsendresult")) == 1
    assert result.notes == []
    assert result.reached() == 13


def test_send_and_history_say_a_department_was_sent_without_per_person_receipts(
    project: Path, sandbox: Sandbox, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = to_sales(project)
    assert main(["send", "daily", "-c", str(path), "--at", "2026-11-28T10:00+08:00"]) == 0
    out = capsys.readouterr().out
    assert "sent       department 123 in 1 call; task id " in out
    assert "0 recipients" not in out and "1 recipient " not in out
    assert f"note       {NOTE}; set receipts: full to read them" in out
    assert len(members(sandbox)) == 12

    assert main(["history", "daily", "-c", str(path)]) == 0
    table = capsys.readouterr().out
    header, row = table.splitlines()[:2]
    recipients = row[header.index("RECIPIENTS") : header.index("ERROR")].strip()
    assert recipients == "dept 123"
    assert NOTE[:40] in row[header.index("ERROR") :]

    assert main(["history", "daily", "-c", str(path), "--json"]) == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["state"] == "sent"
    assert record["error"] == NOTE + "; set receipts: full to read them"


def test_send_with_receipts_full_counts_the_department_s_members(
    project: Path, sandbox: Sandbox, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = to_sales(project, receipts="full")
    assert main(["send", "daily", "-c", str(path), "--at", "2026-11-28T10:00+08:00"]) == 0
    out = capsys.readouterr().out
    assert "sent       department 123 in 1 call" in out
    assert "receipts   unread 12 · read 0" in out
    assert "note " not in out


def test_a_daemon_run_to_a_department_records_the_note(project: Path, sandbox: Sandbox, env: None) -> None:
    config = load_config(to_sales(project))
    store = StateStore(store_url(config.base_dir, config.state))
    opts = sandbox.options
    client = make_client(config, Credentials(opts.app_key, opts.app_secret, opts.agent_id), store)
    sources = build_sources(config)
    try:
        svc = Services(config, sources, client, Ledger(store), Metrics(), "test-owner")
        claimed = svc.ledger.claim("daily", datetime(2026, 11, 28, 1, 0, tzinfo=UTC), svc.owner)
        assert claimed is not None
        assert execute(svc, config.reports["daily"], claimed) == "sent"
        [record] = svc.ledger.history("daily")
    finally:
        client.close()
        sources.dispose()
        store.close()
    assert record.error == NOTE + "; set receipts: full to read them"
    assert [b["dept_ids"] for b in record.batches["accepted"]] == [[SALES]]


@pytest.mark.parametrize(("receipts", "calls"), [("result", 1), ("full", 1 + 3), ("off", 1)])
def test_the_quota_forecast_counts_a_department_task_s_receipt_calls_as_the_mode_reads_them(
    project: Path, receipts: str, calls: int
) -> None:
    from dispatcher.ops.quota import calls_per_run

    config = load_config(to_sales(project, receipts=receipts))
    assert calls_per_run(config, config.reports["daily"]) == calls
