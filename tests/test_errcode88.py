"""Every row of the client's error table, against the real sandbox over HTTP: the /topapi/*
gateway's errcode 88 envelope in its three forms, token renewal, throttling, quota, hints, 40096."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dispatcher.dingtalk import errors
from dispatcher.dingtalk.client import Credentials, DingTalkClient, RetryPolicy
from dispatcher.dingtalk.message import markdown_msg
from dispatcher.errors import CredentialsError, DeliveryError, QuotaExhaustedError
from dispatcher.sandbox import Sandbox, SandboxOptions
from tests.conftest import REPO

CREDS = Credentials("dingsandboxkey", "sandbox-secret", 100000001)
FAST = RetryPolicy(max_attempts=6, max_total_seconds=60.0, base_delay=0.01, max_delay=0.05)
MSG = markdown_msg("日报", "### 日报  \n  合计 **12**")
FORMS = ("string", "number", "errmsg")
SEND = "/topapi/message/corpconversation/asyncsend_v2"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(seed=5)) as sb:
        yield sb


class Sleeps:
    """A fake sleep: records the waits the client asks for, so 1-4 s backoffs cost no real time."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seen.append(seconds)


def client(sb: Sandbox, creds: Credentials = CREDS, **kw: Any) -> DingTalkClient:
    kw.setdefault("retry", FAST)
    return DingTalkClient(creds, base_url=sb.url, **kw)


def wire_codes(sb: Sandbox, endpoint: str) -> list[int]:
    return [c["sub_code"] or c["errcode"] for c in sb.calls(endpoint)]


def delivered(sb: Sandbox) -> Counter[str]:
    return Counter(m["userid"] for m in sb.messages())


# -- the envelope itself ----------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_the_sandbox_wraps_topapi_errors_in_88_as_the_real_gateway(sandbox: Sandbox, form: str) -> None:
    sandbox.set_options(sub_code_form=form)
    token = requests.get(f"{sandbox.url}/gettoken", params={"appkey": CREDS.app_key,
                         "appsecret": "sandbox-secret"}, timeout=5).json()["access_token"]  # fmt: skip
    sandbox.expire_tokens()
    reply = requests.post(f"{sandbox.url}{SEND}", params={"access_token": token}, json={}, timeout=5).json()

    assert reply["errcode"] == 88 and reply["request_id"]
    assert reply["errmsg"] == "ding talk error[subcode=42001,submsg=access_token超时]"
    expected = {"string": "42001", "number": 42001, "errmsg": None}[form]
    assert reply.get("sub_code") == expected
    assert reply.get("sub_msg") == (None if form == "errmsg" else "access_token超时")


@pytest.mark.parametrize(
    ("payload", "code", "text"),
    [
        ({"errcode": 88, "sub_code": "40014", "sub_msg": "不合法的token"}, 40014, "不合法的token"),
        ({"errcode": 88, "sub_code": 90018, "sub_msg": "api frequency limit"}, 90018, "api frequency limit"),
        ({"errcode": 88, "errmsg": "ding talk error[subcode=90020,submsg=超配额]"}, 90020, "超配额"),
        ({"errcode": 88, "errmsg": "gateway trouble"}, 88, "gateway trouble"),
        ({"errcode": 60020, "errmsg": "访问ip不在白名单之中"}, 60020, "访问ip不在白名单之中"),
    ],
)
def test_unwrap_reads_all_three_forms(payload: dict[str, Any], code: int, text: str) -> None:
    answer = errors.unwrap(payload, int(payload["errcode"]))
    assert (answer.errcode, answer.errmsg) == (code, text)


# -- 40001, 40014, 41001, 42001: renew the token once, resend the identical request -----------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("code", [40001, 40014, 41001, 42001])
def test_a_wrapped_token_error_renews_the_token_once_and_resends_the_identical_body(
    sandbox: Sandbox, code: int, form: str
) -> None:
    sandbox.set_options(sub_code_form=form, force_errcode={"asyncsend_v2": code}, force_errcode_times=1)
    with client(sandbox) as c:
        result = c.send(MSG, userids=["user001", "user002"], receipts="off")

    assert wire_codes(sandbox, "asyncsend_v2") == [code, 0]
    first, second = (call["body"] for call in sandbox.calls("asyncsend_v2"))
    assert first == second, "the resend is the identical request"
    assert len(sandbox.calls("gettoken")) == 2, "one renewal"
    assert len(result.task_ids) == 1 and delivered(sandbox) == Counter(["user001", "user002"])


