"""The sandbox inbox at a phone's width, in headless Chromium (issue 26, items 4-6): measured in the
browser, not read off the HTML.

The page is laid out 375 CSS px wide at a pixel ratio of 2 (tests/browser_kit.py). What is measured:
the width of each phone frame, the order of a conversation's messages, the app's name in the OA
card's head, the mentions as names, the height of a chart's tick labels as the phone draws them, and
the colour of an emoji (a colour glyph, not a tofu box). Set DISPATCHER_SCREENSHOT_DIR to keep the
screenshots for a look.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from dispatcher.config.rich import ChartSpec
from dispatcher.render.chart import WIDTH, chart_figure, render_chart
from dispatcher.sandbox import Sandbox, SandboxOptions
from tests.browser_kit import PHONE_SCALE, PHONE_WIDTH, Phone, chromium

SEND = "/topapi/message/corpconversation/asyncsend_v2"
RECOVERY = "✅ 退款率告警 已恢复（持续 5小时）"  # the README's recovery example
SPEC = ChartSpec(x="day", y=["sales"], kind="line", title="近14天销售额")
FORMATS, LABELS = {"sales": "currency"}, {"sales": "销售额"}


def trend() -> pd.DataFrame:
    start = date(2026, 11, 14)
    days = [(start + timedelta(days=i)).isoformat() for i in range(14)]
    return pd.DataFrame({"day": days, "sales": [80000 + (i * 7919) % 40000 for i in range(14)]})


class Api:
    def __init__(self, box: Sandbox) -> None:
        self.url, self.http = box.url, requests.Session()
        params = {"appkey": box.options.app_key, "appsecret": box.options.app_secret}
        self.token = self.http.get(f"{self.url}/gettoken", params=params, timeout=10).json()["access_token"]

    def send(self, msg: dict[str, Any], userids: str = "manager4974") -> None:
        body = {"agent_id": 100000001, "userid_list": userids, "msg": msg}
        answer = self.http.post(
            f"{self.url}{SEND}", params={"access_token": self.token}, json=body, timeout=10
        )
        assert answer.json()["errcode"] == 0, answer.text

    def upload(self, png: bytes) -> str:
        files = {"media": ("chart.png", png, "image/png")}
        params = {"access_token": self.token, "type": "image"}
        answer = self.http.post(f"{self.url}/media/upload", params=params, files=files, timeout=10).json()
        assert answer["errcode"] == 0, answer
        return str(answer["media_id"])


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[Phone]:
    browser = Phone(chromium(), tmp_path / "profile")
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def inbox() -> Iterator[Sandbox]:
    """Three work notifications to 王建国 (a markdown alert, an OA card with a chart, the recovery),
    one to 张伟, and a group robot's post mentioning 王建国 by mobile and by userid."""
    with Sandbox(SandboxOptions()) as box:
        api = Api(box)
        api.send(
            {
                "msgtype": "markdown",
                "markdown": {"title": "退款率告警", "text": "### 退款率告警\n- **退款率** 6.2%"},
            }
        )
        image = api.upload(render_chart(trend(), SPEC, "近14天销售额", FORMATS, LABELS))
        body = {"title": "每日销售日报", "rich": {"num": "2,100", "unit": "元"}, "image": image,
                "form": [{"key": "订单数", "value": "3"}], "content": "数据截至 11-28 09:00"}  # fmt: skip
        head = {"bgcolor": "FF1E88E5", "text": "不会显示"}
        oa = {"message_url": "https://bi.example.com/sales", "head": head, "body": body}
        api.send({"msgtype": "oa", "oa": oa})
        api.send({"msgtype": "markdown", "markdown": {"title": "退款率告警 已恢复", "text": RECOVERY}})
        api.send({"msgtype": "text", "text": {"content": "张伟的通知"}}, userids="user001")
        box.add_robot("sales-group", "group-token")
        text = "### 销售日报\n- **华东** 100\n\n@13800000000 @manager4974 请查看"
        at = {"atMobiles": ["13800000000"], "atUserIds": ["manager4974"]}
        post = {"msgtype": "markdown", "at": at, "markdown": {"title": "销售日报", "text": text}}
        answer = requests.post(
            f"{box.url}/robot/send", params={"access_token": "group-token"}, json=post, timeout=10
        )
        assert answer.json()["errcode"] == 0, answer.text
        yield box


