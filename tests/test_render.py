"""Rendering a query result as a DingTalk message: layout, formatting, safety, footer, templates."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from dispatcher.errors import RenderError
from dispatcher.render import RenderOptions, render
from dispatcher.render.format import change, currency, md, number, percent, signed
from dispatcher.render.templates import top

SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRE = datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI)
LABELS = {
    "region": "区域",
    "sales": "销售额",
    "orders": "订单",
    "conv": "转化率",
    "price": "客单价",
}


def opts(**kw) -> RenderOptions:
    kw.setdefault("title", "今日销售")
    kw.setdefault("fire_time", FIRE)
    kw.setdefault("labels", LABELS)
    return RenderOptions(**kw)


def body_lines(markdown: str) -> list[str]:
    return markdown.split("\n")


# --- default layout -----------------------------------------------------------


def test_one_row_result_renders_as_kpi_lines_with_labels_and_full_msg():
    df = pd.DataFrame({"sales": [1234567.5], "orders": [3210], "conv": [0.1234], "price": [385.123]})
    r = render(df, opts(period="2026-11-27", formats={"sales": "currency", "conv": "percent"}))
    expected = (
        "### 今日销售\n\n"
        "**统计周期** 2026-11-27\n\n"
        "- **销售额** ¥1,234,568\n"
        "- **订单** 3,210\n"
        "- **转化率** 12.3%\n"
        "- **客单价** 385.12\n\n"
        "数据截至 2026-11-28 09:00"
    )
    assert r.markdown == expected
    assert r.msg == {"msgtype": "markdown", "markdown": {"title": "今日销售", "text": expected}}
    assert (r.title, r.rows, r.rows_shown, r.truncated) == ("今日销售", 1, 1, False)
    assert r.msg_bytes == len(
        '{"msgtype":"markdown","markdown":{"title":"今日销售","text":""}}'.encode()
    ) + len(expected.encode()) + expected.count("\n")  # each \n is two bytes once escaped


def test_multi_row_result_renders_one_line_per_row_led_by_the_first_column():
    df = pd.DataFrame(
        {
            "region": ["华东", "华北", "华南"],
            "sales": [1234567, 987654, 45678],
            "orders": [3210, 2100, 99],
        }
    )
    r = render(df, opts(formats={"sales": "currency"}))
    assert body_lines(r.markdown) == [
        "### 今日销售",
        "",
        "- 区域 **华东** · 销售额 ¥1,234,567 · 订单 3,210",
        "- 区域 **华北** · 销售额 ¥987,654 · 订单 2,100",
        "- 区域 **华南** · 销售额 ¥45,678 · 订单 99",
        "",
        "数据截至 2026-11-28 09:00",
    ]
    assert (r.rows, r.rows_shown, r.truncated) == (3, 3, False)


def test_empty_result_says_no_data_and_keeps_the_footer():
    r = render(pd.DataFrame({"region": [], "sales": []}), opts())
    assert r.markdown == "### 今日销售\n\n暂无数据\n\n数据截至 2026-11-28 09:00"
    assert (r.rows, r.rows_shown) == (0, 0)


def test_missing_values_show_as_dash_in_every_kind_of_column():
    df = pd.DataFrame(
        {
            "region": ["华东", None],
            "sales": [1.5, float("nan")],
            "orders": pd.array([1, None], dtype="Int64"),
            "day": [pd.Timestamp("2026-11-27"), pd.NaT],
            "conv": [0.5, None],
        }
    )
    r = render(df, opts(formats={"conv": "percent"}))
    assert "- 区域 **—** · 销售额 — · 订单 — · day — · 转化率 —" in body_lines(r.markdown)


def test_numbers_get_thousands_separators_and_column_wide_precision():
    df = pd.DataFrame(
        {
            "region": ["a", "b", "c"],
            "small": [1234.5, 2.0, 3.25],  # below 100,000: two decimals for the whole column
            "large": [1234567.891, 2.5, 3.0],  # reaches 100,000: no decimals; 2.5 rounds up
            "whole": [3210.0, None, 7.0],  # whole floats (ints with a NULL): no decimals
            "orders": [1234567, 0, -5],
        }
    )
    lines = body_lines(render(df, opts()).markdown)
    assert "- 区域 **a** · small 1,234.50 · large 1,234,568 · whole 3,210 · 订单 1,234,567" in lines
    assert "- 区域 **b** · small 2.00 · large 3 · whole — · 订单 0" in lines
    assert "- 区域 **c** · small 3.25 · large 3 · whole 7 · 订单 -5" in lines


def test_decimal_values_from_a_database_format_like_numbers():
    df = pd.DataFrame(
        {
            "region": ["华东", "华北"],
            "sales": [Decimal("1234567.89"), Decimal("12.50")],
            "price": [Decimal("12.345"), Decimal("-0.001")],
        }
    )
    lines = body_lines(render(df, opts(formats={"sales": "currency"})).markdown)
    assert "- 区域 **华东** · 销售额 ¥1,234,568 · 客单价 12.35" in lines  # half up: 四舍五入
    assert "- 区域 **华北** · 销售额 ¥13 · 客单价 0.00" in lines  # no "-0.00"


def test_dates_and_timestamps_render_iso_with_only_the_precision_the_column_needs():
    df = pd.DataFrame(
        {
            "region": ["a", "b"],
            "day": [date(2026, 11, 27), date(2026, 11, 28)],
            "midnight": pd.to_datetime(["2026-11-27", "2026-11-28"]),
            "at": pd.to_datetime(["2026-11-27 09:00", "2026-11-27 18:30"]),
            "tz": [datetime(2026, 11, 27, 9, 0, 5, tzinfo=SHANGHAI), None],
        }
    )
    lines = body_lines(render(df, opts()).markdown)
    a = "- 区域 **a** · day 2026-11-27 · midnight 2026-11-27 · at 2026-11-27 09:00"
    assert a + " · tz 2026-11-27 09:00:05" in lines
    assert "- 区域 **b** · day 2026-11-28 · midnight 2026-11-28 · at 2026-11-27 18:30 · tz —" in lines


def test_booleans_read_yes_or_no():
    df = pd.DataFrame({"region": ["a", "b"], "ok": [True, False]})
    assert "- 区域 **a** · ok 是" in render(df, opts()).markdown
    assert "- 区域 **b** · ok 否" in render(df, opts()).markdown


def test_unknown_format_is_a_render_error_naming_the_column():
    with pytest.raises(RenderError, match="'sales'.*'money'"):
        render(pd.DataFrame({"sales": [1, 2]}), opts(formats={"sales": "money"}))


# --- untrusted cell text ------------------------------------------------------

HOSTILE = [
    "a|b|c",
    "```\ncode\n```",
    "<b>bold</b><script>x</script>",
    "**star** _u_ `tick`",
    "[x](javascript:alert(1))",
    "line1\nline2\r\n# heading\n> quote\n- item",
    "![img](http://evil/x.png) ~~del~~ &lt;b&gt;",
]


def test_cell_text_cannot_inject_tables_code_html_links_or_lines():
    df = pd.DataFrame({"name": HOSTILE, "note": list(reversed(HOSTILE))})
    r = render(df, opts())
    lines = body_lines(r.markdown)
    assert len(lines) == 2 + len(HOSTILE) + 2  # heading, blank, one line per row, blank, footer
    for line in lines[2 : 2 + len(HOSTILE)]:
        assert re.fullmatch(r"- \*\*[^*]+\*\* · note [^*]+", line), line
    for bad in ("|", "`", "<", ">", "[", "]", "#", "~", "&", "\r"):
        assert bad not in r.markdown.replace("### 今日销售", "")


def test_md_neutralizes_line_start_markers_but_leaves_negative_numbers_alone():
    assert md("- item") == "－ item"
    assert md("1. first") == "1． first"
    assert md("---") == "－－－"
    assert md("-5") == "-5"
    assert md("a\n\tb") == "a b"
    assert md(None) == "—"


def test_long_cells_are_cut_at_64_characters_with_an_ellipsis():
    df = pd.DataFrame({"name": ["长" * 100, "short"], "v": [1, 2]})
    first = body_lines(render(df, opts()).markdown)[2]
    assert first == "- **" + "长" * 63 + "…** · v 1"


# --- footer -------------------------------------------------------------------


def test_same_inputs_render_byte_identical_messages_for_a_retry():
    df = pd.DataFrame({"region": ["华东", "华北"], "sales": [1.5, 2.5]})
    assert render(df, opts()) == render(df.copy(), opts())


def test_fire_times_a_minute_apart_render_different_content():
    df = pd.DataFrame({"region": ["华东"], "sales": [1]})
    a = render(df, opts()).markdown
    b = render(df, opts(fire_time=FIRE + timedelta(minutes=1))).markdown
    assert a != b
    assert b.endswith("数据截至 2026-11-28 09:01")


def test_footer_shows_seconds_for_schedules_faster_than_a_minute():
    df = pd.DataFrame({"region": ["华东"], "sales": [1]})
    r = render(df, opts(fire_time=FIRE + timedelta(seconds=5), footer_seconds=True))
    assert r.markdown.endswith("\n\n数据截至 2026-11-28 09:00:05")


def test_naive_fire_time_is_refused():
    with pytest.raises(RenderError, match="timezone-aware"):
        render(pd.DataFrame({"a": [1]}), opts(fire_time=datetime(2026, 11, 28, 9, 0)))


def test_query_truncation_is_reported_even_when_everything_fits():
    df = pd.DataFrame({"region": ["华东", "华北"], "sales": [1, 2]})
    r = render(df, opts(query_truncated=True))
    assert body_lines(r.markdown)[-3:] == ["", "…… 查询结果已截断", "", "数据截至 2026-11-28 09:00"][1:]
    assert r.truncated and r.rows_shown == 2


# --- msg types ----------------------------------------------------------------


def test_text_msgtype_sends_the_same_content_as_plain_lines():
    df = pd.DataFrame({"region": ["华东", "华北"], "sales": [1234567, 2], "orders": [3210, 1]})
    r = render(df, opts(msgtype="text", period="2026-11-27", formats={"sales": "currency"}))
    content = (
        "今日销售\n\n统计周期 2026-11-27\n\n"
        "• 区域 华东 · 销售额 ¥1,234,567 · 订单 3,210\n"
        "• 区域 华北 · 销售额 ¥2 · 订单 1\n\n"
        "数据截至 2026-11-28 09:00"
    )
    assert r.msg == {"msgtype": "text", "text": {"content": content}}
    assert r.markdown == content


def test_action_card_msgtype_carries_markdown_and_one_button():
    df = pd.DataFrame({"region": ["华东", "华北"], "sales": [1, 2]})
    r = render(df, opts(msgtype="action_card", action_url="https://bi.example.com/d/1"))
    assert r.msg == {
        "msgtype": "action_card",
        "action_card": {
            "title": "今日销售",
            "markdown": r.markdown,
            "single_title": "查看详情",
            "single_url": "https://bi.example.com/d/1",
        },
    }
    assert r.markdown.startswith("### 今日销售\n\n- 区域 **华东** · 销售额 1\n")


def test_action_card_without_url_is_a_render_error():
    with pytest.raises(RenderError, match="action_url"):
        render(pd.DataFrame({"a": [1]}), opts(msgtype="action_card"))


# --- template helpers ---------------------------------------------------------


def test_helpers_format_and_return_dash_for_missing():
    assert number(1234567.891, 2) == "1,234,567.89"
    assert number(Decimal("12345678901234567890")) == "12,345,678,901,234,567,890"
    assert percent(0.123) == "12.3%"
    assert currency(-1234.5, 1) == "-¥1,234.5"
    assert currency(1234, symbol="$") == "$1,234"
    assert signed(12) == "+12" and signed(-3) == "-3" and signed(0) == "0"
    assert change(112.3, 100) == "▲12.3%"
    assert change(96, 100) == "▼4.0%"
    assert change(100.01, 100) == "持平"
    assert change(5, 0) == change(5, None) == change(float("nan"), 1) == "—"
    assert change(-50, -100) == "▲50.0%"  # less negative is up
    for helper in (number, percent, currency, signed):
        assert helper(None) == helper(float("nan")) == "—"


def test_top_orders_rows_and_puts_missing_values_last():
    rows = [{"n": "a", "v": 1}, {"n": "b", "v": None}, {"n": "c", "v": 3}, {"n": "d", "v": 2}]
    assert [r["n"] for r in top(rows, 3, "v")] == ["c", "d", "a"]
    assert [r["n"] for r in top(rows, 4, "v", ascending=True)] == ["a", "d", "c", "b"]
    assert [r["n"] for r in top(pd.DataFrame(rows), 2, "v")] == ["c", "d"]


# --- templates ----------------------------------------------------------------

KPI_TEMPLATE = """\
### {{ title }}（{{ today }}）

