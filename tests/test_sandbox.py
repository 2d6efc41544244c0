"""The DingTalk sandbox over real HTTP: DingTalk's shapes and rules, its faults, its inbox page."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dispatcher.errors import DispatcherError
from dispatcher.sandbox import Sandbox, SandboxOptions

KEY, SECRET, AGENT = "dingsandboxkey", "sandbox-secret", 100000001
MOBILE = "/topapi/v2/user/getbymobile"
USER_GET = "/topapi/v2/user/get"
CONV = "/topapi/message/corpconversation"
SEND, PROGRESS, RESULT, RECALL = (
    f"{CONV}/{n}" for n in ("asyncsend_v2", "getsendprogress", "getsendresult", "recall")
)


def markdown(title: str = "日报", text: str = "### 销售\n**合计** 12") -> dict[str, Any]:
    return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}


def wait_for(condition: Any, timeout: float = 5.0, every: float = 0.1) -> Any:
    """Polls at most 10 times a second: faster polling would meet the sandbox's 20 calls/s limit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met before the deadline")


def code(reply: dict[str, Any]) -> int:
    """The real code: /topapi/* wraps token and throttling errors in 88 with a `sub_code`."""
    return int(reply["sub_code"]) if reply["errcode"] == 88 else int(reply["errcode"])


