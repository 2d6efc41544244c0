"""Render like a phone, show like a phone: DingTalk's line-break rule in the renderer and in the sandbox.

On the phone a single `\\n` inside a paragraph joins the two lines; two trailing spaces (or a blank
line) break; headings and list items start their own line [docs/dingtalk-api.md §5].
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import requests

from dispatcher.dingtalk.markdown import hard_breaks, to_html, to_plain
from dispatcher.dingtalk.message import markdown_msg, msg_bytes
from dispatcher.render import RenderOptions, render
from dispatcher.render.format import md
from dispatcher.sandbox import Sandbox, SandboxOptions

FIRE = datetime(2026, 11, 28, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
KPI_TEMPLATE = "### {{ title }}\n**合计** {{ n_rows }}\n**状态** 正常\n\n结语"


def opts(**kw: object) -> RenderOptions:
    kw.setdefault("title", "日报")
    kw.setdefault("fire_time", FIRE)
    return RenderOptions(**kw)  # type: ignore[arg-type]


def one_row() -> pd.DataFrame:
    return pd.DataFrame({"sales": [12]})


# -- the renderer makes the breaks the author wrote ------------------------------------------------


def test_a_single_newline_in_a_template_becomes_a_break_the_phone_shows() -> None:
    r = render(one_row(), opts(template=KPI_TEMPLATE))
    assert r.markdown.startswith("### 日报\n**合计** 1  \n**状态** 正常\n\n结语\n\n")
    assert r.msg["markdown"]["text"] == r.markdown


def test_action_cards_get_the_same_breaks() -> None:
    r = render(one_row(), opts(template=KPI_TEMPLATE, msgtype="action_card", action_url="https://x.cn/a"))
    assert "**合计** 1  \n**状态** 正常" in r.msg["action_card"]["markdown"]


def test_list_items_headings_and_paragraph_gaps_cost_no_extra_bytes() -> None:
    df = pd.DataFrame({"region": ["华东", "华南"], "sales": [1, 2]})
    r = render(df, opts(period="2026-11-27"))
    assert "  \n" not in r.markdown and "\n- **华南**" in r.markdown


def test_the_text_msgtype_keeps_its_plain_newlines() -> None:
    r = render(one_row(), opts(template=KPI_TEMPLATE, msgtype="text"))
    assert "合计 1\n状态 正常" in r.markdown and "  \n" not in r.markdown


def test_the_breaks_count_in_the_byte_budget() -> None:
    template = "".join(f"第{i}行说明\n" for i in range(40))
    unbroken = render(one_row(), opts(template=template)).markdown.replace("  \n", "\n")
    limit = msg_bytes(markdown_msg("日报", unbroken))  # fits only if the breaks were free
    r = render(one_row(), opts(template=template, max_msg_bytes=limit))
    assert r.msg_bytes == msg_bytes(r.msg) <= limit
    assert r.truncated and "省略" in r.markdown and "第0行说明  \n第1行说明" in r.markdown


def test_hard_breaks_is_idempotent_and_keeps_an_authors_own_breaks() -> None:
    text = "a  \nb\nc\n\n> q1\n> q2\n- i1\n  more\n- i2\n### h\nend"
    once = hard_breaks(text)
    assert once == "a  \nb  \nc\n\n> q1  \n> q2\n- i1  \n  more\n- i2\n### h\nend"
    assert hard_breaks(once) == once


# -- the sandbox shows what the phone shows --------------------------------------------------------


def test_to_html_joins_a_single_newline_and_breaks_on_two_spaces() -> None:
    assert to_html("第一行\n第二行") == "<p>第一行 第二行</p>"
    assert to_html("第一行  \n第二行") == "<p>第一行<br>\n第二行</p>"
    assert to_html("第一段\n\n第二段") == "<p>第一段</p>\n<p>第二段</p>"
    assert to_html("> a\n> b") == "<blockquote><p>a b</p></blockquote>"
    assert to_html("- a\n  b\n- c") == "<ul><li>a b</li><li>c</li></ul>"


def test_headings_and_list_items_start_their_own_line_without_a_blank_line() -> None:
    assert to_html("说明\n### 标题\n正文\n- 一\n1. 二") == (
        "<p>说明</p>\n<h3>标题</h3>\n<p>正文</p>\n<ul><li>一</li></ul>\n<ol><li>二</li></ol>"
    )


def test_the_inbox_over_http_shows_a_rendered_templates_lines_apart_and_a_bare_newline_joined() -> None:
    rendered = render(one_row(), opts(template=KPI_TEMPLATE))
    raw = markdown_msg("原样", "甲行\n乙行")
    with Sandbox(SandboxOptions()) as sandbox:
        http = requests.Session()
        token = http.get(
            f"{sandbox.url}/gettoken",
            params={"appkey": "dingsandboxkey", "appsecret": "sandbox-secret"},
            timeout=5,
        ).json()["access_token"]
        for i, msg in enumerate((rendered.msg, raw)):
            reply = http.post(
                f"{sandbox.url}/topapi/message/corpconversation/asyncsend_v2",
                params={"access_token": token},
                json={"agent_id": 100000001, "userid_list": f"user00{i + 1}", "msg": msg},
                timeout=5,
            ).json()
            assert reply["errcode"] == 0, reply
        page = http.get(f"{sandbox.url}/", timeout=5).text
    assert "<strong>合计</strong> 1<br>\n<strong>状态</strong> 正常" in page
    assert "<p>甲行 乙行</p>" in page


def test_one_parser_the_sandbox_shows_with_the_module_the_renderer_measures_with() -> None:
    import dispatcher.render.fit
    import dispatcher.sandbox.inbox

    assert dispatcher.sandbox.inbox.to_html is to_html
    assert dispatcher.render.fit.hard_breaks is hard_breaks and dispatcher.render.fit.to_plain is to_plain
    code = (
        "import sys, dispatcher.dingtalk.markdown, dispatcher.dingtalk.message;"
        "print(sorted(m for m in sys.modules if m.startswith(('dispatcher.sandbox', 'dispatcher.render'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- empty labels and values -----------------------------------------------------------------------


def test_an_empty_first_column_value_renders_as_a_dash_not_empty_bold() -> None:
    df = pd.DataFrame({"region": ["", "  ", "华南"], "sales": [1, 2, 3]})
    r = render(df, opts())
    assert "****" not in r.markdown
    assert "- **—** · sales 1\n- **—** · sales 2\n- **华南** · sales 3" in r.markdown


def test_an_empty_label_or_kpi_value_renders_as_a_dash() -> None:
    df = pd.DataFrame({"sales": [5], "note": [""]})
    r = render(df, opts(labels={"sales": ""}))
    assert "****" not in r.markdown
    assert "- **—** 5\n- **note** —" in r.markdown


def test_escaped_data_shows_as_plain_text_in_the_parser_that_shows_the_phone() -> None:
    hostile = "- **x**\n### [a](https://e.example) <b>1</b>"
    shown = to_html(md(hostile))
    assert shown.startswith("<p>") and shown.count("<p>") == 1
    assert not any(tag in shown for tag in ("<strong>", "<a ", "<h3>", "<li>", "<b>"))