def test_a_token_error_that_survives_renewal_stops_with_the_credentials_hint(sandbox: Sandbox) -> None:
    sandbox.set_options(force_errcode={"asyncsend_v2": 40014})
    with pytest.raises(DeliveryError) as caught, client(sandbox) as c:
        c.send(MSG, userids=["user001"], receipts="off")

    assert caught.value.errcode == 40014 and "DINGTALK_APP_SECRET" in str(caught.value)
    assert len(sandbox.calls("asyncsend_v2")) == 2 and len(sandbox.calls("gettoken")) == 2


# -- 90018 and 90002: wait at least 1 s, resend the identical request ---------------------------


@pytest.mark.parametrize("form", FORMS)
def test_wrapped_90018_waits_at_least_1_s_then_resends(sandbox: Sandbox, form: str) -> None:
    sandbox.set_options(sub_code_form=form, force_errcode={"asyncsend_v2": 90018}, force_errcode_times=2)
    sleeps = Sleeps()
    with client(sandbox, retry=RetryPolicy(), sleep=sleeps) as c:
        c.send(MSG, userids=["user001"], receipts="off")

    assert wire_codes(sandbox, "asyncsend_v2") == [90018, 90018, 0]
    assert len(sleeps.seen) == 2 and min(sleeps.seen) >= 1.0
    assert len({str(call["body"]) for call in sandbox.calls("asyncsend_v2")}) == 1
    assert delivered(sandbox) == Counter(["user001"])


def test_wrapped_90002_backs_off_1_2_4_seconds(sandbox: Sandbox) -> None:
    sandbox.set_options(force_errcode={"asyncsend_v2": 90002}, force_errcode_times=3)
    sleeps = Sleeps()
    with client(sandbox, retry=RetryPolicy(), sleep=sleeps) as c:
        c.send(MSG, userids=["user001"], receipts="off")

    assert wire_codes(sandbox, "asyncsend_v2") == [90002, 90002, 90002, 0]
    assert [s >= floor for s, floor in zip(sleeps.seen, (1.0, 2.0, 4.0), strict=True)] == [True] * 3
    assert delivered(sandbox) == Counter(["user001"])


# -- 90020: no retry, a message naming the monthly quota -----------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_90020_is_not_retried_and_names_the_monthly_quota_and_what_to_do(sandbox: Sandbox, form: str) -> None:
    sandbox.set_options(sub_code_form=form, monthly_quota=2)
    with client(sandbox) as c:
        c.send(MSG, userids=["user001"], receipts="off")
        c.send(markdown_msg("周报", "### 周报"), userids=["user001"], receipts="off")
        with pytest.raises(QuotaExhaustedError) as caught:
            c.send(markdown_msg("月报", "### 月报"), userids=["user001"], receipts="off")

    err = caught.value
    assert err.errcode == 90020 and not err.retryable
    assert "monthly API quota" in str(err) and "paid DingTalk edition" in str(err)
    assert "receipts: off" in str(err) and "receipts: result" in str(err)
    assert wire_codes(sandbox, "asyncsend_v2") == [0, 0, 90020], "never retried"


def test_the_sandbox_quota_counts_only_non_exempt_calls(sandbox: Sandbox) -> None:
    sandbox.set_options(monthly_quota=1)
    with client(sandbox) as c:
        c.resolve_mobiles(["13800000000"])  # getbymobile: exempt, like gettoken
        c.send(MSG, userids=["user001"], receipts="off")
        with pytest.raises(QuotaExhaustedError):
            c.get_send_result(1)
    assert wire_codes(sandbox, "getsendresult") == [90020]
    assert wire_codes(sandbox, "getbymobile") == [0]


# -- 60011 and 60020: the hints -------------------------------------------------------------------


@pytest.mark.parametrize(("code", "hint"), [(60011, "grant the permission"), (60020, "egress IP")])
def test_permission_and_whitelist_errors_carry_their_hint_and_are_not_retried(
    sandbox: Sandbox, code: int, hint: str
) -> None:
    sandbox.set_options(force_errcode={"asyncsend_v2": code})
    with pytest.raises(DeliveryError) as caught, client(sandbox) as c:
        c.send(MSG, userids=["user001"], receipts="off")

    assert caught.value.errcode == code and hint in (caught.value.hint or "")
    assert len(sandbox.calls("asyncsend_v2")) == 1
    wire = sandbox.calls("asyncsend_v2")[0]
    assert (wire["errcode"], wire["sub_code"]) == ((88, 60011) if code == 60011 else (60020, None))


# -- an unknown sub code ----------------------------------------------------------------------