class Api:
    """A tiny DingTalk caller for the tests: the request shapes, nothing clever."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.url = sandbox.url
        self.http = requests.Session()
        self._token: str | None = None

    def gettoken(self, key: str = KEY, secret: str = SECRET) -> dict[str, Any]:
        params = {"appkey": key, "appsecret": secret}
        return self.http.get(f"{self.url}/gettoken", params=params, timeout=5).json()

    def token(self) -> str:
        if self._token is None:
            self._token = self.gettoken()["access_token"]
        return self._token

    def post(self, path: str, body: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        token = kw.pop("token", None) or self.token()
        reply = self.http.post(
            f"{self.url}{path}", params={"access_token": token}, json=body, timeout=5, **kw
        )
        assert reply.status_code == 200
        return reply.json()

    def send(self, msg: Any, userids: str = "", depts: str = "", **extra: Any) -> dict[str, Any]:
        body = {"agent_id": AGENT, "msg": msg, **extra}
        body.update({k: v for k, v in (("userid_list", userids), ("dept_id_list", depts)) if v})
        return self.post(SEND, body)

    def result(self, task_id: int) -> dict[str, Any]:
        reply = self.post(RESULT, {"agent_id": AGENT, "task_id": task_id})
        assert reply["errcode"] == 0, reply
        return reply["send_result"]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(seed=7)) as sb:
        yield sb


@pytest.fixture
def api(sandbox: Sandbox) -> Api:
    return Api(sandbox)


# -- access tokens ---------------------------------------------------------------------------


def test_gettoken_issues_a_token_with_expires_in(api: Api) -> None:
    reply = api.gettoken()
    assert reply["errcode"] == 0 and reply["errmsg"] == "ok" and reply["expires_in"] == 7200
    assert len(reply["access_token"]) >= 32


def test_gettoken_with_a_wrong_secret_answers_40096_with_http_200(api: Api) -> None:
    reply = api.http.get(f"{api.url}/gettoken", params={"appkey": KEY, "appsecret": "nope"})
    assert reply.status_code == 200 and reply.json()["errcode"] == 40096
    assert api.gettoken(key="other") == {"errcode": 40096, "errmsg": "不合法的appKey或appSecret"}


def test_asking_again_while_valid_returns_the_same_token_and_extends_it(sandbox: Sandbox, api: Api) -> None:
    sandbox.set_options(token_ttl=1.0)
    start = time.monotonic()
    first = api.gettoken()["access_token"]
    wait_for(lambda: time.monotonic() - start > 0.6, every=0.01)
    assert api.gettoken()["access_token"] == first
    wait_for(
        lambda: time.monotonic() - start > 1.2, every=0.01
    )  # past the first TTL, within the extended one
    assert api.post(MOBILE, {"mobile": "13800000000"}, token=first)["errcode"] == 0


def test_a_token_expires_after_its_ttl_then_gettoken_issues_a_new_one(sandbox: Sandbox, api: Api) -> None:
    sandbox.set_options(token_ttl=0.3)
    old = api.token()
    wait_for(lambda: code(api.post(MOBILE, {"mobile": "13800000000"})) == 42001)
    fresh = api.gettoken()["access_token"]
    assert fresh != old
    assert api.post(MOBILE, {"mobile": "13800000000"}, token=fresh)["errcode"] == 0


def test_unknown_token_answers_40014_missing_token_41001_expired_42001(sandbox: Sandbox, api: Api) -> None:
    assert code(api.post(MOBILE, {"mobile": "13800000000"}, token="f00")) == 40014
    assert code(api.http.post(f"{api.url}{MOBILE}", json={"mobile": "13800000000"}).json()) == 41001
    api.token()
    sandbox.expire_tokens()
    assert code(api.post(MOBILE, {"mobile": "13800000000"})) == 42001


# -- directory lookups -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mobile", "errcode", "userid"),
    [("13800000000", 0, "manager4974"), ("13912345678", 60121, None), ("+86 138", 40104, None)],
)
def test_getbymobile(api: Api, mobile: str, errcode: int, userid: str | None) -> None:
    reply = api.post(MOBILE, {"mobile": mobile})
    assert reply["errcode"] == errcode and reply["request_id"]
    assert reply.get("result", {}).get("userid") == userid


def test_user_get_returns_the_name_and_33012_for_an_unknown_userid(api: Api) -> None:
    assert api.post(USER_GET, {"userid": "oncall01"})["result"]["name"] == "赵值班"
    assert api.post(USER_GET, {"userid": "ghost"})["errcode"] == 33012


def test_generated_users_and_a_directory_file_extend_the_directory(tmp_path: Any) -> None:
    people = tmp_path / "people.csv"
    people.write_text("userid,name,mobile,dept_ids\nextra1,新人,13511112222,456\n", encoding="utf-8")
    with Sandbox(SandboxOptions(generated_users=1000, directory_file=str(people))) as sb:
        api = Api(sb)
        assert api.post(MOBILE, {"mobile": "13511112222"})["result"]["userid"] == "extra1"
        assert api.post(USER_GET, {"userid": "u01000"})["errcode"] == 0
        mobiles = [api.post(USER_GET, {"userid": f"u{i:05d}"})["result"]["mobile"] for i in (1, 200)]
        assert all(m.startswith("139") and len(m) == 11 for m in mobiles)
        assert api.post(MOBILE, {"mobile": mobiles[1]})["result"]["userid"] == "u00200"
        task = api.send(markdown(), depts="456")["task_id"]
        assert "extra1" in api.result(task)["unread_user_id_list"]


# -- asyncsend_v2 -------------------------------------------------------------------------------


def test_json_send_delivers_the_exact_msg_and_records_the_whole_request(sandbox: Sandbox, api: Api) -> None:
    msg = markdown()
    reply = api.send(msg, userids="manager4974,oncall01")
    assert reply["errcode"] == 0 and isinstance(reply["task_id"], int) and reply["request_id"]
    (task,) = sandbox.tasks()
    assert task["task_id"] == reply["task_id"]
    expected = {"agent_id": AGENT, "msg": msg, "userid_list": "manager4974,oncall01"}
    assert task["body"] == expected
    delivered = sorted((m["userid"], m["name"], m["msgtype"], m["read"]) for m in sandbox.messages())
    assert delivered == [
        ("manager4974", "王建国", "markdown", False),
        ("oncall01", "赵值班", "markdown", False),
    ]
    assert all(m["msg"] == msg and m["task_id"] == reply["task_id"] for m in sandbox.messages())


def test_form_body_with_msg_as_json_text_is_accepted(sandbox: Sandbox, api: Api) -> None:
    msg = markdown(text="表单")
    form = {
        "agent_id": str(AGENT),
        "userid_list": "user001",
        "msg": json.dumps(msg, ensure_ascii=False),
    }
    assert api.post(SEND, data=form)["errcode"] == 0
    assert [m["msg"] for m in sandbox.messages("user001")] == [msg]


def test_form_body_with_a_python_repr_msg_is_refused_as_invalid_msg(sandbox: Sandbox, api: Api) -> None:
    form = {"agent_id": AGENT, "userid_list": "user001", "msg": str(markdown())}
    reply = api.post(SEND, data=form)
    assert reply["errcode"] == 40035 and "msg" in reply["errmsg"]
    assert sandbox.messages() == [] and sandbox.tasks() == []


@pytest.mark.parametrize(
    ("overrides", "errcode", "named"),
    [
        ({"userid_list": ",".join(f"user{i:03d}" for i in range(101))}, 40035, "userid_list"),
        ({"dept_id_list": ",".join(str(1000 + i) for i in range(21))}, 40035, "dept_id_list"),
        ({"userid_list": ["user001"]}, 40035, "userid_list"),
        ({"agent_id": 42}, 40056, ""),
        ({"agent_id": None}, 40035, "agent_id"),
        ({"msg": {"msgtype": "markdown", "markdown": {"text": "x"}}}, 400002, "msg.markdown.title"),
        ({"msg": {"msgtype": "video", "video": {}}}, 400002, "msgtype"),
        ({"userid_list": "", "dept_id_list": ""}, 40035, "userid_list"),
    ],
)
def test_invalid_send_requests_are_refused_naming_the_field(
    sandbox: Sandbox, api: Api, overrides: dict[str, Any], errcode: int, named: str
) -> None:
    body = {"agent_id": AGENT, "userid_list": "user001", "msg": markdown(), **overrides}
    reply = api.post(SEND, {k: v for k, v in body.items() if v is not None})
    assert reply["errcode"] == errcode and named in reply["errmsg"]
    assert "task_id" not in reply and sandbox.tasks() == []


def test_agent_id_as_a_numeric_string_is_accepted(api: Api) -> None:
    assert api.send(markdown(), userids="user001", agent_id=str(AGENT))["errcode"] == 0


def test_msg_of_2048_bytes_is_accepted_and_2049_bytes_refused(api: Api) -> None:
    def sized(n: int, title: str) -> dict[str, Any]:
        msg = markdown(title=title, text="")
        msg["markdown"]["text"] = "x" * (n - len(json.dumps(msg, separators=(",", ":"))))
        return msg

    assert api.send(sized(2048, "a"), userids="user001")["errcode"] == 0
    too_big = api.send(sized(2049, "b"), userids="user001")
    assert too_big["errcode"] == 40035 and "too large" in too_big["errmsg"]


def test_departments_expand_to_members_of_sub_departments_without_duplicates(api: Api) -> None:
    task = api.send(markdown(), userids="user001,ghost", depts="123,999")["task_id"]
    result = api.result(task)
    reached = result["unread_user_id_list"]
    assert {"user001", "user002", "user003", "east01", "north01", "both01"} <= set(reached)
    assert len(reached) == len(set(reached)) and "cs01" not in reached
    assert result["invalid_user_id_list"] == ["ghost"] and result["invalid_dept_id_list"] == [999]


def test_same_content_to_the_same_user_twice_a_day_is_forbidden_143106(sandbox: Sandbox, api: Api) -> None:
    api.send(markdown(), userids="user001")
    second = api.send(markdown(), userids="user001,user002")["task_id"]
    result = api.result(second)
    assert result["forbidden_user_id_list"] == ["user001"]
    assert result["forbidden_list"] == [{"code": "143106", "count": 1, "userid": "user001"}]
    assert result["unread_user_id_list"] == ["user002"]
    assert api.result(api.send(markdown(text="其他"), userids="user001")["task_id"])["forbidden_list"] == []


def test_more_than_per_user_daily_notifications_are_forbidden_143105(sandbox: Sandbox, api: Api) -> None:
    sandbox.set_options(per_user_daily=2)
    tasks = [api.send(markdown(text=f"第{i}条"), userids="user001")["task_id"] for i in range(3)]
    assert api.result(tasks[1])["forbidden_list"] == []
    assert api.result(tasks[2])["forbidden_list"] == [{"code": "143105", "count": 2, "userid": "user001"}]
    assert len(sandbox.messages("user001")) == 2


def test_recipients_beyond_the_per_minute_limit_are_forbidden_143103(sandbox: Sandbox, api: Api) -> None:
    sandbox.set_options(recipients_per_minute=3)
    task = api.send(markdown(), userids="user001,user002,user003,user004,user005")["task_id"]
    result = api.result(task)
    assert result["unread_user_id_list"] == ["user001", "user002", "user003"]
    assert [(f["userid"], f["code"], f["count"]) for f in result["forbidden_list"]] == [
        ("user004", "143103", 3),
        ("user005", "143103", 3),
    ]


def test_failing_userids_fail_on_first_delivery_and_succeed_when_sent_again(
    sandbox: Sandbox, api: Api
) -> None:
    sandbox.set_options(failing_userids=["user002"])
    first = api.result(api.send(markdown(), userids="user001,user002")["task_id"])
    assert first["failed_user_id_list"] == ["user002"] and first["unread_user_id_list"] == ["user001"]
    again = api.result(api.send(markdown(), userids="user002")["task_id"])
    assert again["failed_user_id_list"] == [] and again["unread_user_id_list"] == ["user002"]
    assert [m["userid"] for m in sandbox.messages()] == ["user001", "user002"]


def test_progress_reports_running_until_progress_delay_has_passed(sandbox: Sandbox, api: Api) -> None:
    sandbox.set_options(progress_delay=0.4)
    task = api.send(markdown(), userids="user001")["task_id"]

    def progress() -> dict[str, Any]:
        return api.post(PROGRESS, {"agent_id": AGENT, "task_id": task})["progress"]

    assert progress()["status"] == 1 and progress()["progress_in_percent"] < 100
    assert wait_for(lambda: progress()["status"] == 2)
    assert progress()["progress_in_percent"] == 100


def test_unknown_task_and_wrong_agent_id_are_refused(api: Api) -> None:
    task = api.send(markdown(), userids="user001")["task_id"]
    assert api.post(RESULT, {"agent_id": AGENT, "task_id": task + 1})["errcode"] == 400002
    assert api.post(RESULT, {"agent_id": 1, "task_id": task})["errcode"] == 40056


def test_recall_marks_the_task_messages_recalled_and_the_inbox_strikes_them(
    sandbox: Sandbox, api: Api
) -> None:
    task = api.send(markdown(), userids="user001")["task_id"]
    reply = api.post(RECALL, {"agent_id": AGENT, "msg_task_id": task})
    assert reply["errcode"] == 0
    assert [m["recalled"] for m in sandbox.messages()] == [True]
    assert 'class="msg recalled"' in api.http.get(f"{api.url}/").text


# -- limits and injected faults --------------------------------------------------------------


def test_more_than_20_calls_in_a_second_to_one_api_answer_90018(api: Api) -> None:
    api.token()
    # The 22 calls must fall in one 1-s window; on a loaded machine a burst may straddle two, so
    # the burst is tried again (after its window has passed) until one fits, instead of failing.
    for _ in range(10):
        start = time.monotonic()
        codes = [code(api.post(MOBILE, {"mobile": "13800000000"})) for _ in range(22)]
        if time.monotonic() - start < 1.0:
            break
        time.sleep(1.1)  # let the burst's own window pass before the next try
    else:
        pytest.fail("no burst of 22 calls fitted in one second in 10 tries")
    assert codes == [0] * 20 + [90018] * 2
    assert api.post(USER_GET, {"userid": "user001"})["errcode"] == 0  # per API, not global
    assert wait_for(lambda: api.post(MOBILE, {"mobile": "13800000000"})["errcode"] == 0, 3.0)


def test_throttle_first_answers_90018_to_the_first_calls_but_not_gettoken(sandbox: Sandbox, api: Api) -> None:
    sandbox.set_options(throttle_first=2)
    assert api.gettoken()["errcode"] == 0
    codes = [code(api.post(MOBILE, {"mobile": "13800000000"})) for _ in range(3)]
    assert codes == [90018, 90018, 0]


def test_fail_rate_one_answers_http_500_with_html(sandbox: Sandbox, api: Api) -> None:
    api.token()
    sandbox.set_options(fail_rate=1.0)
    reply = api.http.post(f"{api.url}{SEND}", params={"access_token": api.token()}, json={})
    assert reply.status_code == 500 and reply.text.startswith("<html>")
    assert sandbox.calls("asyncsend_v2")[-1]["http_status"] == 500 and sandbox.messages() == []


def test_reset_rate_one_closes_the_connection_without_an_answer(sandbox: Sandbox, api: Api) -> None:
    api.token()
    sandbox.set_options(reset_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        api.post(MOBILE, {"mobile": "13800000000"})
    assert requests.get(f"{api.url}/_sandbox/health", timeout=5).json() == {"ok": True}


def test_fault_injection_with_a_seed_is_deterministic() -> None:
    def statuses() -> list[int]:
        with Sandbox(SandboxOptions(seed=3, fail_rate=0.5)) as sb:
            http = requests.Session()
            return [http.get(f"{sb.url}/gettoken", timeout=5).status_code for _ in range(12)]

    first = statuses()
    assert first == statuses() and {200, 500} == set(first)


def test_force_errcode_answers_that_errcode_on_that_endpoint_only(sandbox: Sandbox, api: Api) -> None:
    sandbox.set_options(force_errcode={"asyncsend_v2": 60020})
    reply = api.send(markdown(), userids="user001")
    assert reply["errcode"] == 60020 and "白名单" in reply["errmsg"]
    assert api.post(MOBILE, {"mobile": "13800000000"})["errcode"] == 0


# -- sandbox-only endpoints, inbox, security ---------------------------------------------------


def test_sandbox_endpoints_expose_and_control_the_state(sandbox: Sandbox, api: Api) -> None:
    base = f"{api.url}/_sandbox"
    api.send(markdown(), userids="user001,user002")
    assert [m["userid"] for m in requests.get(f"{base}/messages", params={"userid": "user002"}).json()] == [
        "user002"
    ]
    assert len(requests.get(f"{base}/calls", params={"endpoint": "asyncsend_v2"}).json()) == 1
    assert len(requests.get(f"{base}/tasks").json()) == 1
    assert requests.post(f"{base}/options", json={"calls_per_second": 1}).json() == {"ok": True}
    assert sandbox.options.calls_per_second == 1
    bad = requests.post(f"{base}/options", json={"no_such_option": 1})
    assert bad.status_code == 400 and "no_such_option" in bad.json()["error"]
    requests.post(f"{base}/expire_tokens", json={})  # control requests must be JSON (issue 15 §6)
    assert code(api.post(MOBILE, {"mobile": "13800000000"})) == 42001
    requests.post(f"{base}/reset", json={})
    assert sandbox.messages() == [] and sandbox.tasks() == [] and sandbox.calls() == []
    requests.post(f"{base}/users", json=[{"userid": "late1", "name": "迟到", "mobile": "13622223333"}])
    fresh = api.gettoken()["access_token"]
    assert api.post(MOBILE, {"mobile": "13622223333"}, token=fresh)["errcode"] == 0


def test_inbox_renders_dingtalk_markdown_escapes_html_and_shows_tables_raw(api: Api) -> None:
    text = "### 销售日报\n**合计** 12\n\n| 区域 | 金额 |\n|---|---|\n"
    text += "<script>alert(1)</script>\n[x](javascript:alert(2))"
    api.send(markdown(text=text), userids="user001")
    page = api.http.get(f"{api.url}/").text
    assert "<h3>销售日报</h3>" in page and "<strong>合计</strong>" in page
    assert "| 区域 | 金额 |" in page and "|---|---|" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'href="javascript' not in page and "[x](javascript:alert(2))" in page
    assert 'http-equiv="refresh"' in page


def test_viewing_a_users_inbox_marks_their_messages_read_in_the_send_result(api: Api) -> None:
    task = api.send(markdown(), userids="user001,user002")["task_id"]
    page = api.http.get(f"{api.url}/", params={"userid": "user001"}).text
    assert "王芳" not in page.split("<main>")[1]  # user002's card is not on user001's page
    result = api.result(task)
    assert result["read_user_id_list"] == ["user001"] and result["unread_user_id_list"] == ["user002"]


def test_forbidden_and_failed_deliveries_appear_in_a_separate_section(sandbox: Sandbox, api: Api) -> None:
    sandbox.set_options(failing_userids=["user002"])
    api.send(markdown(), userids="user001,user002")
    api.send(markdown(), userids="user001")
    muted = api.http.get(f"{api.url}/").text.split("未送达")[1]
    assert "143106" in muted and "same content today" in muted and "failed" in muted


def test_neither_the_secret_nor_a_token_reaches_logs_or_call_records(
    sandbox: Sandbox, api: Api, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    token = api.token()
    api.send(markdown(), userids="user001")
    api.gettoken(secret="wrong-secret")
    api.http.get(f"{api.url}/nowhere", params={"access_token": token, "appsecret": SECRET})
    records = json.dumps([sandbox.calls(), sandbox.tasks(), sandbox.messages()], ensure_ascii=False)
    out, err = capfd.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("dispatcher"))
    for text in (logged, records, out, err, repr(sandbox.options)):
        assert SECRET not in text and token not in text and "wrong-secret" not in text
    assert "appsecret=***" in caplog.text and sandbox.calls("gettoken")[0]["query"]["appsecret"] == "***"


def test_the_sandbox_binds_to_loopback_only() -> None:
    with pytest.raises(DispatcherError, match="127.0.0.1"):
        Sandbox(host="0.0.0.0")
    with Sandbox() as sb:
        assert sb.url.startswith("http://127.0.0.1:")
        assert sb._server is not None and sb._server.server_address[0] == "127.0.0.1"


def test_serve_forever_prints_the_inbox_url_and_stops_on_sigterm() -> None:
    code = "from dispatcher.sandbox import *; serve_forever(SandboxOptions(), port=0)"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=root)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:")
        assert requests.get(f"{url}/_sandbox/health", timeout=5).json() == {"ok": True}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert SECRET not in proc.stdout.read()
    finally:
        proc.kill()
