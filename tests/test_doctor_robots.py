"""`dispatcher doctor` checks each group robot a report uses, against the sandbox's real /robot/send."""

from __future__ import annotations

import json

import pytest

from dispatcher.cli.main import main
from tests.test_doctor import box, doctor, write_config  # noqa: F401  (box is a fixture)

TOKEN = "robot-token-4f1c9e"
SECRET = "SECb7c0d6e1f2a3"
ROBOT = """\
    robots: [sales-group]
robots:
  sales-group:
    webhook: ${SALES_WEBHOOK}
    secret: ${SALES_SECRET}
    keyword: 日报
  unused-group:
    webhook: ${UNUSED_WEBHOOK}
"""


@pytest.fixture(autouse=True)
def _robot_env(monkeypatch):
    for name in (
        "SALES_WEBHOOK",
        "SALES_SECRET",
        "UNUSED_WEBHOOK",
        "DISPATCHER_STATE_URL",
        "DINGTALK_API_BASE",
    ):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name + "_FILE", raising=False)


def configure(tmp_path, box, monkeypatch, webhook: str | None, secret: str | None = SECRET):  # noqa: F811
    path = write_config(tmp_path, box, extra=ROBOT)
    path.write_text(
        path.read_text(encoding="utf-8").replace("title: 每日销售", "title: 日报 每日销售"), encoding="utf-8"
    )
    box.add_robot("sales-group", TOKEN, SECRET, "日报")
    if webhook is not None:
        monkeypatch.setenv("SALES_WEBHOOK", webhook)
    if secret is not None:
        monkeypatch.setenv("SALES_SECRET", secret)
    return path


def test_unset_robot_variables_fail_naming_them(tmp_path, box, monkeypatch, capsys):  # noqa: F811
    config = configure(tmp_path, box, monkeypatch, webhook=None, secret=None)
    code, checks = doctor(config, capsys)
    assert code == 1
    robot = checks["robot sales-group"]
    assert robot["status"] == "FAIL"
    assert "SALES_WEBHOOK" in robot["detail"] and "SALES_SECRET" in robot["detail"]
    assert ".env" in robot["hint"] and "_FILE" in robot["hint"]
    assert "robot unused-group" not in checks  # no report uses it


def test_a_webhook_on_another_host_fails_without_showing_its_token(tmp_path, box, monkeypatch, capsys):  # noqa: F811
    config = configure(
        tmp_path, box, monkeypatch, f"https://oapi.dingtalk.co/robot/send?access_token={TOKEN}"
    )
    code, checks = doctor(config, capsys)
    assert code == 1
    # doctor's robot check names the host; where validate checks hosts too, the config check does
    failed = checks.get("robot sales-group") or checks["config"]
    assert failed["status"] == "FAIL" and "oapi.dingtalk.co" in failed["detail"], checks
    assert TOKEN not in json.dumps(checks) and SECRET not in json.dumps(checks)


def test_a_malformed_webhook_fails_with_the_form_it_needs(tmp_path, box, monkeypatch, capsys):  # noqa: F811
    config = configure(
        tmp_path, box, monkeypatch, f"https://oapi.dingtalk.com/robot/sent?access_token={TOKEN}"
    )
    code, checks = doctor(config, capsys)
    # validate refuses the form already, so doctor's config check fails first and names it
    assert code == 1 and checks["config"]["status"] == "FAIL"
    assert "/robot/send" in checks["config"]["detail"]


def test_a_good_robot_passes_and_send_test_posts_one_signed_message(tmp_path, box, monkeypatch, capsys):  # noqa: F811
    config = configure(tmp_path, box, monkeypatch, f"{box.url}/robot/send?access_token={TOKEN}")
    code, checks = doctor(config, capsys)
    assert checks["robot sales-group"]["status"] == "OK", checks["robot sales-group"]
    assert "signed" in checks["robot sales-group"]["detail"]
    assert box.robot_messages() == []  # nothing sent without --send-test
    code, checks = doctor(config, capsys, "--send-test")
    assert code == 0, checks
    assert checks["robot sales-group test"]["status"] == "OK"
    [call] = box.robots.calls()
    assert call["signed"] and call["errcode"] == 0
    [posted] = box.robot_messages("sales-group")
    assert "日报" in json.dumps(posted, ensure_ascii=False)
    assert TOKEN not in json.dumps(checks) and SECRET not in json.dumps(checks)


def test_send_test_with_a_wrong_secret_fails_with_dingtalks_answer(tmp_path, box, monkeypatch, capsys):  # noqa: F811
    config = configure(tmp_path, box, monkeypatch, f"{box.url}/robot/send?access_token={TOKEN}",
                       secret="SECnot0the0secret")  # fmt: skip
    code, checks = doctor(config, capsys, "--send-test")
    assert code == 1
    test = checks["robot sales-group test"]
    assert test["status"] == "FAIL" and "310000" in test["detail"]
    assert test["hint"]
    assert "SECnot0the0secret" not in json.dumps(checks)
    assert box.robot_messages() == []


def test_the_text_output_lists_the_robot(tmp_path, box, monkeypatch, capsys):  # noqa: F811
    config = configure(tmp_path, box, monkeypatch, f"{box.url}/robot/send?access_token={TOKEN}")
    assert main(["doctor", "-c", str(config)]) == 0
    assert "robot sales-group" in capsys.readouterr().out


def test_a_robot_only_config_passes_without_dingtalk_credentials(tmp_path, box, monkeypatch, capsys):  # noqa: F811
    """Robots need no DingTalk app: with no `to` and no admins, missing app credentials are not a failure."""
    path = configure(tmp_path, box, monkeypatch, webhook=f"{box.url}/robot/send?access_token={TOKEN}")
    text = path.read_text(encoding="utf-8")
    text = text.replace("  app_secret: sandbox-secret\n", "  app_secret: ${DINGTALK_APP_SECRET}\n")
    text = text.replace("  admins: {userids: [oncall01]}\n", "").replace("    to: [leads]\n", "")
    path.write_text(text, encoding="utf-8")
    monkeypatch.delenv("DINGTALK_APP_SECRET", raising=False)
    code, checks = doctor(path, capsys)
    assert checks["credentials"]["status"] == "SKIP", checks["credentials"]
    assert "group robots only" in checks["credentials"]["detail"]
    assert (
        checks["gettoken"]["status"] == "SKIP"
        and "no report sends a work notification" in checks["gettoken"]["detail"]
    )
    assert checks["robot sales-group"]["status"] == "OK"
    assert code == 0, checks
