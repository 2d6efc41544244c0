"""Receipts within the monthly quota: `full`, `result` and `off`, against the real sandbox, whose
tasks finish after `progress_delay` (getsendresult's lists are incomplete until then)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher.cli.main import main
from dispatcher.config.check import load_config
from dispatcher.dingtalk.client import Credentials, DingTalkClient
from dispatcher.dingtalk.message import markdown_msg
from dispatcher.errors import ConfigError
from dispatcher.sandbox import Sandbox, SandboxOptions

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
CREDS = Credentials("dingsandboxkey", "sandbox-secret", 100000001)
MSG = markdown_msg("日报", "### 日报  \n  合计 **12**")
USERS = [f"u{i:05d}" for i in range(1, 151)]  # two batches: 100 + 50
RECEIPT_CALLS = ("getsendprogress", "getsendresult")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(seed=3, generated_users=200)) as sb:
        yield sb


class Sleeps:
    def __init__(self) -> None:
        self.seen: list[float] = []

    def __call__(self, seconds: float) -> None:
        import time

        self.seen.append(seconds)
        time.sleep(seconds)


def calls(sb: Sandbox) -> Counter[str]:
    return Counter(c["endpoint"] for c in sb.calls())


def per_task(sb: Sandbox, endpoint: str) -> Counter[int]:
    return Counter(int(c["body"]["task_id"]) for c in sb.calls(endpoint))


def test_result_mode_reads_each_task_once_after_the_wait_and_never_polls(sandbox: Sandbox) -> None:
    sandbox.set_options(progress_delay=0.2)
    sleeps = Sleeps()
    with DingTalkClient(CREDS, base_url=sandbox.url, receipts="result", receipt_wait=0.4, sleep=sleeps) as c:
        result = c.send(MSG, userids=USERS)

    assert calls(sandbox)["getsendprogress"] == 0
    assert per_task(sandbox, "getsendresult") == Counter({t: 1 for t in result.task_ids})
    assert 0.4 in sleeps.seen, "the receipt is read receipt_wait after the send"
    assert all(r.complete for r in result.receipts)
    assert result.counts()["unread"] == 150


def test_result_mode_read_too_early_is_marked_incomplete_not_retried(sandbox: Sandbox) -> None:
    sandbox.set_options(progress_delay=30)
    with DingTalkClient(CREDS, base_url=sandbox.url, receipts="result", receipt_wait=0.05) as c:
        result = c.send(MSG, userids=USERS[:10])

    [receipt] = result.receipts
    assert not receipt.complete and receipt.unread == [], "the sandbox's lists are still empty"
    assert calls(sandbox)["getsendresult"] == 1 and calls(sandbox)["getsendprogress"] == 0


def test_off_mode_makes_no_receipt_call(sandbox: Sandbox) -> None:
    with DingTalkClient(CREDS, base_url=sandbox.url, receipts="off") as c:
        result = c.send(MSG, userids=USERS)
    assert result.receipts == [] and len(result.task_ids) == 2
    assert not any(calls(sandbox)[e] for e in RECEIPT_CALLS)


def test_full_mode_waits_for_the_task_but_spends_at_most_3_calls_per_task(sandbox: Sandbox) -> None:
    sandbox.set_options(progress_delay=0.3)
    with DingTalkClient(CREDS, base_url=sandbox.url, receipts="full", receipt_wait=0.5) as c:
        result = c.send(MSG, userids=USERS)

    for task_id in result.task_ids:
        spent = per_task(sandbox, "getsendprogress")[task_id] + per_task(sandbox, "getsendresult")[task_id]
        assert 2 <= spent <= 3
    assert all(r.complete for r in result.receipts) and result.counts()["unread"] == 150


def test_full_mode_on_a_slow_task_stops_after_3_calls(sandbox: Sandbox) -> None:
    sandbox.set_options(progress_delay=60)
    with DingTalkClient(CREDS, base_url=sandbox.url, receipts="full", receipt_wait=0.05) as c:
        result = c.send(MSG, userids=USERS[:5], receipt_timeout=30)
    assert calls(sandbox)["getsendprogress"] == 2 and calls(sandbox)["getsendresult"] == 1
    assert not result.receipts[0].complete


def test_failed_users_are_resent_in_result_mode_too(sandbox: Sandbox) -> None:
    sandbox.set_options(failing_userids=["u00002"])
    with DingTalkClient(CREDS, base_url=sandbox.url, receipts="result", receipt_wait=0.05) as c:
        result = c.send(MSG, userids=USERS[:3])
    assert result.resent_userids == ["u00002"]
    assert sorted(m["userid"] for m in sandbox.messages()) == USERS[:3]
    assert calls(sandbox)["getsendprogress"] == 0


# -- configuration ---------------------------------------------------------------------------------


def write_config(project: Path, dingtalk: str, report: str = "") -> Path:
    path = project / "reports.yaml"
    text = path.read_text(encoding="utf-8")
    agent = "  agent_id: ${TEST_DT_AGENT:-}\n"
    text = text.replace(agent, agent + dingtalk.rstrip("\n") + "\n")
    text = text.replace("    on_empty: send\n", f"    on_empty: send\n{report}")
    path.write_text(text, encoding="utf-8")
    return path


def test_result_is_the_default_and_a_report_may_override_it(project: Path) -> None:
    config = load_config(write_config(project, "  receipt_wait: 2s", "    receipts: off\n"))
    assert (config.dingtalk.receipts, config.dingtalk.receipt_wait) == ("result", 2.0)
    assert config.dingtalk.monthly_quota == 5000
    assert config.reports["daily"].receipts == "off", "YAML's bare off is the mode, not false"


def test_an_unknown_receipts_mode_is_a_config_error_with_its_line(project: Path) -> None:
    path = write_config(project, "  receipts: sometimes")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "reports.yaml:" in str(caught.value) and "dingtalk.receipts" in str(caught.value)


def use_sandbox(sandbox: Sandbox, monkeypatch: Any) -> None:
    opts = sandbox.options
    monkeypatch.setenv("TEST_DT_KEY", opts.app_key)
    monkeypatch.setenv("TEST_DT_SECRET", opts.app_secret)
    monkeypatch.setenv("TEST_DT_AGENT", str(opts.agent_id))
    monkeypatch.setenv("DINGTALK_API_BASE", sandbox.url)


@pytest.mark.parametrize(
    ("dingtalk", "report", "expected"),
    [
        ("  receipts: off", "", Counter()),
        ("  receipts: result\n  receipt_wait: 0.1s", "", Counter({"getsendresult": 1})),
        ("  receipts: full\n  receipt_wait: 0.1s", "    receipts: off\n", Counter()),
    ],
)
def test_dispatcher_send_follows_the_configured_mode(
    project: Path, sandbox: Sandbox, monkeypatch: Any, capsys: Any, dingtalk: str, report: str, expected: Any
) -> None:
    use_sandbox(sandbox, monkeypatch)
    path = write_config(project, dingtalk, report)
    code = main(["send", "daily", "-c", str(path), "--at", "2026-11-28T10:00+08:00"])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert Counter({e: n for e, n in calls(sandbox).items() if e in RECEIPT_CALLS}) == expected
