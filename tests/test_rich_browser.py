"""The sandbox inbox in a real browser: headless Chromium (Debian's `chromium`, with `fonts-noto-cjk`, which
.ci/run installs) loads the page after a rich report went out and shows the OA card, its image and the
file link. Skips without Chromium, like the database tests, and fails instead under
DISPATCHER_REQUIRE_SERVICES=1."""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image

from dispatcher.cli.main import main
from dispatcher.sandbox import Sandbox, SandboxOptions
from tests.browser_kit import chromium
from tests.conftest import make_shop_db

CONFIG = """\
timezone: Asia/Shanghai
sources: {shop: "sqlite:///shop.db"}
dingtalk:
  app_key: ${DINGTALK_APP_KEY}
  app_secret: ${DINGTALK_APP_SECRET}
  agent_id: ${DINGTALK_AGENT_ID}
  receipts: "off"
recipients: {leads: {userids: [manager4974]}}
reports:
  card:
    title: 每日销售日报
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT SUM(amount) AS sales, COUNT(*) AS orders FROM orders WHERE day = :day"
    params: {day: "{{ yesterday }}"}
    to: [leads]
    msgtype: oa
    oa:
      head_color: "FFE53935"
      rich: {num: "{{ row.sales | integer }}", unit: 元}
      form: {订单数: "{{ row.orders | integer }}"}
      url: https://bi.example.com/sales
    chart:
      sql: "SELECT day, SUM(amount) AS sales FROM orders GROUP BY day ORDER BY day"
      x: day
      y: sales
      title: 销售趋势
    attach: {format: xlsx, name: "明细-{{ yesterday }}.xlsx", sql: "SELECT * FROM orders"}
"""


@pytest.fixture
def browser() -> str:
    return chromium()


def headless(browser: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run; --no-sandbox because CI runs as root, a private profile per call."""
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def delivered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    (tmp_path / "reports.yaml").write_text(CONFIG, encoding="utf-8")
    make_shop_db(tmp_path / "shop.db")
    with Sandbox(SandboxOptions()) as box:
        opts = box.options
        env = {"DINGTALK_API_BASE": box.url, "DINGTALK_APP_KEY": opts.app_key,
               "DINGTALK_APP_SECRET": opts.app_secret, "DINGTALK_AGENT_ID": str(opts.agent_id)}  # fmt: skip
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        args = ["send", "card", "-c", str(tmp_path / "reports.yaml"), "--at", "2026-11-28T10:00+08:00"]
        assert main(args) == 0
        yield box


def test_the_inbox_shows_the_oa_card_its_image_and_the_file_link_in_chromium(
    browser: str, delivered: Sandbox, tmp_path: Path
) -> None:
    url = f"{delivered.url}/?userid=manager4974"
    dom = headless(browser, "--dump-dom", f"--user-data-dir={tmp_path / 'profile-dom'}", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'class="oa-head oa-e53935"' in html and "每日销售日报" in html
    assert re.search(r'<div class="rich">2,100 元</div>', html)
    assert '<div class="oa-form">订单数<b>3</b></div>' in html
    [image_src] = re.findall(r'<img class="media" src="(/media/[^"]+)"', html)
    [file_href] = re.findall(r'<a class="file" href="(/media/[^"]+)" download="明细-2026-11-27.xlsx">', html)
    png = requests.get(delivered.url + image_src, timeout=10)
    assert png.headers["Content-Type"] == "image/png" and png.content.startswith(b"\x89PNG")
    xlsx = requests.get(delivered.url + file_href, timeout=10)
    assert xlsx.content.startswith(b"PK") and "attachment" in xlsx.headers["Content-Disposition"]

    shot = tmp_path / "inbox.png"
    taken = headless(browser, f"--screenshot={shot}", "--window-size=900,900",
                     f"--user-data-dir={tmp_path / 'profile-shot'}", url)  # fmt: skip
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.size == (900, 900)
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 100, "the page rendered (a chart, text, the card), not a blank"
