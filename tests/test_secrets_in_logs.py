"""The app secret and access tokens never reach logs, exception texts, reprs or results."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from dispatcher.dingtalk.client import Credentials, DingTalkClient, RetryPolicy
from dispatcher.dingtalk.message import markdown_msg
from dispatcher.errors import DeliveryError
from dispatcher.redact import RedactingFilter, install, redact
from dispatcher.sandbox.server import Sandbox, SandboxOptions

SECRET = "sandbox-secret-5f2c9a"
CREDS = Credentials("dingsandboxkey", SECRET, 100000001)
FAST = RetryPolicy(
    max_attempts=6, max_total_seconds=10.0, base_delay=0.01, max_delay=0.02, throttle_min_delay=0.02
)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(SandboxOptions(app_secret=SECRET, seed=3, generated_users=100), port=0).start()
    try:
        yield sb
    finally:
        sb.stop()


def test_a_full_eventful_send_leaks_no_secret_or_token(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # root at DEBUG: urllib3's request lines included
    sandbox.set_options(throttle_first=1)  # the first lookup answers 90018
    events: list[str] = []

    def inject_faults(endpoint: str, errcode: int | None, seconds: float) -> None:
        if endpoint == "asyncsend_v2" and errcode == 0 and "expired" not in events:
            events.append("expired")
            sandbox.expire_tokens()  # the next send meets 42001
            sandbox.set_options(fail_rate=1.0)  # ... and then HTTP 500
        elif errcode is None and "recovered" not in events:
            events.append("recovered")
            sandbox.set_options(fail_rate=0.0)

    client = DingTalkClient(CREDS, base_url=sandbox.url, retry=FAST, on_call=inject_faults)
    first_token = client.token()
    result = client.send(  # 101 userids + 1 resolved mobile: two sends, a token expiry between
        markdown_msg("日报", "**ok**"),
        userids=[f"u{i:05d}" for i in range(1, 101)] + ["user001"],
        mobiles=["13800000000", "13712345678"],
    )
    second_token = client.token()
    errors = _errors_raised(sandbox)

    assert events == ["expired", "recovered"], "every fault should have happened"
    assert first_token != second_token
    codes = [c["sub_code"] or c["errcode"] for c in sandbox.calls()]  # 88 envelopes unwrapped
    assert 90018 in codes and 42001 in codes and None in codes  # None: the HTTP 500
    assert "access_token=***" in caplog.text, "urllib3's request lines should be captured"

    texts = [caplog.text, *(r.getMessage() for r in caplog.records)]
    texts += [repr(result), str(result), repr(client), repr(CREDS), str(CREDS)]
    texts += [t for e in errors for t in (str(e), repr(e), repr(e.args), str(e.hint))]
    for secret in (SECRET, first_token, second_token):
        leaks = [t for t in texts if secret in t]
        assert not leaks, f"a secret leaked into: {leaks[0][:300]!r}"


def _errors_raised(sandbox: Sandbox) -> list[DeliveryError]:
    """Errors whose underlying exceptions carry full URLs: refused connection, bad secret."""
    found: list[DeliveryError] = []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    unreachable = DingTalkClient(
        CREDS, base_url=f"http://127.0.0.1:{closed_port}", retry=RetryPolicy(1, 5.0, 0.01, 0.01)
    )
    bad = DingTalkClient(
        Credentials("dingsandboxkey", SECRET + "-wrong", 100000001),
        base_url=sandbox.url,
        retry=FAST,
    )
    for client in (unreachable, bad):
        with pytest.raises(DeliveryError) as caught:
            client.token()
        logging.getLogger("dispatcher.test").exception("delivery failed", exc_info=caught.value)
        found.append(caught.value)
    assert found[0].__context__ is None and found[0].__cause__ is None
    return found


def test_redact_masks_query_and_json_forms() -> None:
    text = 'GET /gettoken?appkey=k&appsecret=s3cr3t&x=1 {"access_token": "abc123"} ?access_token=t0k'
    assert redact(text) == (
        'GET /gettoken?appkey=k&appsecret=***&x=1 {"access_token": "***"} ?access_token=***'
    )


def test_filter_redacts_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    install()
    install()  # idempotent
    logger = logging.getLogger("dispatcher")
    assert sum(isinstance(f, RedactingFilter) for f in logger.filters) == 1
    caplog.set_level(logging.DEBUG)
    try:
        raise ValueError("http://x/send?access_token=tok-in-traceback")
    except ValueError:
        logger.exception("call %s failed", "/send?access_token=tok-in-args")
    assert "tok-in-args" not in caplog.text and "tok-in-traceback" not in caplog.text
    assert "access_token=***" in caplog.text
