"""`dispatcher send` and the state store it uses, against a real sandbox over HTTP."""

from __future__ import annotations

import json
import sqlite3

import pytest

from dispatcher.cli.main import main
from dispatcher.sandbox import Sandbox, SandboxOptions
from tests.conftest import quick_receipts, run_cli

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
AT = "2026-11-28T10:00+08:00"


@pytest.fixture
def sandbox():
    with Sandbox(SandboxOptions()) as box:
        yield box


@pytest.fixture
def creds(sandbox, monkeypatch, project):
    quick_receipts(project / "reports.yaml")
    opts = sandbox.options
    env = {
        "TEST_DT_KEY": opts.app_key,
        "TEST_DT_SECRET": opts.app_secret,
        "TEST_DT_AGENT": str(opts.agent_id),
        "DINGTALK_API_BASE": sandbox.url,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def send(project, capsys, *extra: str) -> tuple[int, str]:
    code = main(["send", "daily", "-c", str(project / "reports.yaml"), "--at", AT, *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def preview_markdown(project, capsys) -> str:
    assert main(["preview", "daily", "-c", str(project / "reports.yaml"), "--at", AT, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["markdown"]


def test_send_delivers_the_previewed_message_with_the_real_request_shape(project, sandbox, creds, capsys):
    markdown = preview_markdown(project, capsys)
    code, out = send(project, capsys)
    assert code == 0, out
    [call] = sandbox.calls("asyncsend_v2")
    assert call["body"] == {
        "agent_id": sandbox.options.agent_id,
        "userid_list": "manager4974,0147282552401293909",  # the mobile resolves to manager4974: de-duplicated
        "msg": {"msgtype": "markdown", "markdown": {"title": "每日销售", "text": markdown}},
    }
    assert sorted(m["userid"] for m in sandbox.messages()) == ["0147282552401293909", "manager4974"]
    assert "unread 2" in out
    assert sandbox.options.app_secret not in out


def test_state_store_defaults_beside_the_config_and_caches_mobiles_across_processes(project, sandbox, creds):
    first = run_cli("send", "daily", "-c", str(project / "reports.yaml"), "--at", AT, env=creds)
    assert first.returncode == 0, first.stderr
    state = project / ".dispatcher" / "state.db"
    assert state.exists()
    rows = sqlite3.connect(state).execute("SELECT mobile, userid FROM dispatcher_userid_cache").fetchall()
    assert rows == [("13800000000", "manager4974")]
    again = run_cli(
        "send", "daily", "-c", str(project / "reports.yaml"), "--at", "2026-11-29T10:00+08:00", env=creds
    )
    assert again.returncode == 0, again.stderr
    assert len(sandbox.calls("getbymobile")) == 1  # the second process looked nothing up
    assert len(sandbox.calls("asyncsend_v2")) == 2


def test_dispatcher_state_url_moves_the_state_store(project, sandbox, creds, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere" / "state.db"
    monkeypatch.setenv("DISPATCHER_STATE_URL", f"sqlite:///{elsewhere}")
    assert main(["send", "daily", "-c", str(project / "reports.yaml"), "--at", AT]) == 0
    assert elsewhere.exists()
    assert not (project / ".dispatcher").exists()


def test_to_replaces_the_recipients(project, sandbox, creds, capsys):
    code, out = send(project, capsys, "--to", "oncall01")
    assert code == 0, out
    assert [m["userid"] for m in sandbox.messages()] == ["oncall01"]
    assert sandbox.calls("getbymobile") == []


def test_dry_run_resolves_and_sends_nothing(project, sandbox, creds, capsys):
    code, out = send(project, capsys, "--dry-run")
    assert code == 0, out
    assert "userids    manager4974, 0147282552401293909" in out
    assert sandbox.calls("asyncsend_v2") == []
    assert sandbox.messages() == []


def test_unknown_mobile_is_masked_and_the_rest_still_get_it(project, sandbox, creds, capsys):
    code, out = send(project, capsys, "--to", "13911112222", "oncall01")
    assert code == 0, out
    assert "139****2222" in out and "13911112222" not in out
    assert [m["userid"] for m in sandbox.messages()] == ["oncall01"]


def test_without_credentials_exit_1_names_the_variables_and_mentions_sandbox(project):
    result = run_cli(
        "send", "daily", "-c", str(project / "reports.yaml"), "--at", AT, env={"DINGTALK_API_BASE": ""}
    )
    assert result.returncode == 1
    for name in ("DINGTALK_APP_KEY", "DINGTALK_APP_SECRET", "DINGTALK_AGENT_ID"):
        assert name in result.stderr
    assert "--sandbox" in result.stderr
    assert "Traceback" not in result.stderr
    assert "sent" not in result.stdout


def test_send_with_embedded_sandbox(project):
    quick_receipts(project / "reports.yaml")
    result = run_cli("send", "daily", "-c", str(project / "reports.yaml"), "--at", AT, "--sandbox")
    assert result.returncode == 0, result.stderr
    assert "delivered to" in result.stdout and "manager4974" in result.stdout


def test_permanent_error_exits_1_with_its_hint(project, sandbox, creds, capsys):
    sandbox.set_options(force_errcode={"asyncsend_v2": 60020})
    code, out = send(project, capsys)
    assert code == 1
    assert "60020" in out and "whitelist" in out
    assert len(sandbox.calls("asyncsend_v2")) == 1
