"""The size budget: the whole `msg` as sent fits max_msg_bytes, with the most whole rows."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from dispatcher.dingtalk.message import dumps, markdown_msg, msg_bytes
from dispatcher.errors import RenderError
from dispatcher.render import RenderOptions, render

FIRE = datetime(2026, 11, 28, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
FOOTER = "数据截至 2026-11-28 09:00"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = [
    "伟",
    "芳",
    "娜",
    "秀英",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
]
N = 5000


def people(n: int = N) -> pd.DataFrame:
    """Deterministic Chinese names (张伟, 王芳, …) with integer figures of varying width."""
    names = [SURNAMES[i % len(SURNAMES)] + GIVEN[(i // len(SURNAMES)) % len(GIVEN)] for i in range(n)]
    sales = [(i * 7919) % 10_000_000 for i in range(n)]
    orders = [(i * 131) % 50_000 for i in range(n)]
    return pd.DataFrame({"name": names, "sales": sales, "orders": orders})


def row_line(df: pd.DataFrame, i: int) -> str:
    name, sales, orders = df.iloc[i]
    return f"- **{name}** · 销售额 ¥{sales:,} · 订单 {orders:,}"


def opts(**kw) -> RenderOptions:
    kw.setdefault("title", "销售员日报")
    kw.setdefault("fire_time", FIRE)
    kw.setdefault("labels", {"sales": "销售额", "orders": "订单"})
    kw.setdefault("formats", {"sales": "currency"})
    return RenderOptions(**kw)


def assemble(df: pd.DataFrame, k: int, suffix: str = "") -> str:
    rows = "\n".join(row_line(df, i) for i in range(k))
    return f"### 销售员日报\n\n{rows}\n\n…… 另有 {len(df) - k} 行未显示{suffix}\n\n{FOOTER}"


@pytest.mark.parametrize("limit", [1000, 2048, 4096])
def test_five_thousand_rows_are_cut_to_the_most_whole_lines_that_fit(limit):
    df = people()
    r = render(df, opts(max_msg_bytes=limit))
    k = r.rows_shown
    assert 0 < k < N and r.truncated and r.rows == N
    assert r.msg_bytes == msg_bytes(r.msg) <= limit
    assert json.loads(dumps(r.msg)) == r.msg
    # every line is whole: the text is exactly the first k row lines, the note and the footer
    assert r.markdown == assemble(df, k)
    assert r.markdown.split("\n")[-3] == f"…… 另有 {N - k} 行未显示"
    # maximal: one more row (and a note one smaller) would not fit
    assert msg_bytes(markdown_msg("销售员日报", assemble(df, k + 1))) > limit


def test_default_limit_is_2048_bytes():
    r = render(people(), opts())
    assert 1900 < r.msg_bytes <= 2048


def test_cut_note_says_when_the_query_itself_was_truncated():
    df = people()
    r = render(df, opts(query_truncated=True))
    assert r.markdown == assemble(df, r.rows_shown, "（查询结果已截断）")
    big = assemble(df, r.rows_shown + 1, "（查询结果已截断）")
    assert msg_bytes(markdown_msg("销售员日报", big)) > 2048


def test_json_escapes_in_cells_are_counted_exactly():
    df = people(400)
    df["name"] = [f'"{n}"' if i % 3 else n for i, n in enumerate(df["name"])]  # each " costs 2 bytes
    r = render(df, opts())
    assert r.msg_bytes <= 2048
    assert msg_bytes(markdown_msg("销售员日报", assemble(df, r.rows_shown + 1))) > 2048


@pytest.mark.parametrize("msgtype", ["text", "action_card"])
def test_other_msgtypes_fit_the_same_budget(msgtype):
    r = render(people(), opts(msgtype=msgtype, action_url="https://bi.example.com/d/1"))
    assert r.msg_bytes == msg_bytes(r.msg) <= 2048
    body = r.msg["text"]["content"] if msgtype == "text" else r.msg["action_card"]["markdown"]
    assert body == r.markdown
    assert body.endswith(f"\n\n…… 另有 {N - r.rows_shown} 行未显示\n\n{FOOTER}")
    assert 20 < r.rows_shown < N


def test_kpi_with_too_many_columns_drops_trailing_fields_and_says_how_many():
    df = pd.DataFrame({f"指标{j:03d}": [j * 1000] for j in range(300)})
    r = render(df, opts(formats={}))
    lines = r.markdown.split("\n")
    shown = [line for line in lines if line.startswith("- **指标")]
    assert r.msg_bytes <= 2048 and r.truncated and r.rows_shown == 1
    assert shown[-1] == f"- **指标{len(shown) - 1:03d}** {(len(shown) - 1) * 1000:,}"
    assert lines[-3] == f"…… 另有 {300 - len(shown)} 项未显示"


def test_huge_title_that_cannot_fit_even_without_rows_is_a_render_error():
    with pytest.raises(RenderError, match=r"\d+ bytes .* limit is 2048 bytes"):
        render(people(10), opts(title="超长标题" * 300))


def test_oversized_period_line_is_dropped_whole_before_giving_up():
    r = render(people(10), opts(period="周" * 1000))
    assert r.markdown == f"### 销售员日报\n\n…… 另有 10 行未显示，省略 1 行内容\n\n{FOOTER}"
    assert r.rows_shown == 0 and r.truncated


LIST_TEMPLATE = """\
### {{ title }}
{% for r in rows %}
- {{ r.name }} {{ r.sales | currency }}
{% endfor %}
"""


def template_text(df: pd.DataFrame, k: int) -> str:
    lines = "\n".join(f"- {df['name'][i]} ¥{df['sales'][i]:,}" for i in range(k))
    return f"### 销售员日报\n{lines}\n\n…… 另有 {len(df) - k} 行未显示\n\n{FOOTER}"


def test_template_output_too_big_is_re_rendered_with_fewer_rows():
    df = people()
    r = render(df, opts(template=LIST_TEMPLATE))
    k = r.rows_shown
    assert 0 < k < N and r.truncated and r.msg_bytes <= 2048
    assert r.markdown == template_text(df, k)
    assert msg_bytes(markdown_msg("销售员日报", template_text(df, k + 1))) > 2048


def test_template_prose_too_big_loses_trailing_lines_not_the_footer():
    template = "### {{ title }}\n" + "".join(f"第{i}段说明文字，内容很长很长很长。\n" for i in range(200))
    r = render(people(1), opts(template=template))
    lines = r.markdown.split("\n")
    assert r.msg_bytes <= 2048 and r.truncated and r.rows_shown == 1
    kept = len(lines) - 5  # heading, kept prose, blank, note, blank, footer
    # each prose line but the last kept one ends in two spaces: the phone joins single newlines
    prose = [f"第{i}段说明文字，内容很长很长很长。" for i in range(kept)]
    assert lines[1 : 1 + kept] == [line + "  " for line in prose[:-1]] + prose[-1:]
    assert lines[-3:] == [f"…… 省略 {200 - kept} 行内容", "", FOOTER]


def test_ten_thousand_rows_fit_one_message_in_every_form():
    # How fast this goes is bench/rendertime.py's business (scenario 11), not a unit test's.
    df = people(10_000)
    for options in (opts(), opts(msgtype="text"), opts(template=LIST_TEMPLATE)):
        r = render(df, options)
        assert r.msg_bytes <= 2048 and r.rows_shown > 20
