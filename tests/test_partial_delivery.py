"""Partial deliveries: DingTalk accepts some batches and refuses the rest (issue 15 §3).

Reproduced against a real sandbox over HTTP and a real SQLite state store: 251 userids go out in
three batches; the sandbox accepts the first and answers 60011 after it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from dispatcher.cli.main import main
from dispatcher.config.check import load_config
from dispatcher.dingtalk.client import Credentials
from dispatcher.run.delivery import make_client
from dispatcher.run.services import Services
from dispatcher.sandbox import Sandbox, SandboxOptions
from tests import daemon_harness, feature_kit
from tests.feature_kit import SANDBOX_APP, retry_at, run_at

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
USERS = [f"u{i:05d}" for i in range(1, 252)]
FIRE = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
AT = "2026-11-28T10:00+08:00"

CONFIG = (
    SANDBOX_APP.replace('receipts: "off"', "receipt_wait: 0.1s  # the sandbox's tasks finish at once")
    + """\
  many: {{userids: {users}}}
  admins: {{userids: [oncall01]}}
reports:
  big:
    title: 全员日报
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT 1 AS n"
    to: [many]
    retries: {retries}
    retry_delay: 1s
"""
)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(generated_users=251)) as box:
        yield box


def refuse_after_first_batch(sandbox: Sandbox, times: int = 0) -> None:
    sandbox.set_options(
        force_errcode={"asyncsend_v2": 60011}, force_errcode_after=1, force_errcode_times=times
    )


def write_project(folder: Path, sandbox: Sandbox, retries: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = CONFIG.format(api_base=sandbox.url, users=json.dumps(USERS), retries=retries)
    (folder / "reports.yaml").write_text(text, encoding="utf-8")
    (folder / "shop.db").touch()
    return folder / "reports.yaml"


@pytest.fixture
def services(tmp_path: Path, sandbox: Sandbox) -> Iterator[Services]:
    with feature_kit.services(write_project(tmp_path / "p", sandbox), sandbox) as svc:
        yield svc


def sent_userids(sandbox: Sandbox) -> list[str]:
    """Every userid of every accepted asyncsend_v2 call, in order."""
    return [
        u
        for call in sandbox.calls("asyncsend_v2")
        if call["errcode"] == 0
        for u in call["body"]["userid_list"].split(",")
    ]


def run_once(svc: Services) -> str:
    return run_at(svc, "big", FIRE)


def retry_due(svc: Services) -> str:
    return retry_at(svc, "big")


def test_the_client_reports_accepted_and_refused_batches(sandbox: Sandbox) -> None:
    refuse_after_first_batch(sandbox)
    opts = sandbox.options
    creds = Credentials(opts.app_key, opts.app_secret, opts.agent_id)
    with make_client(load_config_stub(sandbox), creds, None) as client:
        result = client.send({"msgtype": "text", "text": {"content": "hi"}}, userids=USERS)
    assert [len(b.userids) for b in result.accepted] == [100]
    assert result.task_ids == [result.accepted[0].task_id]
    [refused] = result.refused
    assert (refused.errcode, len(refused.userids)) == (60011, 151)
    assert "60011" in refused.message
    assert result.partial and result.recipients == 100
    assert len({m["userid"] for m in sandbox.messages()}) == 100


def load_config_stub(sandbox: Sandbox):  # type: ignore[no-untyped-def]
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="partial-"))
    return load_config(write_project(folder, sandbox))


def test_a_partial_run_is_recorded_with_its_batches_and_logged_as_partial(
    services: Services, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    refuse_after_first_batch(sandbox)
    with caplog.at_level(logging.INFO, logger="dispatcher"):
        assert run_once(services) == "partial"
    [run] = services.ledger.history("big")
    assert run.state == "partial"
    assert run.recipients == 100
    assert len(run.task_ids) == 1
    [accepted] = run.batches["accepted"]
    assert (accepted["task_id"], accepted["recipients"]) == (run.task_ids[0], 100)
    [refused] = run.batches["refused"]
    assert (refused["errcode"], refused["recipients"]) == (60011, 151)
    assert run.next_retry_at is not None  # retries: 2, so the rest is owed a retry
    assert "60011" in (run.error or "")
    [line] = [r for r in caplog.records if r.getMessage() == "run.partial"]
    fields = line.event_fields  # type: ignore[attr-defined]
    assert (fields["recipients"], fields["refused"], fields["tasks"]) == (100, 151, 1)


def test_a_retry_sends_only_to_the_batches_not_yet_accepted(services: Services, sandbox: Sandbox) -> None:
    refuse_after_first_batch(sandbox, times=1)
    assert run_once(services) == "partial"
    assert retry_due(services) == "sent"

    counts = Counter(sent_userids(sandbox))
    assert sorted(counts) == USERS
    assert set(counts.values()) == {1}, "every userid is sent exactly once across first run and retry"
    assert Counter(m["userid"] for m in sandbox.messages()) == Counter(USERS)
    [run] = services.ledger.history("big")
    assert (run.state, run.attempts, run.recipients) == ("sent", 2, 251)
    assert len(run.task_ids) == 3
    assert run.batches["refused"] == []


def test_a_partial_run_whose_retry_is_dropped_stays_partial_with_what_reached_people(
    services: Services, sandbox: Sandbox
) -> None:
    """The daemon drops the retry of a report removed from the config; the 100 who got it still did."""
    refuse_after_first_batch(sandbox)
    assert run_once(services) == "partial"
    [due] = services.ledger.due_retries(datetime.now(UTC) + timedelta(hours=1))
    services.ledger.stop_retrying(due, "report removed; not retried")
    [run] = services.ledger.history("big")
    assert (run.state, run.recipients, run.task_ids) == ("partial", 100, due.task_ids)
    assert run.batches == due.batches and run.next_retry_at is None
    assert run.error is not None and run.error.endswith("(report removed; not retried)")
    assert services.ledger.due_retries(datetime.now(UTC) + timedelta(hours=1)) == []


def test_a_partial_run_that_gives_up_alerts_the_admins_with_partial(tmp_path: Path, sandbox: Sandbox) -> None:
    refuse_after_first_batch(sandbox, times=1)  # the alert, sent afterwards, gets through
    with feature_kit.services(write_project(tmp_path / "p", sandbox, retries=0), sandbox) as svc:
        assert run_once(svc) == "partial"
        [run] = svc.ledger.history("big")
        assert run.next_retry_at is None
    [alert] = sandbox.messages("oncall01")
    text = alert["msg"]["markdown"]["text"]
    assert "部分送达" in alert["msg"]["markdown"]["title"]
    assert "100" in text and "151" in text and "60011" in text


def test_history_and_list_show_partial(tmp_path: Path, sandbox: Sandbox, capsys) -> None:  # type: ignore[no-untyped-def]
    refuse_after_first_batch(sandbox)
    path = write_project(tmp_path / "p", sandbox)
    with feature_kit.services(path, sandbox) as svc:
        run_once(svc)
    assert main(["history", "big", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert " partial " in out and "60011" in out
    assert main(["history", "big", "-c", str(path), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["state"] == "partial" and row["batches"]["refused"][0]["recipients"] == 151
    assert main(["list", "-c", str(path)]) == 0
    assert "partial" in capsys.readouterr().out


def test_send_prints_the_partial_delivery_and_exits_1(tmp_path: Path, sandbox: Sandbox, capsys) -> None:  # type: ignore[no-untyped-def]
    refuse_after_first_batch(sandbox)
    path = write_project(tmp_path / "p", sandbox)
    code = main(["send", "big", "-c", str(path), "--at", AT])
    out = capsys.readouterr()
    assert code == 1
    assert "partial    100 of 251 recipients in 1 call; task id" in out.out
    assert "refused    151 recipients: DingTalk asyncsend_v2 failed: errcode 88, sub_code 60011" in out.out
    assert "60011" in out.err


def test_another_replica_on_postgresql_retries_only_the_refused_batches(
    tmp_path: Path,
    sandbox: Sandbox,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISPATCHER_STATE_URL", postgres_url)
    refuse_after_first_batch(sandbox, times=1)
    path = write_project(tmp_path / "p", sandbox)
    with feature_kit.services(path, sandbox) as first:
        assert run_once(first) == "partial"
    with feature_kit.services(path, sandbox) as second:
        assert retry_due(second) == "sent"
        [run] = second.ledger.history("big")
        assert (run.state, run.recipients, len(run.task_ids)) == ("sent", 251, 3)
    counts = Counter(sent_userids(sandbox))
    assert sorted(counts) == USERS and set(counts.values()) == {1}


def test_a_retry_refused_again_keeps_the_run_partial_with_what_reached_people(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    refuse_after_first_batch(sandbox)  # every call after the first is refused, the retry's too
    with feature_kit.services(write_project(tmp_path / "p", sandbox, retries=1), sandbox) as svc:
        assert run_once(svc) == "partial"
        assert retry_due(svc) == "partial"
        [run] = svc.ledger.history("big")
        assert (run.state, run.attempts, run.recipients, run.next_retry_at) == ("partial", 2, 100, None)
        assert len(run.accepted_userids) == 100 and run.batches["refused"][0]["recipients"] == 151
    retried = sandbox.calls("asyncsend_v2")[2]["body"]["userid_list"].split(",")
    assert retried[0] == "u00101", "the retry starts after the accepted batch"
    assert Counter(sent_userids(sandbox)) == Counter(USERS[:100])


def test_the_daemon_records_partial_then_its_retry_reaches_only_the_rest(
    daemons: daemon_harness.Daemons, tmp_path: Path
) -> None:
    box = daemons.sandbox
    refuse_after_first_batch(box, times=1)
    big = daemon_harness.report(
        "全员日报", schedule="0 0 1 1 *", run_on_start=True, to="many", retries=1, retry_delay="1s"
    )
    path = daemon_harness.project(tmp_path / "p", {"big": big})
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["recipients"]["many"] = {"userids": USERS}
    daemon_harness.replace_file(path, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))

    daemon = daemons.start(path)
    partial = daemon.wait_for("run.partial", report="big")
    assert (partial.fields["recipients"], partial.fields["refused"], partial.fields["attempt"]) == (
        100,
        151,
        1,
    )
    sent = daemon.wait_for("run.sent", report="big")
    assert (sent.fields["recipients"], sent.fields["attempt"]) == (251, 2)
    counts = Counter(sent_userids(box))
    assert sorted(counts) == USERS and set(counts.values()) == {1}
    [run] = daemon_harness.runs(daemons.state_url, "big")
    assert (run.state, run.attempts, len(run.task_ids)) == ("sent", 2, 3)


# -- 90020 after some batches: no retry, the month's one quota alert ---------------------------------


def test_90020_after_the_first_batch_keeps_the_run_partial_without_a_retry(
    services: Services, sandbox: Sandbox
) -> None:
    """Every retry would be refused too and spend a call of a quota that is already used up."""
    sandbox.set_options(force_errcode={"asyncsend_v2": 90020}, force_errcode_after=1, force_errcode_times=1)
    assert run_once(services) == "partial"
    [run] = services.ledger.history("big")
    assert (run.state, run.recipients, run.next_retry_at) == ("partial", 100, None)
    assert run.batches["refused"][0]["errcode"] == 90020
    assert services.ledger.due_retries(datetime.now(UTC) + timedelta(days=1)) == []
    [alert] = sandbox.messages("oncall01")
    assert "90020" in alert["msg"]["markdown"]["text"], "the monthly quota alert, not a retry"


def test_a_retry_that_meets_90020_keeps_who_was_reached_and_stops(
    services: Services, sandbox: Sandbox
) -> None:
    refuse_after_first_batch(sandbox, times=1)
    assert run_once(services) == "partial"
    sandbox.set_options(force_errcode={"asyncsend_v2": 90020}, force_errcode_after=0, force_errcode_times=1)
    assert retry_due(services) == "partial"
    [run] = services.ledger.history("big")
    assert (run.state, run.recipients, run.next_retry_at) == ("partial", 100, None)
    assert len(run.batches["accepted"]) == 1, "the first attempt's batch stays on record"
    assert services.ledger.due_retries(datetime.now(UTC) + timedelta(days=1)) == []
