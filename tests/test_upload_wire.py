"""media/upload on the wire and its refusals: the file part's Content-Type as DingTalk's own client
sends it, a 413 page from a server or proxy, the 1 MB image limit, and errcode 88's camel-case
`subCode`. A scripted HTTP server on 127.0.0.1 records the raw request bytes; the sandbox answers
the rest."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import pytest

from dispatcher.dingtalk import errors
from dispatcher.dingtalk.client import Credentials, DingTalkClient, RetryPolicy
from dispatcher.dingtalk.message import markdown_msg
from dispatcher.errors import DeliveryError
from dispatcher.sandbox import Sandbox, SandboxOptions
from tests.feature_kit import Answer, Scripted, serving

CREDS = Credentials("dingsandboxkey", "sandbox-secret", 100000001)
FAST = RetryPolicy(
    max_attempts=4, max_total_seconds=20.0, base_delay=0.01, max_delay=0.05, throttle_min_delay=0.05
)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PAGE_413 = (
    b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
    b"<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@pytest.fixture
def capture() -> Iterator[Scripted]:
    yield from serving(Scripted(done=b'{"errcode":0,"media_id":"@lAcaptured","type":"file"}'))


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as box:
        yield box


def client_for(url: str) -> DingTalkClient:
    return DingTalkClient(CREDS, base_url=url, retry=FAST, receipts="off")


def uploaded_parts(request: dict[str, Any]) -> dict[str, Message]:
    """The multipart body as the server received it: field name -> the part, headers included."""
    head = f"Content-Type: {request['headers']['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request["body"])
    parts = {}
    for part in message.iter_parts():
        assert isinstance(part, Message)
        parts[str(part.get_param("name", header="content-disposition"))] = part
    return parts


# -- item 7: the file part's Content-Type -----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name", "content_type"),
    [
        ("image", "chart.png", "image/png"),
        ("image", "photo.jpg", "image/jpeg"),
        ("file", "regions.zip", "application/zip"),
        ("file", "明细-2026-11-27.xlsx", XLSX),
        ("file", "report.pdf", "application/pdf"),
    ],
)
def test_the_uploaded_file_part_carries_its_content_type(
    capture: Scripted, kind: str, name: str, content_type: str
) -> None:
    with client_for(capture.url) as client:
        assert client.media_id(kind, name, b"PK\3\4 some bytes") == "@lAcaptured"
    [upload] = [s for s in capture.seen if s["path"].startswith("/media/upload")]
    parts = uploaded_parts(upload)
    media = parts["media"]
    assert media.get_content_type() == content_type
    assert media.get_filename() == name
    assert media.get_payload(decode=True) == b"PK\3\4 some bytes"
    assert parts["type"].get_payload() == kind
    assert "Content-Type" not in parts["type"], "the type field stays a plain form field"


# -- item 4: HTTP 413 with an HTML page -------------------------------------------------------


def test_a_413_page_says_the_file_is_too_large_with_its_size_and_the_limit(capture: Scripted) -> None:
    capture.answers.append(Answer(413, PAGE_413, content_type="text/html"))
    content = b"PK\3\4" + b"\0" * (3 * 1024 * 1024)
    with client_for(capture.url) as client, pytest.raises(DeliveryError) as caught:
        client.media_id("file", "regions.zip", content)
    error = caught.value
    assert "regions.zip" in error.message and "3.0 MB" in error.message
    assert "too large" in error.message and "HTTP 413" in error.message
    assert "10 MB" in error.message, "the limit DingTalk itself applies to a file"
    assert "DINGTALK_API_BASE" not in str(error)
    assert "client_max_body_size" in (error.hint or ""), "a proxy in between may allow less"
    assert not error.retryable
    assert len([s for s in capture.seen if s["path"].startswith("/media/upload")]) == 1, "not retried"


def test_a_413_on_another_call_says_the_request_was_too_large(capture: Scripted) -> None:
    capture.answers.append(Answer(413, PAGE_413, content_type="text/html"))
    with client_for(capture.url) as client, pytest.raises(DeliveryError) as caught:
        client.send(markdown_msg("日报", "合计 12"), userids=["user001"])
    assert "too large (HTTP 413)" in caught.value.message
    assert "DINGTALK_API_BASE" not in str(caught.value)


# -- item 5: images of at most 1 MB -----------------------------------------------------------


def test_an_image_over_1_mb_is_refused_before_uploading(sandbox: Sandbox) -> None:
    with client_for(sandbox.url) as client, pytest.raises(DeliveryError) as caught:
        client.media_id("image", "chart.png", b"\x89PNG" + b"\0" * (1024 * 1024))
    assert "'chart.png' is 1.0 MB; an image may be at most 1 MB" in caught.value.message
    assert "chart" in (caught.value.hint or "")
    assert sandbox.calls("media_upload") == [], "refused before spending a call"
    with client_for(sandbox.url) as client:
        assert client.media_id("image", "chart.png", b"\x89PNG" + b"\0" * (1024 * 1024 - 4))


def test_the_sandbox_refuses_an_image_over_1_mb_with_40006_and_the_hint_covers_images(
    sandbox: Sandbox,
) -> None:
    with client_for(sandbox.url) as client:
        token = client.token()
    import requests

    answer = requests.post(
        f"{sandbox.url}/media/upload",
        params={"access_token": token},
        data={"type": "image"},
        files={"media": ("big.png", b"\0" * (1024 * 1024 + 1), "image/png")},
        timeout=30,
    ).json()
    assert answer["errcode"] == 40006, answer
    sandbox.set_options(force_errcode={"media_upload": 40006})
    with client_for(sandbox.url) as client, pytest.raises(DeliveryError) as caught:
        client.media_id("image", "chart.png", b"\x89PNG small")
    assert caught.value.errcode == 40006
    hint = caught.value.hint or ""
    assert "an image at most 1 MB" in hint and "a file message at most 10 MB" in hint


# -- item 6: errcode 88 with a camel-case subCode ---------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code", "text"),
    [
        (
            {"errcode": 88, "subCode": "60011", "subMsg": "没有调用该接口的权限"},
            60011,
            "没有调用该接口的权限",
        ),
        ({"errcode": 88, "subCode": 90018, "subMsg": "api frequency limit"}, 90018, "api frequency limit"),
        (
            {"errcode": 88, "subCode": "40014", "errmsg": "ding talk error[subcode=40014,submsg=坏]"},
            40014,
            "坏",
        ),
    ],
)
def test_unwrap_reads_the_camel_case_sub_code(payload: dict[str, Any], code: int, text: str) -> None:
    answer = errors.unwrap(payload, int(payload["errcode"]))
    assert (answer.errcode, answer.errmsg, answer.wrapped) == (code, text, True)


def test_a_camel_case_throttle_is_retried_and_a_camel_case_permission_error_names_its_code(
    capture: Scripted,
) -> None:
    capture.answers += [
        Answer(200, b'{"errcode":88,"subCode":"90018","subMsg":"api frequency limit"}'),
        Answer(200, b'{"errcode":0,"task_id":7}'),
    ]
    with client_for(capture.url) as client:
        assert client.send(markdown_msg("日报", "合计 12"), userids=["user001"]).task_ids == [7]
    capture.answers.append(
        Answer(200, '{"errcode":88,"subCode":"60011","subMsg":"没有调用该接口的权限"}'.encode())
    )
    with client_for(capture.url) as client, pytest.raises(DeliveryError) as caught:
        client.send(markdown_msg("日报", "合计 12"), userids=["user001"])
    assert caught.value.errcode == 60011
    assert "errcode 88, sub_code 60011" in caught.value.message
    assert "developer console" in (caught.value.hint or "")