def test_an_unknown_sub_code_shows_sub_code_and_sub_msg(sandbox: Sandbox) -> None:
    sandbox.set_options(force_errcode={"asyncsend_v2": 77777})
    with pytest.raises(DeliveryError) as caught, client(sandbox) as c:
        c.send(MSG, userids=["user001"], receipts="off")

    text = str(caught.value)
    assert "errcode 88, sub_code 77777" in text and "sub_msg sandbox forced error" in text
    assert caught.value.errcode == 77777 and len(sandbox.calls("asyncsend_v2")) == 1


# -- gettoken: 40096 (and 40089, 40001) are wrong credentials, never retried ---------------------


def test_wrong_secret_at_gettoken_is_40096_and_names_both_env_vars(sandbox: Sandbox) -> None:
    with pytest.raises(CredentialsError) as caught:
        client(sandbox, Credentials("dingsandboxkey", "wrong", 100000001)).token()

    err = caught.value
    assert err.errcode == 40096 and err.endpoint == "gettoken"
    assert "DINGTALK_APP_KEY" in str(err) and "DINGTALK_APP_SECRET" in str(err)
    assert wire_codes(sandbox, "gettoken") == [40096], "never retried"


@pytest.mark.parametrize("code", [40089, 40001])
def test_legacy_credential_codes_at_gettoken_raise_the_same_error(sandbox: Sandbox, code: int) -> None:
    sandbox.set_options(force_errcode={"gettoken": code})
    with pytest.raises(CredentialsError, match="DINGTALK_APP_SECRET"):
        client(sandbox).token()
    assert wire_codes(sandbox, "gettoken") == [code]


# -- the manual's table is the code's table ---------------------------------------------------------


def test_the_readme_error_table_matches_the_code() -> None:
    from tests.docs_kit import section as docs_section

    section = docs_section("reference/error-codes.md", "Work notifications")
    rows = [line.strip() for line in section.splitlines() if re.match(r"\s*\| (-?\d+|any other) \|", line)]
    assert rows == errors.table_rows()


def test_every_code_the_sandbox_wraps_has_a_row() -> None:
    from dispatcher.sandbox.rules import WRAPPED

    assert WRAPPED <= set(errors.ERRCODES)
    assert Path(REPO / "docs" / "reference" / "error-codes.md").exists()


# -- in-process sandboxes read the same DISPATCHER_SANDBOX_* faults as `dispatcher sandbox` -------


def send_in_sandbox(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`dispatcher send --sandbox` in a subprocess, whose in-process sandbox reads DISPATCHER_SANDBOX_*."""
    from tests.conftest import quick_receipts, run_cli

    config = str(quick_receipts(project / "reports.yaml"))
    return run_cli("send", "daily", "-c", config, "--at", "2026-11-28T10:00+08:00", "--sandbox", env=env)


def test_send_sandbox_honours_dispatcher_sandbox_force_errcode(project: Path) -> None:
    env = {"DISPATCHER_SANDBOX_FORCE_ERRCODE": '{"asyncsend_v2": 60011}'}
    result = send_in_sandbox(project, env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sub_code 60011" in result.stderr and "grant the permission" in result.stderr
    assert "Traceback" not in result.stderr


def test_send_sandbox_honours_the_sandbox_monthly_quota(project: Path) -> None:
    env = {"DISPATCHER_SANDBOX_MONTHLY_QUOTA": "1", "DISPATCHER_SANDBOX_SUB_CODE_FORM": "errmsg"}
    result = send_in_sandbox(project, env)
    # The send spends the one call; reading its receipt meets 90020 and is only a warning.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no receipt for task" in result.stdout and "sub_code 90020" in result.stdout


def test_an_unknown_sub_code_reaches_the_run_history(project: Path, sandbox: Sandbox, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from dispatcher.config.check import load_config
    from dispatcher.run.delivery import make_client
    from dispatcher.run.metrics import Metrics
    from dispatcher.run.prepare import build_sources
    from dispatcher.run.runner import execute
    from dispatcher.run.services import Services
    from dispatcher.store.db import StateStore
    from dispatcher.store.ledger import Ledger

    config = load_config(project / "reports.yaml", env={})
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    ledger = Ledger(store)
    client = make_client(config, CREDS, store, base_url=sandbox.url)
    svc = Services(config, build_sources(config), client, ledger, Metrics(), "test")
    sandbox.set_options(force_errcode={"asyncsend_v2": 77777})
    try:
        run = ledger.claim("daily", datetime(2026, 11, 27, 1, 0, tzinfo=UTC), "test")
        assert run is not None and execute(svc, config.reports["daily"], run) == "failed"
        [row] = ledger.history("daily")
    finally:
        svc.sources.dispose()
        client.close()
        store.close()
    assert "sub_code 77777" in (row.error or "") and "sub_msg sandbox forced error" in (row.error or "")
    assert row.next_retry_at is not None, "an unknown code is retried by the run's own retries"
