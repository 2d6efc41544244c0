"""The DingTalk client against the real sandbox server (and, for wire-level facts, a scripted
HTTP server). Nothing in the HTTP layer is mocked."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from dispatcher.dingtalk.client import Credentials, DingTalkClient, RetryPolicy
from dispatcher.dingtalk.message import markdown_msg, msg_bytes, text_msg
from dispatcher.dingtalk.transport import Registry, cache_seconds
from dispatcher.errors import CredentialsError, DeliveryError
from dispatcher.sandbox.server import Sandbox, SandboxOptions
from dispatcher.store.db import StateStore
from dispatcher.store.userids import UseridCache

CREDS = Credentials("dingsandboxkey", "sandbox-secret", 100000001)
FAST = RetryPolicy(
    max_attempts=8, max_total_seconds=20.0, base_delay=0.01, max_delay=0.05, throttle_min_delay=0.05
)
MSG = markdown_msg("每日销售", "### 每日销售  \n  华东 **1,299.75**")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(SandboxOptions(seed=7, generated_users=260), port=0).start()
    try:
        yield sb
    finally:
        sb.stop()


def client_for(sb: Sandbox, **kw: Any) -> DingTalkClient:
    kw.setdefault("retry", FAST)
    return DingTalkClient(kw.pop("credentials", CREDS), base_url=sb.url, **kw)


def users(n: int, start: int = 1) -> list[str]:
    return [f"u{i:05d}" for i in range(start, start + n)]


def mobile_of(i: int) -> str:
    return f"139{50000000 + i:08d}"  # the sandbox's generated user u{i:05d}


def endpoint_counts(sb: Sandbox) -> Counter[str]:
    return Counter(c["endpoint"] for c in sb.calls())


def delivered(sb: Sandbox) -> Counter[str]:
    return Counter(m["userid"] for m in sb.messages())


# -- batching and the userid cache ---------------------------------------------------------


def test_250_userids_3_mobiles_2_depts_take_1_token_3_lookups_3_sends(
    sandbox: Sandbox, tmp_path: Any
) -> None:
    store = UseridCache(StateStore(f"sqlite:///{tmp_path / 'state.db'}"))
    mobiles = [mobile_of(251), mobile_of(252), "13800000000"]
    with client_for(sandbox, userid_cache=store) as client:
        result = client.send(MSG, userids=users(250), mobiles=mobiles, dept_ids=[123, 456])

    counts = endpoint_counts(sandbox)
    assert (counts["gettoken"], counts["getbymobile"], counts["asyncsend_v2"]) == (1, 3, 3)
    bodies = [c["body"] for c in sandbox.calls("asyncsend_v2")]
    expected_users = users(250) + ["u00251", "u00252", "manager4974"]
    assert bodies == [
        {
            "agent_id": 100000001,
            "userid_list": ",".join(expected_users[:100]),
            "dept_id_list": "123,456",
            "msg": MSG,
        },
        {"agent_id": 100000001, "userid_list": ",".join(expected_users[100:200]), "msg": MSG},
        {"agent_id": 100000001, "userid_list": ",".join(expected_users[200:]), "msg": MSG},
    ]
    assert [c["body"] for c in sandbox.calls("getbymobile")] == [{"mobile": m} for m in mobiles]
    assert result.batches == 3 and result.recipients == 253 and result.dept_ids == [123, 456]
    assert result.task_ids == [t["task_id"] for t in sandbox.tasks()]
    assert all(delivered(sandbox)[u] == 1 for u in expected_users)


def test_second_run_with_the_same_cache_makes_no_lookups(sandbox: Sandbox, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    mobiles = [mobile_of(251), mobile_of(252), "13800000000"]
    with client_for(sandbox, userid_cache=UseridCache(StateStore(url))) as client:
        client.send(MSG, mobiles=mobiles, receipts=False)
    sandbox.reset()

    with client_for(sandbox, userid_cache=UseridCache(StateStore(url))) as client:
        client.send(text_msg("second run"), mobiles=mobiles, receipts=False)

    assert endpoint_counts(sandbox)["getbymobile"] == 0
    assert sorted(delivered(sandbox)) == ["manager4974", "u00251", "u00252"]


def test_duplicate_recipients_are_sent_once_in_order(sandbox: Sandbox) -> None:
    with client_for(sandbox) as client:
        result = client.send(
            MSG, userids=["user002", "user001", "user002", " user001 "], mobiles=["13900000001"]
        )
    assert sandbox.calls("asyncsend_v2")[0]["body"]["userid_list"] == "user002,user001"
    assert result.recipients == 2


# -- tokens --------------------------------------------------------------------------------


def test_token_expiring_mid_run_is_refetched_once_and_everyone_gets_the_message(
    sandbox: Sandbox,
) -> None:
    expired = threading.Event()

    def expire_after_first_send(endpoint: str, errcode: int | None, seconds: float) -> None:
        if endpoint == "asyncsend_v2" and errcode == 0 and not expired.is_set():
            expired.set()
            sandbox.expire_tokens()

    with client_for(sandbox, on_call=expire_after_first_send) as client:
        client.send(MSG, userids=users(250), receipts=False)

    counts = endpoint_counts(sandbox)
    assert counts["gettoken"] == 2
    assert [c["sub_code"] or c["errcode"] for c in sandbox.calls("asyncsend_v2")] == [0, 42001, 0, 0]
    assert delivered(sandbox) == Counter(users(250))


def test_twenty_threads_asking_for_a_token_cause_one_gettoken(sandbox: Sandbox) -> None:
    sandbox.set_options(latency=0.2)
    client = client_for(sandbox)
    barrier = threading.Barrier(20)
    tokens: list[str] = []

    def ask() -> None:
        barrier.wait()
        tokens.append(client.token())

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)

    assert len(tokens) == 20 and len(set(tokens)) == 1
    assert endpoint_counts(sandbox)["gettoken"] == 1


def test_clients_of_the_same_app_share_the_token(sandbox: Sandbox) -> None:
    registry = Registry()  # what dispatcher.app's open_app gives every client of one app
    assert client_for(sandbox, registry=registry).token() == client_for(sandbox, registry=registry).token()
    assert endpoint_counts(sandbox)["gettoken"] == 1


def test_bad_credentials_raise_credentials_error_naming_the_env_vars(sandbox: Sandbox) -> None:
    client = client_for(sandbox, credentials=Credentials("dingsandboxkey", "wrong", 100000001))
    with pytest.raises(CredentialsError) as caught:
        client.send(MSG, userids=["user001"])

    err = caught.value
    assert err.errcode == 40096 and err.endpoint == "gettoken"
    assert "DingTalk rejected the app credentials (errcode 40096)" in str(err)
    assert "DINGTALK_APP_KEY" in str(err) and "DINGTALK_APP_SECRET" in str(err)
    assert endpoint_counts(sandbox) == Counter({"gettoken": 1}), "credentials are never retried"


@pytest.mark.parametrize(
    ("expires_in", "cached_for"), [(7200, 6900), (None, 6900), (0, 6900), (300, 150), (60, 30)]
)
def test_tokens_are_kept_until_five_minutes_before_expiry(expires_in: Any, cached_for: float) -> None:
    assert cache_seconds(expires_in) == cached_for


# -- retries -------------------------------------------------------------------------------


def test_throttled_calls_are_retried_after_the_minimum_wait(sandbox: Sandbox) -> None:
    sandbox.set_options(throttle_first=2)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    with client_for(sandbox, sleep=sleep) as client:
        client.send(MSG, userids=["user001", "user002"], receipts=False)

    assert [c["sub_code"] or c["errcode"] for c in sandbox.calls("asyncsend_v2")] == [90018, 90018, 0]
    assert len(slept) == 2 and min(slept) >= FAST.throttle_min_delay
    assert delivered(sandbox) == Counter(["user001", "user002"])


def test_flaky_server_still_delivers_every_batch_exactly_once(sandbox: Sandbox) -> None:
    sandbox.set_options(fail_rate=0.3, reset_rate=0.1, seed=11)
    with client_for(sandbox) as client:
        result = client.send(MSG, userids=users(250))

    assert delivered(sandbox) == Counter(users(250)), "each user exactly once"
    statuses = [c["http_status"] for c in sandbox.calls()]
    assert 500 in statuses, "the seed should have injected failures"
    by_batch: dict[str, list[Any]] = {}
    for call in sandbox.calls("asyncsend_v2"):
        by_batch.setdefault(call["body"]["userid_list"], []).append(call["body"])
    assert len(by_batch) == 3
    assert all(b == bodies[0] for bodies in by_batch.values() for b in bodies)
    assert result.counts()["unread"] + result.counts()["forbidden_143106"] == 250


def test_whitelist_error_is_not_retried_and_says_what_to_do(sandbox: Sandbox) -> None:
    sandbox.set_options(force_errcode={"asyncsend_v2": 60020})
    with pytest.raises(DeliveryError) as caught, client_for(sandbox) as client:
        client.send(MSG, userids=["user001"])

    err = caught.value
    assert (err.errcode, err.endpoint, err.retryable) == (60020, "asyncsend_v2", False)
    assert "whitelist" in str(err) and "egress IP" in (err.hint or "")
    assert len(sandbox.calls("asyncsend_v2")) == 1


def test_a_bad_parameter_names_the_field(sandbox: Sandbox) -> None:
    incomplete = {"msgtype": "markdown", "markdown": {"text": "no title"}}
    with pytest.raises(DeliveryError) as caught, client_for(sandbox) as client:
        client.send(incomplete, userids=["user001"])

    assert caught.value.errcode in (400002, 40035)
    assert "msg.markdown.title" in (caught.value.hint or "")
    assert len(sandbox.calls("asyncsend_v2")) == 1


def test_wrong_agent_id_points_at_the_env_var(sandbox: Sandbox) -> None:
    creds = Credentials("dingsandboxkey", "sandbox-secret", 42)
    with pytest.raises(DeliveryError) as caught, client_for(sandbox, credentials=creds) as client:
        client.send(MSG, userids=["user001"])
    assert caught.value.errcode == 40056 and "DINGTALK_AGENT_ID" in str(caught.value)


def test_a_server_that_keeps_failing_is_given_up_after_max_attempts(sandbox: Sandbox) -> None:
    sandbox.set_options(fail_rate=1.0)
    client = client_for(sandbox, retry=RetryPolicy(3, 10.0, 0.01, 0.02))
    with pytest.raises(DeliveryError) as caught:
        client.token()
    assert caught.value.retryable and "3 attempts" in str(caught.value)
    assert len(sandbox.calls("gettoken")) == 3


def test_oversized_message_is_refused_before_any_call(sandbox: Sandbox) -> None:
    big = text_msg("数" * 700)
    assert msg_bytes(big) > 2048
    with pytest.raises(DeliveryError, match="2048"):
        client_for(sandbox).send(big, userids=["user001"])
    assert sandbox.calls() == []


# -- mobiles -------------------------------------------------------------------------------


def test_unknown_and_invalid_mobiles_are_masked_and_the_rest_still_get_it(sandbox: Sandbox) -> None:
    with client_for(sandbox) as client:
        result = client.send(MSG, userids=["user001"], mobiles=["13712345678", "23800001111", "13800000000"])

    assert result.unresolved_mobiles == [
        "137****5678: no employee with this mobile (errcode 60121)",
        "238****1111: not a valid mobile number (errcode 40104)",
    ]
    assert sorted(delivered(sandbox)) == ["manager4974", "user001"]
    assert "13712345678" not in repr(result) and "23800001111" not in repr(result)


def test_lookup_failures_other_than_unknown_mobile_stop_the_send(sandbox: Sandbox) -> None:
    sandbox.set_options(force_errcode={"getbymobile": 60011})
    with pytest.raises(DeliveryError) as caught:
        client_for(sandbox).send(MSG, userids=["user001"], mobiles=["13800000000"])
    assert caught.value.errcode == 60011 and "developer console" in str(caught.value)
    assert sandbox.calls("asyncsend_v2") == []


def test_no_recipient_left_is_an_error_not_an_empty_send(sandbox: Sandbox) -> None:
    with pytest.raises(DeliveryError, match=r"no recipient.*137\*\*\*\*5678"):
        client_for(sandbox).send(MSG, mobiles=["13712345678"])
    assert sandbox.calls("asyncsend_v2") == []


# -- receipts ------------------------------------------------------------------------------


def test_same_message_twice_to_a_user_is_reported_as_forbidden_143106(sandbox: Sandbox) -> None:
    with client_for(sandbox) as client:
        first = client.send(MSG, userids=["user001", "user002"])
        second = client.send(MSG, userids=["user001"])

    assert first.counts()["unread"] == 2
    assert second.receipts[0].forbidden == {"user001": "143106"}
    assert second.counts()["forbidden_143106"] == 1 and second.counts()["forbidden"] == 1
    assert delivered(sandbox)["user001"] == 1


def test_failed_users_are_resent_once_and_then_delivered(sandbox: Sandbox) -> None:
    sandbox.set_options(failing_userids=frozenset({"user002"}))
    with client_for(sandbox) as client:
        result = client.send(MSG, userids=["user001", "user002", "user003"])

    assert result.receipts[0].failed == ["user002"]
    assert len(result.resent_task_ids) == 1 and result.resent_userids == ["user002"]
    assert sandbox.calls("asyncsend_v2")[1]["body"]["userid_list"] == "user002"
    assert sandbox.calls("asyncsend_v2")[1]["body"]["msg"] == MSG
    assert result.receipts[1].unread == ["user002"]
    assert result.counts() | {} == {
        "invalid": 0,
        "forbidden": 0,
        "forbidden_143105": 0,
        "forbidden_143106": 0,
        "failed": 0,
        "read": 0,
        "unread": 3,
        "resent": 1,
    }
    assert delivered(sandbox) == Counter(["user001", "user002", "user003"])


def test_receipts_wait_for_the_task_to_finish(sandbox: Sandbox) -> None:
    sandbox.set_options(progress_delay=0.5)
    with client_for(sandbox) as client:
        result = client.send(MSG, userids=["user001", "nobody-here"])

    assert len(sandbox.calls("getsendprogress")) >= 2
    receipt = result.receipts[0]
    assert receipt.complete and receipt.invalid == ["nobody-here"] and receipt.unread == ["user001"]
    assert [c["body"] for c in sandbox.calls("getsendresult")] == [
        {"agent_id": 100000001, "task_id": result.task_ids[0]}
    ]


def test_receipt_timeout_bounds_the_wait(sandbox: Sandbox) -> None:
    # The task completes only after 30 s: a client that ignored receipt_timeout would wait for it
    # and come back with a complete receipt.
    sandbox.set_options(progress_delay=30)
    with client_for(sandbox) as client:
        result = client.send(MSG, userids=["user001"], receipt_timeout=0.5)
    assert not result.receipts[0].complete


def test_tasks_with_departments_are_passed_to_getsendresult_only_in_full_mode(sandbox: Sandbox) -> None:
    with client_for(sandbox, receipts="result", receipt_wait=0.0) as client:
        result = client.send(MSG, userids=["user001"], dept_ids=[123])
    assert sandbox.calls("getsendresult") == []
    assert result.receipts[0].dept_ids == [123] and not result.receipts[0].complete

    sandbox.set_options(force_errcode={"getsendresult": 90018})
    with client_for(sandbox) as client:  # full: asked once, after the task finished, never retried
        result = client.send(MSG, userids=["user002"], dept_ids=[125])
    assert [c["sub_code"] for c in sandbox.calls("getsendresult")] == [90018]
    assert not result.receipts[0].complete and "no receipt for task" in result.warnings[0]


def test_a_receipt_that_cannot_be_read_does_not_fail_the_delivery(sandbox: Sandbox) -> None:
    sandbox.set_options(force_errcode={"getsendresult": 60011})
    with client_for(sandbox) as client:
        result = client.send(MSG, userids=["user001"])

    assert result.task_ids and not result.receipts[0].complete
    assert result.receipts[0].userids == ["user001"]
    assert "60011" in result.warnings[0] and str(result.task_ids[0]) in result.warnings[0]
    assert delivered(sandbox) == Counter(["user001"])


def test_recall_sends_the_task_id_as_msg_task_id(sandbox: Sandbox) -> None:
    with client_for(sandbox) as client:
        result = client.send(MSG, userids=["user001"], receipts=False)
        client.recall(result.task_ids[0])
    assert sandbox.calls("recall")[0]["body"] == {
        "agent_id": 100000001,
        "msg_task_id": result.task_ids[0],
    }
    assert sandbox.calls("recall")[0]["errcode"] == 0


# -- configuration and hooks ---------------------------------------------------------------


def test_base_url_comes_from_the_environment_without_trailing_slash(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DINGTALK_API_BASE", sandbox.url + "/")
    client = DingTalkClient(CREDS, retry=FAST)
    assert client.base_url == sandbox.url
    assert client.token()
    monkeypatch.delenv("DINGTALK_API_BASE")
    assert DingTalkClient(CREDS).base_url == "https://oapi.dingtalk.com"


def test_on_call_reports_every_http_call(sandbox: Sandbox) -> None:
    seen: list[tuple[str, int | None, float]] = []
    sandbox.set_options(throttle_first=1)
    with client_for(sandbox, on_call=lambda *a: seen.append(a)) as client:
        client.send(MSG, userids=["user001"], receipts=False)
    assert [(e, c) for e, c, _ in seen] == [
        ("gettoken", 0),
        ("asyncsend_v2", 90018),
        ("asyncsend_v2", 0),
    ]
    assert all(s >= 0 for _, _, s in seen)


def test_credentials_repr_hides_the_secret() -> None:
    assert "sandbox-secret" not in repr(CREDS) and "**" in repr(CREDS)
    assert CREDS.secret() == "sandbox-secret"


def test_runs_resolving_the_same_mobiles_at_once_look_each_up_once(sandbox: Sandbox, tmp_path: Any) -> None:
    cache = UseridCache(StateStore(f"sqlite:///{tmp_path / 'state.db'}"))
    mobiles = [mobile_of(i) for i in range(1, 6)]
    results: list[dict[str, str]] = []
    with client_for(sandbox, userid_cache=cache) as client:
        threads = [
            threading.Thread(target=lambda: results.append(client.resolve_mobiles(mobiles)[0]))
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert endpoint_counts(sandbox)["getbymobile"] == 5
    assert results == [{m: f"u{i:05d}" for i, m in enumerate(mobiles, start=1)}] * 8