def keep(shot: Path) -> None:
    """Copies a screenshot where DISPATCHER_SCREENSHOT_DIR says, to look at it after the run."""
    folder = os.environ.get("DISPATCHER_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)


def test_at_375px_each_person_has_one_conversation_oldest_first_under_the_apps_name(
    phone: Phone, inbox: Sandbox, tmp_path: Path
) -> None:
    phone.open(f"{inbox.url}/")
    keep(phone.screenshot(tmp_path / "inbox-375.png"))
    assert phone.evaluate("window.innerWidth") == PHONE_WIDTH
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE_WIDTH, "nothing runs off the side"
    frames = phone.evaluate(
        "[...document.querySelectorAll('article.phone:not(.group)')].map(p => ({who: p.dataset.userid,"
        " width: p.getBoundingClientRect().width,"
        " ids: [...p.querySelectorAll('.msg')].map(m => +m.dataset.id),"
        " tops: [...p.querySelectorAll('.msg')].map(m => m.getBoundingClientRect().top)}))"
    )
    assert [f["who"] for f in frames] == ["user001", "manager4974"], "one per person, latest chat first"
    assert all(f["width"] <= PHONE_WIDTH for f in frames)
    manager = frames[1]
    assert len(manager["ids"]) == 3 and manager["ids"] == sorted(manager["ids"]), "oldest message first"
    assert manager["tops"] == sorted(manager["tops"]), "and drawn from the top down in that order"
    texts = phone.evaluate(
        "[...document.querySelectorAll('article[data-userid=manager4974] .msg')].map(m => m.innerText)"
    )
    assert "退款率告警" in texts[0] and "每日销售日报" in texts[1] and "已恢复" in texts[2]
    assert phone.evaluate("document.querySelector('.oa-head').innerText") == "报表助手"
    apps = phone.evaluate("[...document.querySelectorAll('article[data-userid=manager4974] .app')].length")
    assert apps == 2, "the markdown messages show the app's name above their body; the OA card in its head"


def test_a_group_chat_shows_mentions_as_names_and_its_title_once(phone: Phone, inbox: Sandbox) -> None:
    phone.open(f"{inbox.url}/")
    chat = phone.evaluate(
        "(() => { const g = document.querySelector('article.phone.group');"
        " return {mentions: [...g.querySelectorAll('.mention')].map(m => m.innerText),"
        " bubble: g.querySelector('.bubble').innerText, preview: g.querySelector('.line').innerText,"
        " width: g.getBoundingClientRect().width}; })()"
    )
    assert chat["mentions"] == ["@王建国", "@王建国"]
    assert "13800000000" not in chat["bubble"] and "manager4974" not in chat["bubble"]
    assert chat["bubble"].count("销售日报") == 1 and chat["preview"] == "销售日报"
    assert chat["width"] <= PHONE_WIDTH


def ink_rows(image: Image.Image) -> list[int]:
    """Rows of `image` holding dark (text) pixels."""
    grey = image.convert("L")
    return [
        y for y in range(grey.height) if min(grey.crop((0, y, grey.width, y + 1)).get_flattened_data()) < 200
    ]


def test_a_charts_tick_labels_are_readable_where_the_phone_shows_the_image(
    phone: Phone, inbox: Sandbox, tmp_path: Path
) -> None:
    """The value axis's tick labels (`¥12万`), their ink measured in the screenshot of the chart as the
    inbox shows it at 375 px: at least 8 CSS px tall (about 10 at 11 px; the 8 pt labels of a chart
    laid out 600 px wide measured about 5)."""
    phone.open(f"{inbox.url}/?userid=manager4974")
    box = phone.evaluate(
        "(() => { const r = document.querySelector('img.media').getBoundingClientRect();"
        " return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; })()"
    )
    assert 250 <= box["width"] <= PHONE_WIDTH
    fig = chart_figure(trend(), SPEC, "近14天销售额", FORMATS, LABELS)
    renderer = FigureCanvasAgg(fig).get_renderer()
    css = box["width"] / WIDTH  # CSS px per image px
    heights = []
    for label in [t for t in fig.axes[0].get_yticklabels() if t.get_text()]:
        extent = label.get_window_extent(renderer)  # image px, from the bottom
        clip = {"x": box["x"] + extent.x0 * css, "y": box["y"] + (fig.bbox.height - extent.y1) * css,
                "width": extent.width * css, "height": extent.height * css}  # fmt: skip
        shot = phone.screenshot(tmp_path / "tick.png", full_page=False, clip=clip)
        rows = ink_rows(Image.open(io.BytesIO(shot.read_bytes())))
        heights.append((rows[-1] - rows[0] + 1) / PHONE_SCALE if rows else 0)
    keep(phone.screenshot(tmp_path / "chart-375.png", full_page=False, clip=box))
    assert len(heights) >= 3 and min(heights) >= 8, f"tick label ink heights in CSS px: {heights}"


def colourful(image: Image.Image) -> int:
    """Pixels whose channels differ by more than 80: colour, not black, white or grey."""
    return sum(1 for r, g, b in image.convert("RGB").get_flattened_data() if max(r, g, b) - min(r, g, b) > 80)


def test_an_emoji_renders_as_a_colour_glyph_not_a_box(phone: Phone, inbox: Sandbox, tmp_path: Path) -> None:
    phone.open(f"{inbox.url}/?userid=manager4974")
    rect = phone.evaluate(
        "(() => { const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);"
        " while (walk.nextNode()) { const n = walk.currentNode, i = n.data.indexOf('\u2705');"
        "  if (i >= 0) { const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + 1);"
        "   const b = r.getBoundingClientRect();"
        "   return {x: b.left + scrollX, y: b.top + scrollY, width: b.width, height: b.height}; } }"
        " return null; })()"
    )
    assert rect is not None and rect["width"] >= 10, rect
    glyph = Image.open(
        io.BytesIO(phone.screenshot(tmp_path / "emoji.png", full_page=False, clip=rect).read_bytes())
    )
    keep(tmp_path / "emoji.png")
    green = sum(1 for r, g, b in glyph.convert("RGB").get_flattened_data() if g > 120 and g - max(r, b) > 50)
    assert colourful(glyph) > glyph.width * glyph.height // 4, "a colour emoji fills its box"
    assert green > glyph.width * glyph.height // 5, "✅ is a green square with a white tick"
    text = phone.evaluate(
        "[...document.querySelectorAll('.bubble')].map(b => b.innerText).find(t => t.includes('已恢复'))"
    )
    assert RECOVERY in text