- **销售额** {{ row.sales | currency }} （日环比 {{ change(row.sales, row.sales_prev_day) }}，\
周同比 {{ change(row.sales, row.sales_prev_week) }}）
- **转化率** {{ percent(row.conv) }}
{% if truncated %}
- 结果不完整
{% endif %}
"""


def test_kpi_template_renders_changes_percent_macros_and_gets_the_footer():
    df = pd.DataFrame(
        {
            "sales": [1123000],
            "sales_prev_day": [1000000],
            "sales_prev_week": [1170000],
            "conv": [0.0456],
        }
    )
    r = render(df, opts(template=KPI_TEMPLATE, macros={"today": "2026-11-27"}))
    assert r.markdown == (
        "### 今日销售（2026-11-27）\n\n"
        "- **销售额** ¥1,123,000 （日环比 ▲12.3%，周同比 ▼4.0%）\n"
        "- **转化率** 4.6%\n\n"
        "数据截至 2026-11-28 09:00"
    )
    assert r.msg["msgtype"] == "markdown" and (r.rows, r.rows_shown) == (1, 1)


def test_template_top_n_lists_the_largest_rows_with_escaped_names():
    df = pd.DataFrame({"name": ["张伟", "王*芳", "李娜", "<b>刘洋"], "sales": [10, 40, 30, 20]})
    template = (
        "{% for r in top(df, 3, 'sales') %}\n"
        "{{ loop.index }}. {{ r.name }} {{ r.sales | number }}\n"
        "{% endfor %}"
    )
    r = render(df, opts(template=template))
    assert r.markdown == "1. 王＊芳 40\n2. 李娜 30\n3. ＜b＞刘洋 20\n\n数据截至 2026-11-28 09:00"


def test_template_prints_missing_values_and_bools_readably():
    df = pd.DataFrame({"v": [None], "ok": [True], "at": [pd.Timestamp("2026-11-27 09:30")]})
    r = render(df, opts(template="{{ row.v }} {{ row.ok }} {{ row.at }} {{ fire_time }}"))
    assert r.markdown.startswith("— 是 2026-11-27 09:30 2026-11-28 09:00\n\n")


def test_template_syntax_error_names_the_line():
    with pytest.raises(RenderError, match="syntax error at line 3"):
        render(pd.DataFrame({"a": [1]}), opts(template="ok\nok\n{% for x in %}\n{% endfor %}"))


def test_template_undefined_variable_is_an_error_naming_it():
    with pytest.raises(RenderError, match=r"line 2: 'rwo' is undefined"):
        render(pd.DataFrame({"sales": [1]}), opts(template="x\n{{ rwo.sales }}"))
    with pytest.raises(RenderError, match="no attribute 'slaes'"):
        render(pd.DataFrame({"sales": [1]}), opts(template="{{ row.slaes }}"))


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ row.__class__ }}",
        "{{ df.to_csv('/tmp/render-escape.csv') }}",
        "{{ df['sales'].values.tofile('/tmp/render-escape.bin') }}",
        "{{ rows.append(1) }}",
        "{{ df.sort_values('sales', inplace=True) }}",
        "{{ 'x' * 10000000 }}",
        "{{ 10 ** 100000000 }}",
    ],
)
def test_sandbox_refuses_escapes_writes_and_mutation(template, tmp_path):
    df = pd.DataFrame({"sales": [3, 1, 2]})
    with pytest.raises(RenderError, match="not allowed"):
        render(df, opts(template=template))
    assert df["sales"].tolist() == [3, 1, 2]


def test_template_runtime_failure_is_a_render_error_with_the_line():
    with pytest.raises(RenderError, match="line 2: ZeroDivisionError"):
        render(pd.DataFrame({"a": [1]}), opts(template="a\n{{ 1 / 0 }}"))


def test_template_can_read_the_frame_with_pandas():
    df = pd.DataFrame({"region": ["a", "b", "c"], "sales": [1, 2, 3]})
    template = "共 {{ n_rows }} 区，合计 {{ df.sales.sum() | number }}，{{ columns | join('/') }}"
    r = render(df, opts(template=template))
    assert r.markdown.startswith("共 3 区，合计 6，region/sales\n\n")


def test_text_msgtype_strips_template_markdown():
    df = pd.DataFrame({"sales": [1234]})
    template = "### {{ title }}\n> **销售额** {{ row.sales | number }}\n[详情](https://x.example/d)"
    r = render(df, opts(template=template, msgtype="text"))
    content = "今日销售\n销售额 1,234\n详情 https://x.example/d\n\n数据截至 2026-11-28 09:00"
    assert r.msg == {"msgtype": "text", "text": {"content": content}}
