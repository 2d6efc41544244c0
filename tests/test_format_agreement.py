"""Formatting agrees with itself: the default rendering and the `currency` helper show a value with
the same precision, and an xlsx attachment shows the report's labels, number formats and real dates
(rows read from a real SQLite file)."""

from __future__ import annotations

import io
import sqlite3
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pandas as pd
import pytest

from dispatcher.render import RenderOptions, render
from dispatcher.render.attach import build_attachment

SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRE = datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI)


def _kpi_value(value: object, template: str | None = None) -> str:
    opts = RenderOptions(title="t", fire_time=FIRE, formats={"v": "currency"}, template=template)
    first = render(pd.DataFrame({"v": [value]}), opts).markdown.split("\n\n")[1]
    return first.removeprefix("- **v** ")


@pytest.mark.parametrize(
    "value", [1234.5, 1234567.891, 12, 12.0, Decimal("99.99"), Decimal("100000.5"), -0.5, 0.004]
)
def test_default_rendering_and_currency_filter_show_the_same_precision(value):
    assert _kpi_value(value) == _kpi_value(value, template="### t\n\n- **v** {{ row.v | currency }}")


def test_currency_filter_keeps_an_explicit_precision():
    rendered = _kpi_value(1234.5, template="### t\n\n- **v** {{ row.v | currency(0) }}")
    assert rendered == "¥1,235"


def _rows(tmp_path: Path) -> pd.DataFrame:
    conn = sqlite3.connect(tmp_path / "shop.db")
    conn.executescript(
        """
        CREATE TABLE t (day TEXT, at TEXT, stamped TEXT, region TEXT, sales REAL, conv REAL, n INTEGER);
        INSERT INTO t VALUES
          ('2026-11-27', '2026-11-27 09:30:00', '2026-11-27T01:30:00Z', '=1+1', 1234.5, 0.1234, 3),
          ('2026-11-26', '2026-11-26 10:00', '2026-11-26T10:00:00.250+08:00', '华东', 2, 0.5, NULL);
        """
    )
    conn.commit()
    frame = pd.read_sql("SELECT * FROM t", conn)
    conn.close()
    return frame


def _sheet(frame: pd.DataFrame) -> list[list[openpyxl.cell.cell.Cell]]:
    labels = {"day": "日期", "sales": "销售额", "conv": "转化率", "n": "订单"}
    formats = {"sales": "currency", "conv": "percent"}
    att = build_attachment(frame, "xlsx", "r.xlsx", FIRE, labels=labels, formats=formats)
    ws = openpyxl.load_workbook(io.BytesIO(att.data)).active
    assert ws is not None
    return [list(row) for row in ws.iter_rows()]


def test_xlsx_headers_are_the_reports_labels(tmp_path):
    head = [c.value for c in _sheet(_rows(tmp_path))[0]]
    assert head == ["日期", "at", "stamped", "region", "销售额", "转化率", "订单"]


def test_xlsx_amounts_get_number_formats_and_text_stays_text(tmp_path):
    first = _sheet(_rows(tmp_path))[1]
    sales, conv, n, region = first[4], first[5], first[6], first[3]
    assert (sales.value, sales.data_type, sales.number_format) == (1234.5, "n", "#,##0.00")
    assert (conv.value, conv.data_type, conv.number_format) == (0.1234, "n", "0.00%")
    assert (n.value, n.number_format) == (3, "#,##0")
    assert (region.value, region.data_type) == ("=1+1", "s")


def test_xlsx_dates_stay_dates_in_the_reports_zone(tmp_path):
    rows = _sheet(_rows(tmp_path))
    day, at, stamped = rows[1][0], rows[1][1], rows[1][2]
    assert day.is_date and day.value.date() == date(2026, 11, 27) and day.number_format == "yyyy-mm-dd"
    assert at.is_date and at.value == datetime(2026, 11, 27, 9, 30)
    # 01:30 UTC is 09:30 in the report's zone (Asia/Shanghai), the time its readers live in
    assert stamped.is_date and stamped.value == datetime(2026, 11, 27, 9, 30)
    later = rows[2][2]
    assert later.is_date and later.value == datetime(2026, 11, 26, 10, 0, 0, 250000)


def test_csv_headers_are_the_reports_labels_too(tmp_path):
    import csv
    import zipfile

    att = build_attachment(
        _rows(tmp_path), "csv", "r.zip", FIRE, labels={"sales": "销售额", "region": "=区域"}
    )
    with zipfile.ZipFile(io.BytesIO(att.data)) as archive:
        text = archive.read("r.csv").decode("utf-8-sig")
    head = next(csv.reader(io.StringIO(text)))
    assert head == ["day", "at", "stamped", "'=区域", "销售额", "conv", "n"]  # a label is text, made inert
