"""Where a robot webhook may point (issue 22, item 7): DingTalk's robot endpoint, the server that
stands in for DingTalk (`DINGTALK_API_BASE` or `dingtalk.api_base`), or a host the operator allows
in `DISPATCHER_ROBOT_ALLOWED_HOSTS`. validate refuses anything else with file:line, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.cli.main import main
from tests.conftest import BASE_CONFIG

TOKEN = "tok-hosts-93c1e7"
ENV = ("DINGTALK_API_BASE", "DISPATCHER_ROBOT_ALLOWED_HOSTS")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def validate(
    project: Path, webhook: str, capsys: pytest.CaptureFixture[str], api_base: str = ""
) -> tuple[int, str]:
    text = f"robots:\n  g: {{webhook: '{webhook}'}}\n" + BASE_CONFIG + "    robots: [g]\n"
    if api_base:
        text = text.replace("dingtalk:\n", f"dingtalk:\n  api_base: {api_base}\n")
    (project / "reports.yaml").write_text(text, encoding="utf-8")
    code = main(["validate", "-c", str(project / "reports.yaml")])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


REFUSED = [
    f"https://169.254.169.254/robot/send?access_token={TOKEN}",
    f"https://oapi.dingtalk.com.evil.example/robot/send?access_token={TOKEN}",
    f"https://evil.example/robot/send?access_token={TOKEN}&host=oapi.dingtalk.com",
    f"https://oapi.dingtalk.com@evil.example/robot/send?access_token={TOKEN}",
    f"https://oapi.dingtalk.com:8443/robot/send?access_token={TOKEN}",
    f"http://oapi.dingtalk.com/robot/send?access_token={TOKEN}",
    f"http://127.0.0.1:6379/robot/send?access_token={TOKEN}",
    f"http://localhost:8765/robot/send?access_token={TOKEN}",
]


@pytest.mark.parametrize("webhook", REFUSED)
def test_validate_refuses_a_webhook_off_dingtalks_robot_endpoint_with_file_and_line(
    project: Path, capsys: pytest.CaptureFixture[str], webhook: str
) -> None:
    code, out = validate(project, webhook, capsys)
    assert code == 1, out
    assert "reports.yaml:2: robots.g.webhook: the webhook must be DingTalk's robot endpoint" in out
    assert "DISPATCHER_ROBOT_ALLOWED_HOSTS" in out and TOKEN not in out and "Traceback" not in out


@pytest.mark.parametrize("webhook", [
    f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}",
    f"https://OAPI.dingtalk.com:443/robot/send?access_token={TOKEN}",
])  # fmt: skip
def test_validate_accepts_dingtalks_own_robot_endpoint(
    project: Path, capsys: pytest.CaptureFixture[str], webhook: str
) -> None:
    code, out = validate(project, webhook, capsys)
    assert code == 0, out


@pytest.mark.parametrize("where", ["env", "config"])
def test_the_server_standing_in_for_dingtalk_is_accepted_on_its_scheme_host_and_port_only(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    base = "http://127.0.0.1:8765"
    if where == "env":
        monkeypatch.setenv("DINGTALK_API_BASE", base)
    api_base = base if where == "config" else ""
    assert validate(project, f"{base}/robot/send?access_token={TOKEN}", capsys, api_base)[0] == 0
    for other in ("http://127.0.0.1:6379", "https://127.0.0.1:8765", "http://localhost:8765"):
        code, out = validate(project, f"{other}/robot/send?access_token={TOKEN}", capsys, api_base)
        assert code == 1 and "reports.yaml:2: robots.g.webhook:" in out and TOKEN not in out, other


def test_a_host_allowed_by_the_setting_is_accepted_and_nothing_else(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPATCHER_ROBOT_ALLOWED_HOSTS", "robot-proxy.corp.example, http://10.0.0.5:8080")
    for ok in (
        "https://robot-proxy.corp.example",
        "https://robot-proxy.corp.example:443",
        "http://10.0.0.5:8080",
    ):
        code, out = validate(project, f"{ok}/robot/send?access_token={TOKEN}", capsys)
        assert code == 0, (ok, out)
    refused = ["http://robot-proxy.corp.example", "https://robot-proxy.corp.example:8443",
               "https://10.0.0.5:8080", "http://10.0.0.5", "https://x.robot-proxy.corp.example"]  # fmt: skip
    for bad in refused:
        code, out = validate(project, f"{bad}/robot/send?access_token={TOKEN}", capsys)
        assert code == 1 and "reports.yaml:2: robots.g.webhook:" in out, bad


def test_a_malformed_allowed_hosts_setting_is_a_clear_config_error(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPATCHER_ROBOT_ALLOWED_HOSTS", "ftp://proxy.example/path")
    code, out = validate(project, f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}", capsys)
    assert code == 1 and "DISPATCHER_ROBOT_ALLOWED_HOSTS" in out and "Traceback" not in out
