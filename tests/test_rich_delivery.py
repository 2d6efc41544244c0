"""Rich reports end to end: render -> media/upload -> send, against a real sandbox over HTTP and a real
SQLite state store. Every message type goes through the sandbox and out through its inbox."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import requests

from dispatcher import clock
from dispatcher.config.check import load_config
from dispatcher.dingtalk.client import Credentials, DingTalkClient, Pacing
from dispatcher.errors import DeliveryError
from dispatcher.run.delivery import recipients_for
from dispatcher.run.parts import build_parts, deliver_parts
from dispatcher.run.prepare import prepare
from dispatcher.run.services import Services
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.db import StateStore
from dispatcher.store.db import state_url as store_url
from dispatcher.store.media import MediaCache
from tests import feature_kit
from tests.conftest import make_shop_db
from tests.feature_kit import SANDBOX_APP, retry_at, run_at

FIRE = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
USERS = [f"u{i:05d}" for i in range(1, 151)]  # two batches of every part

CONFIG = (
    SANDBOX_APP
    + """\
  leads: {{userids: [manager4974, "0147282552401293909"]}}
  many: {{userids: {users}}}
reports:
  card:
    title: 每日销售日报
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT SUM(amount) AS sales, COUNT(*) AS orders FROM orders WHERE day = :day"
    params: {{day: "{{{{ yesterday }}}}"}}
    to: [leads]
    retry_delay: 1s
    msgtype: oa
    oa:
      head_color: "FF00A870"
      rich: {{num: "{{{{ row.sales | integer }}}}", unit: 元}}
      form: {{订单数: "{{{{ row.orders | integer }}}}"}}
      url: https://bi.example.com/sales
    chart:
      sql: "SELECT day, SUM(amount) AS sales FROM orders GROUP BY day ORDER BY day"
      x: day
      y: sales
      title: 销售趋势
    attach:
      format: xlsx
      name: "明细-{{{{ yesterday }}}}.xlsx"
      sql: "SELECT * FROM orders ORDER BY id"
  md:
    title: 区域销售
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT region, SUM(amount) AS sales FROM orders GROUP BY region ORDER BY region"
    to: [leads]
    retry_delay: 1s
    chart: {{x: region, y: [sales], kind: bar}}
    attach: {{format: csv, name: "regions.zip"}}
  txt:
    title: 文本日报
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT region, SUM(amount) AS sales FROM orders GROUP BY region ORDER BY region"
    to: [leads]
    msgtype: text
    chart: {{x: region, y: [sales], kind: barh}}
  act:
    title: 卡片日报
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT region, SUM(amount) AS sales FROM orders GROUP BY region ORDER BY region"
    to: [leads]
    msgtype: action_card
    action_url: https://bi.example.com/regions
    attach: {{format: xlsx, name: regions.xlsx}}
  wide:
    title: 全员趋势
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT region, SUM(amount) AS sales FROM orders GROUP BY region ORDER BY region"
    to: [many]
    chart: {{x: region, y: [sales]}}
    attach: {{format: xlsx, name: wide.xlsx}}
  huge:
    title: 大附件
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT 1 AS n"
    max_rows: 200000
    to: [leads]
    attach:
      format: csv
      name: huge.zip
      sql: >-
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 110000)
        SELECT i, hex(randomblob(50)) AS a, hex(randomblob(50)) AS b FROM n
