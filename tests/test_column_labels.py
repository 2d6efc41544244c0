"""How columns are named on the phone (issue 26, item 7): a label where the report sets one, else
the column's name as words, never `open＿tickets`; and the first column's label is used too."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from dispatcher.dingtalk.markdown import to_html
from dispatcher.render import RenderOptions, render
from dispatcher.render.format import MISSING, column_label

FIRE = datetime(2026, 11, 28, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def opts(**kw: object) -> RenderOptions:
    kw.setdefault("title", "工单日报")
    kw.setdefault("fire_time", FIRE)
    return RenderOptions(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("open_tickets", "open tickets"),
        ("avg__reply_time_", "avg reply time"),
        ("sales", "sales"),
        ("销售_额", "销售 额"),
        ("___", "＿＿＿"),  # nothing but underscores: the name as it is, escaped
        ("", MISSING),
    ],
)
def test_a_column_without_a_label_shows_its_name_as_words(name: str, shown: str) -> None:
    assert column_label(name, {}) == shown


def test_a_label_wins_over_the_name_and_an_empty_label_shows_a_dash() -> None:
    assert column_label("open_tickets", {"open_tickets": "未结工单"}) == "未结工单"
    assert column_label("open_tickets", {"open_tickets": " "}) == MISSING


@pytest.mark.parametrize(
    "name",
    ["#_heading", "x_**bold**_y", "a_[link](https://e.example)", "_<b>tag</b>_", "- item_x", "1._first"],
)
def test_a_hostile_column_name_stays_inert_after_the_underscores_become_spaces(name: str) -> None:
    shown = to_html(column_label(name, {}))
    assert shown.startswith("<p>") and shown.count("<p>") == 1
    assert not any(tag in shown for tag in ("<strong>", "<a ", "<h", "<li>", "<b>", "<em>"))


def test_a_hostile_label_stays_inert() -> None:
    shown = to_html(column_label("n", {"n": "### [x](https://e.example) **y**"}))
    assert shown.startswith("<p>") and not any(t in shown for t in ("<strong>", "<a ", "<h3>"))


def test_kpi_lines_and_row_lines_show_names_as_words() -> None:
    kpi = render(pd.DataFrame({"open_tickets": [12]}), opts()).markdown
    assert "- **open tickets** 12" in kpi and "＿" not in kpi
    rows = pd.DataFrame({"team": ["a", "b"], "open_tickets": [1, 2]})
    assert "- **a** · open tickets 1" in render(rows, opts()).markdown


def test_the_first_columns_label_shows_before_each_rows_key() -> None:
    df = pd.DataFrame({"region": ["华东", "华北"], "sales": [1, 2]})
    labelled = render(df, opts(labels={"region": "区域", "sales": "销售额"})).markdown
    assert "- 区域 **华东** · 销售额 1\n- 区域 **华北** · 销售额 2" in labelled
    unlabelled = render(df, opts(labels={"sales": "销售额"})).markdown
    assert "- **华东** · 销售额 1\n- **华北** · 销售额 2" in unlabelled, "a bare column name adds nothing"


def test_the_first_columns_label_reads_in_the_text_msgtype_and_in_the_phone_parser() -> None:
    df = pd.DataFrame({"region": ["华东"], "sales": [1], "orders": [2]})
    text = render(pd.concat([df, df]), opts(msgtype="text", labels={"region": "区域"})).markdown
    assert "• 区域 华东 · sales 1 · orders 2" in text
    html = to_html(render(pd.concat([df, df]), opts(labels={"region": "区域"})).markdown)
    assert "<li>区域 <strong>华东</strong> · sales 1 · orders 2</li>" in html
