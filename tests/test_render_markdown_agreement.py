"""The renderer and the sandbox read DingTalk markdown with one module, so they agree on data.

For each tricky database value, the message the renderer builds (markdown, text and template paths)
shows in the sandbox's inbox as the literal value: no heading, list, quote, link, image, emphasis or
HTML tag is made of it, and the reader sees the same characters (full-width look-alikes fold back
to the original under NFKC) [dingtalk-api.md §5].
"""

from __future__ import annotations

import html
import re
import unicodedata
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import requests

from dispatcher.dingtalk.client import Credentials, DingTalkClient
from dispatcher.dingtalk.markdown import escape
from dispatcher.render import Rendered, RenderOptions, render
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.sandbox.inbox import content

FIRE = datetime(2026, 11, 28, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
FOOTER = "数据截至 2026-11-28 09:00"
TRICKY = [
    "**粗体**",
    "*斜体*",
    "_下划线_",
    "# 标题",
    "###### 六级",
    "> 引用",
    "- 列表",
    "+ 加号",
    "* 星号",
    "1. 第一",
    "2) 第二",
    "3.",
    "---",
    "===",
    "[链接](http://evil.example/x)",
    "![图](https://evil.example/a.png)",
    "<b>粗</b>",
    "<script>alert(1)</script>",
    "&amp; &lt;b&gt;",
    "a | b | c",
    "`代码`",
    "```",
    "~~删除~~",
    "\\*反斜杠\\*",
    "a**b**c",
    "行一\n行二",
    "行一  \n# 行二",
    "两个空格结尾  ",
    "\t制表符\t",
    "  > 前导空格",
    "1.5 亿",
    "q\"uote's",
]
TEMPLATE = "{% for r in rows %}\n{{ r.name }} 值 {{ r.v }}\n{% endfor %}"


def opts(**kw: object) -> RenderOptions:
    kw.setdefault("title", "报表")
    kw.setdefault("fire_time", FIRE)
    return RenderOptions(**kw)  # type: ignore[arg-type]


def frame(value: str) -> pd.DataFrame:
    return pd.DataFrame({"name": [value, "参照"], "v": [1, 2]})


def shown(body: str) -> str:
    """What a reader sees of the inbox's HTML, with full-width look-alikes folded back."""
    return unicodedata.normalize("NFKC", html.unescape(re.sub(r"<[^>]*>", "", body)))


def one_line(value: str) -> str:
    return " ".join(value.split())


@pytest.mark.parametrize("value", TRICKY)
def test_a_value_in_a_markdown_row_shows_in_the_inbox_as_itself(value: str) -> None:
    rendered = render(frame(value), opts(labels={"v": value}))
    cell = html.escape(escape(value), quote=True)
    _, body = content(rendered.msg)
    assert body == (
        f"<h3>报表</h3>\n<ul><li><strong>{cell}</strong> · {cell} 1</li>"
        f"<li><strong>参照</strong> · {cell} 2</li></ul>\n<p>{FOOTER}</p>"
    )
    assert shown(body).split("\n")[1].startswith(f"{one_line(value)} · {one_line(value)} 1")


@pytest.mark.parametrize("value", TRICKY)
def test_a_value_in_a_text_message_shows_in_the_inbox_as_itself(value: str) -> None:
    rendered = render(frame(value), opts(msgtype="text", labels={"v": value}))
    cell = escape(value)
    assert rendered.markdown == f"报表\n\n• {cell} · {cell} 1\n• 参照 · {cell} 2\n\n{FOOTER}"
    _, body = content(rendered.msg)
    assert body == f"<pre>{html.escape(rendered.markdown, quote=True)}</pre>"
    assert f"• {one_line(value)} · {one_line(value)} 1\n" in shown(body)


@pytest.mark.parametrize("value", TRICKY)
def test_a_value_a_template_puts_at_the_start_of_a_line_shows_in_the_inbox_as_itself(value: str) -> None:
    rendered = render(frame(value), opts(template=TEMPLATE))
    cell = html.escape(escape(value), quote=True)
    _, body = content(rendered.msg)
    assert body == f"<p>{cell} 值 1<br>\n参照 值 2</p>\n<p>{FOOTER}</p>"
    assert shown(body).startswith(f"{one_line(value)} 值 1\n参照 值 2")


def test_the_inbox_over_http_shows_every_tricky_value_as_itself() -> None:
    """The same agreement through the running sandbox: the page a person opens."""
    df = pd.DataFrame({"name": TRICKY, "v": range(len(TRICKY))})
    rendered = render(df, opts())
    assert rendered.rows_shown == len(TRICKY)
    page = deliver_and_open(rendered)
    for i, value in enumerate(TRICKY):
        assert f"<li><strong>{html.escape(escape(value), quote=True)}</strong> · v {i}</li>" in page
    assert 'evil.example/a.png"' not in page and "<script>" not in page


def deliver_and_open(rendered: Rendered) -> str:
    """Send with the real client, as a run does, and open the inbox page as a person would."""
    creds = Credentials("dingsandboxkey", "sandbox-secret", 100000001)
    with Sandbox(SandboxOptions()) as sandbox, DingTalkClient(creds, base_url=sandbox.url) as client:
        client.send(rendered.msg, userids=["user001"], receipts=False)
        return requests.get(f"{sandbox.url}/", timeout=5).text