"""
)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(generated_users=150)) as box:
        yield box


@pytest.fixture
def services(tmp_path: Path, sandbox: Sandbox) -> Iterator[Services]:
    (tmp_path / "reports.yaml").write_text(
        CONFIG.format(api_base=sandbox.url, users=json.dumps(USERS)), encoding="utf-8"
    )
    make_shop_db(tmp_path / "shop.db")
    with feature_kit.services(tmp_path / "reports.yaml", sandbox) as svc:
        yield svc


def run(svc: Services, report_id: str, fire: datetime = FIRE) -> str:
    return run_at(svc, report_id, fire)


def retry(svc: Services, report_id: str) -> str:
    return retry_at(svc, report_id)


def sent_msgs(sandbox: Sandbox) -> list[dict]:
    return [c["body"]["msg"] for c in sandbox.calls("asyncsend_v2") if c["errcode"] == 0]


def uploads(sandbox: Sandbox) -> list[dict]:
    return [c for c in sandbox.calls("media_upload") if c["errcode"] == 0]


def media(sandbox: Sandbox, media_id: str) -> requests.Response:
    answer = requests.get(f"{sandbox.url}/media/{media_id}", timeout=10)
    assert answer.status_code == 200
    return answer


def test_an_oa_card_carries_its_chart_and_is_followed_by_the_xlsx(
    services: Services, sandbox: Sandbox
) -> None:
    prepared = prepare(services.config, services.sources, services.config.reports["card"], FIRE)
    assert run(services, "card") == "sent"
    card, file = sent_msgs(sandbox)
    [image_up, file_up] = uploads(sandbox)
    assert image_up["body"] == {
        "type": "image",
        "media": {"filename": "chart.png", "bytes": len(prepared.rich.chart)},
    }
    assert file_up["body"]["media"]["filename"] == "明细-2026-11-27.xlsx"
    image_id = card["oa"]["body"]["image"]
    assert card == {
        "msgtype": "oa",
        "oa": {
            "message_url": "https://bi.example.com/sales",
            "head": {"bgcolor": "FF00A870", "text": "每日销售日报"},
            "body": {
                "title": "每日销售日报",
                "form": [{"key": "订单数", "value": "3"}],
                "rich": {"num": "2,100", "unit": "元"},
                "content": "统计日期 2026-11-27\n数据截至 2026-11-28 09:00",
                "image": image_id,
            },
        },
    }
    assert file == {"msgtype": "file", "file": {"media_id": file["file"]["media_id"]}}
    assert media(sandbox, image_id).content == prepared.rich.chart
    book = openpyxl.load_workbook(io.BytesIO(media(sandbox, file["file"]["media_id"]).content))
    assert len(list(book.active.iter_rows())) == 1 + 4, "the header and every order"
    [history] = services.ledger.history("card")
    units = Counter(b.get("unit", "") for b in history.batches["accepted"])
    assert units == {"": 1, "part:file": 1}


@pytest.mark.parametrize(
    ("report_id", "msgtypes"),
    [("md", ["markdown", "image", "file"]), ("txt", ["text", "image"]), ("act", ["action_card", "file"])],
)
def test_every_message_type_round_trips_through_the_sandbox_in_order(
    services: Services, sandbox: Sandbox, report_id: str, msgtypes: list[str]
) -> None:
    assert run(services, report_id) == "sent"
    assert [m["msgtype"] for m in sent_msgs(sandbox)] == msgtypes
    for userid in ("manager4974", "0147282552401293909"):
        inbox = sorted(sandbox.messages(userid), key=lambda m: m["id"])
        assert [m["msgtype"] for m in inbox] == msgtypes, "text or card, then image, then file"
    [history] = services.ledger.history(report_id)
    expected_units = {
        "markdown": "",
        "text": "",
        "action_card": "",
        "image": "part:image",
        "file": "part:file",
    }
    assert sorted(b.get("unit", "") for b in history.batches["accepted"]) == sorted(
        expected_units[t] for t in msgtypes
    )
    page = requests.get(f"{sandbox.url}/?userid=manager4974", timeout=10).text
    for msg in sent_msgs(sandbox)[1:]:
        media_id = msg[msg["msgtype"]]["media_id"]
        assert f"/media/{media_id}" in page
    if "file" in msgtypes:
        name = "regions.zip" if report_id == "md" else "regions.xlsx"
        assert re.search(rf'<a class="file" href="/media/[^"]+" download="{re.escape(name)}">', page)


def test_one_upload_per_content_and_fire_time_across_batches(services: Services, sandbox: Sandbox) -> None:
    assert run(services, "wide") == "sent"
    assert [len(c["body"]["userid_list"].split(",")) for c in sandbox.calls("asyncsend_v2")] == [100, 50] * 3
    assert len(uploads(sandbox)) == 2, "chart and file uploaded once for both batches"
    first_image = sent_msgs(sandbox)[2]["image"]["media_id"]

    assert run(services, "wide", FIRE + timedelta(days=1)) == "sent"
    assert len(uploads(sandbox)) == 4, "a new fire time uploads again: DingTalk drops a repeated media_id"
    assert sent_msgs(sandbox)[8]["image"]["media_id"] != first_image


def test_a_refused_part_leaves_the_run_partial_and_the_retry_resends_only_that_part(
    services: Services, sandbox: Sandbox
) -> None:
    # the markdown and the image go out; the file is refused once
    sandbox.set_options(force_errcode={"asyncsend_v2": 60011}, force_errcode_after=2, force_errcode_times=1)
    assert run(services, "md") == "partial"
    [history] = services.ledger.history("md")
    [refused] = history.batches["refused"]
    assert (refused["unit"], refused["errcode"], refused["recipients"]) == ("part:file", 60011, 2)
    assert history.next_retry_at is not None

    assert retry(services, "md") == "sent"
    assert [m["msgtype"] for m in sent_msgs(sandbox)] == ["markdown", "image", "file"], "nothing sent twice"
    assert len(uploads(sandbox)) == 2, "the retry reused both media_ids"
    [history] = services.ledger.history("md")
    assert (history.state, history.batches["refused"]) == ("sent", [])


def test_an_attachment_over_10_mb_is_not_sent_and_the_summary_says_so(
    services: Services, sandbox: Sandbox
) -> None:
    assert run(services, "huge") == "sent"
    [msg] = sent_msgs(sandbox)
    assert msg["msgtype"] == "markdown"
    assert "⚠️ attachment huge.zip not sent:" in msg["markdown"]["text"]
    assert "a file message carries at most 10 MB" in msg["markdown"]["text"]
    assert sandbox.calls("media_upload") == [], "the size is checked before uploading"
    [history] = services.ledger.history("huge")
    assert "attachment huge.zip not sent" in (history.error or "")


def test_a_refused_upload_says_why(services: Services, sandbox: Sandbox) -> None:
    client = services.client
    with pytest.raises(DeliveryError, match="a file only as doc, .*zip") as caught:
        client.media_id("file", "rows.csv", b"a,b\r\n1,2\r\n")
    assert "zipped" in (caught.value.hint or "")
    with pytest.raises(DeliveryError, match="11.0 MB; a file message may carry at most 10 MB"):
        client.media_id("file", "big.zip", b"\0" * (11 * 1024 * 1024))
    assert sandbox.calls("media_upload") == [], "refused before spending a call"


@pytest.mark.parametrize(
    ("fields", "files", "errcode"),
    [
        ({"type": "file"}, {"media": ("rows.csv", b"a,b")}, 40005),
        ({"type": "sticker"}, {"media": ("a.png", b"x")}, 40004),
        ({"type": "image"}, {}, 41005),
        ({"type": "image"}, {"media": ("a.png", b"\0" * (20 * 1024 * 1024 + 1))}, 40006),
    ],
)
def test_the_sandbox_refuses_uploads_as_dingtalk_does(
    services: Services, sandbox: Sandbox, fields: dict, files: dict, errcode: int
) -> None:
    token = services.client.token()
    answer = requests.post(
        f"{sandbox.url}/media/upload",
        params={"access_token": token},
        data=fields,
        files=files or None,
        timeout=30,
    ).json()
    assert answer["errcode"] == errcode, answer


def test_the_sandbox_refuses_a_message_whose_media_id_was_never_uploaded(
    services: Services, sandbox: Sandbox
) -> None:
    with pytest.raises(DeliveryError) as caught:
        services.client.send({"msgtype": "image", "image": {"media_id": "@lAnever"}}, userids=["manager4974"])
    assert caught.value.errcode == 40007
    file_id = services.client.media_id("file", "a.zip", b"PK\5\6" + b"\0" * 18)
    with pytest.raises(DeliveryError) as caught:  # a file's media_id is not an image's
        services.client.send({"msgtype": "image", "image": {"media_id": file_id}}, userids=["manager4974"])
    assert caught.value.errcode == 40007


def test_uploads_count_against_the_sandbox_quota(services: Services, sandbox: Sandbox) -> None:
    sandbox.set_options(monthly_quota=1)
    services.client.media_id("image", "a.png", b"\x89PNG first")
    with pytest.raises(DeliveryError) as caught:
        services.client.media_id("image", "b.png", b"\x89PNG second")
    assert caught.value.errcode == 90020


def test_pacing_counts_the_recipients_of_every_part(services: Services, sandbox: Sandbox) -> None:
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    opts = sandbox.options
    client = DingTalkClient(
        Credentials(opts.app_key, opts.app_secret, opts.agent_id), base_url=sandbox.url,
        pacing=Pacing(recipients_per_minute=2), sleep=sleep, monotonic=lambda: now[0], receipts="off",
    )  # fmt: skip
    prepared = prepare(services.config, services.sources, services.config.reports["md"], FIRE)
    with client:
        parts = build_parts(prepared.rendered.msg, prepared.rich, client.media_id)
        recipients = recipients_for(services.config, ["leads"])
        _, outcome = deliver_parts(client, parts, recipients)
    assert outcome.state == "sent" and len(parts) == 3
    assert sum(slept) >= 2 * 60 - 1, (
        "2 recipients x 3 messages at 2 recipients a minute: two waits of a minute"
    )


def test_the_media_cache_forgets_after_its_max_age(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = MediaCache(StateStore(store_url(tmp_path, None)))
    cache.put_media("app", "d" * 64, "@lA1")
    cache.put_media("app", "d" * 64, "@lA2")  # a second upload of the same content replaces the first
    assert cache.get_media("app", "d" * 64, timedelta(hours=24)) == "@lA2"
    assert cache.get_media("other-app", "d" * 64, timedelta(hours=24)) is None
    later = clock.now() + timedelta(hours=25)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert cache.get_media("app", "d" * 64, timedelta(hours=24)) is None


def test_the_media_cache_deletes_rows_older_than_it_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import select

    from dispatcher.store.schema import media_cache

    store = StateStore(store_url(tmp_path, None))
    cache = MediaCache(store, keep=timedelta(hours=24))
    cache.put_media("app", "a" * 64, "@lA1")
    cache.put_media("other-app", "b" * 64, "@lA2")
    later = clock.now() + timedelta(hours=25)
    monkeypatch.setattr(clock, "now", lambda: later)
    cache.put_media("app", "c" * 64, "@lA3")  # one row per fire time: the old ones go as new ones come
    with store.connect() as conn:
        rows = conn.execute(select(media_cache.c.app_key, media_cache.c.digest)).all()
    assert sorted(rows) == [("app", "c" * 64), ("other-app", "b" * 64)]


def test_dispatcher_send_counts_uploads_against_the_quota_and_the_forecast_counts_every_part(
    project: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dispatcher.cli.main import main
    from dispatcher.ops.quota import calls_per_run
    from dispatcher.store.apicalls import ApiCounter

    path = project / "reports.yaml"
    extra = (
        "    receipts: 'off'\n    chart: {x: region, y: [sales]}\n    attach: {format: xlsx, name: d.xlsx}\n"
    )
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    opts = sandbox.options
    env = {"TEST_DT_KEY": opts.app_key, "TEST_DT_SECRET": opts.app_secret,
           "TEST_DT_AGENT": str(opts.agent_id), "DINGTALK_API_BASE": sandbox.url}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["send", "daily", "-c", str(path), "--at", "2026-11-28T10:00+08:00"]) == 0
    assert "parts      markdown, image, file" in capsys.readouterr().out
    store = StateStore(f"sqlite:///{project / '.dispatcher' / 'state.db'}")
    try:
        used = ApiCounter(store, ZoneInfo("Asia/Shanghai"), 5000).used()
    finally:
        store.close()
    assert used == {"asyncsend_v2": 3, "media_upload": 2}
    config = load_config(path)
    assert calls_per_run(config, config.reports["daily"]) == 3 + 2, "three messages, two uploads"


def test_a_throttled_upload_is_retried_with_the_same_file_and_the_call_log_keeps_only_its_size(
    services: Services, sandbox: Sandbox
) -> None:
    sandbox.set_options(force_errcode={"media_upload": 90018}, force_errcode_times=1)
    media_id = services.client.media_id("image", "a.png", b"\x89PNG retried")
    calls = requests.get(
        f"{sandbox.url}/_sandbox/calls", params={"endpoint": "media_upload"}, timeout=10
    ).json()
    assert [c["errcode"] for c in calls] == [90018, 0]
    assert [c["body"] for c in calls] == [{"type": "image", "media": {"filename": "a.png", "bytes": 12}}] * 2
    assert media(sandbox, media_id).content == b"\x89PNG retried"


def test_a_part_refused_after_its_first_batch_is_retried_only_for_the_rest(
    services: Services, sandbox: Sandbox
) -> None:
    # two batches each: the message and the image go out, the file's second batch is refused once
    sandbox.set_options(force_errcode={"asyncsend_v2": 60011}, force_errcode_after=5, force_errcode_times=1)
    assert run(services, "wide") == "partial"
    [history] = services.ledger.history("wide")
    [refused] = history.batches["refused"]
    assert (refused["unit"], refused["errcode"], refused["recipients"]) == ("part:file", 60011, 50)

    assert retry(services, "wide") == "sent"
    files = [
        c
        for c in sandbox.calls("asyncsend_v2")
        if c["errcode"] == 0 and c["body"]["msg"]["msgtype"] == "file"
    ]
    assert Counter(u for c in files for u in c["body"]["userid_list"].split(",")) == Counter(USERS)
    inbox = Counter(m["msgtype"] for m in sandbox.messages())
    assert inbox == {"markdown": 150, "image": 150, "file": 150}


def test_a_media_id_dingtalk_no_longer_knows_is_uploaded_again_by_the_retry(
    services: Services, sandbox: Sandbox
) -> None:
    sandbox.set_options(force_errcode={"asyncsend_v2": 60011}, force_errcode_after=1, force_errcode_times=1)
    assert run(services, "txt") == "partial", "the text went out, the image did not"
    sandbox.set_options(force_errcode={})
    sandbox.reset()  # the sandbox forgets its uploads, as DingTalk forgets an expired media_id
    assert retry(services, "txt") == "partial", "the retry used the cached media_id"
    [history] = services.ledger.history("txt")
    [refused] = history.batches["refused"]
    assert (refused["unit"], refused["errcode"]) == ("part:image", 40007)
    assert sandbox.calls("media_upload") == []

    assert retry(services, "txt") == "sent"
    assert len(uploads(sandbox)) == 1, "the second retry uploaded the chart again"
    assert [m["msgtype"] for m in sent_msgs(sandbox)] == ["image"]
