"""The sandbox against DingTalk's documented rules (issue 24, item 10), over real HTTP.

[upload-media-files] `type` may travel in the query string; images are jpg, gif, png or bmp.
[message-types-and-data-format] an OA card needs `head.bgcolor` (8 hex digits, ARGB) and `head.text`.
[server-api-error-codes] 41045: a message to the whole company (`to_all_user`) at most 3 times a day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from dispatcher import clock
from dispatcher.sandbox import Sandbox, SandboxOptions
from tests.test_sandbox import SEND, Api, code, markdown

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(seed=7)) as sb:
        yield sb


@pytest.fixture
def api(sandbox: Sandbox) -> Api:
    return Api(sandbox)


def upload(api: Api, name: str, query: dict[str, str], fields: dict[str, str]) -> dict[str, Any]:
    reply = api.http.post(
        f"{api.url}/media/upload",
        params={"access_token": api.token(), **query},
        data=fields,
        files={"media": (name, b"\x89PNG\r\n\x1a\n tiny")},
        timeout=10,
    )
    return dict(reply.json())


def test_an_upload_may_give_its_type_in_the_query_string(api: Api) -> None:
    answer = upload(api, "chart.png", {"type": "image"}, {})
    assert answer["errcode"] == 0 and answer["type"] == "image", answer
    assert upload(api, "chart.png", {}, {})["errcode"] == 40004  # no type anywhere


@pytest.mark.parametrize(("name", "errcode"), [("a.jpg", 0), ("a.gif", 0), ("a.bmp", 0), ("a.jpeg", 40005)])
def test_images_are_jpg_gif_png_or_bmp_and_not_jpeg(api: Api, name: str, errcode: int) -> None:
    answer = upload(api, name, {}, {"type": "image"})
    assert answer["errcode"] == errcode, answer


def oa(head: Any) -> dict[str, Any]:
    body = {"title": "日报", "rich": {"num": "12", "unit": "单"}}
    return {"msgtype": "oa", "oa": {"message_url": "https://example.com/r", "head": head, "body": body}}


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        ({"bgcolor": "1E88E5", "text": "日报"}, "msg.oa.head.bgcolor"),  # 6 digits: no alpha
        ({"bgcolor": "0xFF1E88E5", "text": "日报"}, "msg.oa.head.bgcolor"),
        ({"bgcolor": "FFGG88E5", "text": "日报"}, "msg.oa.head.bgcolor"),
        ({"text": "日报"}, "msg.oa.head.bgcolor"),
        ({"bgcolor": "FF1E88E5"}, "msg.oa.head.text"),
        ("FF1E88E5", "msg.oa.head"),
    ],
)
def test_an_oa_cards_head_needs_an_argb_colour_and_a_text(api: Api, head: Any, problem: str) -> None:
    reply = api.send(oa(head), userids="manager4974")
    assert code(reply) == 400002 and problem in reply["errmsg"], reply
    assert api.send(oa({"bgcolor": "FF1E88E5", "text": "日报"}), userids="manager4974")["errcode"] == 0


def test_an_oa_card_needs_its_message_url_and_body(api: Api) -> None:
    card = oa({"bgcolor": "FF1E88E5", "text": "日报"})
    for field in ("message_url", "body"):
        broken = {"msgtype": "oa", "oa": {k: v for k, v in card["oa"].items() if k != field}}
        reply = api.send(broken, userids="manager4974")
        assert code(reply) == 400002 and f"msg.oa.{field}" in reply["errmsg"], reply


def test_a_message_to_the_whole_company_is_allowed_three_times_a_day(
    sandbox: Sandbox, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One fixed instant, mid-day in Shanghai (DingTalk's day): the count never straddles a midnight.
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 11, 28, 4, 0, tzinfo=UTC))
    for n in range(3):
        assert api.send(markdown(text=f"全员通知 {n}"), to_all_user="true")["errcode"] == 0
    refused = api.send(markdown(text="全员通知 3"), to_all_user="true")
    assert code(refused) == 41045, refused
    assert len(sandbox.calls("asyncsend_v2")) == 4
    assert (
        api.post(SEND, {"agent_id": 100000001, "msg": markdown(text="一个人"), "userid_list": "manager4974"})[
            "errcode"
        ]
        == 0
    )  # the limit is on messages to everyone, not on the app
