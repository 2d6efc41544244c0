"""Rich reports' files: the chart PNG, the xlsx and the zipped csv, their determinism and their checks."""

from __future__ import annotations

import io
import warnings
import zipfile
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import openpyxl
import pandas as pd
import pytest
from PIL import Image

from dispatcher.cli.main import main
from dispatcher.config.rich import ChartSpec
from dispatcher.errors import RenderError
from dispatcher.render.attach import build_attachment
from dispatcher.render.chart import font_path, render_chart
from tests.conftest import write

FIRE = datetime(2026, 11, 28, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def trend(days: int = 14) -> pd.DataFrame:
    start = date(2026, 11, 14)
    return pd.DataFrame(
        {
            "day": [(start + timedelta(days=i)).isoformat() for i in range(days)],
            "sales": [Decimal(f"{80000 + (i * 7919) % 40000}.25") for i in range(days)],  # DECIMAL columns
            "订单数": [400 + (i * 37) % 90 for i in range(days)],
        }
    )


def chart(df: pd.DataFrame, **spec: object) -> tuple[bytes, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = render_chart(df, ChartSpec(**{"x": "day", "y": ["sales"], **spec}), "每日销售日报")  # type: ignore[arg-type]
    return png, [str(w.message) for w in caught]


@pytest.mark.parametrize("kind", ["line", "bar", "barh"])
def test_the_chart_is_a_600x400_png_with_chinese_labels_and_no_missing_glyph(kind: str) -> None:
    png, caught = chart(trend(), kind=kind, y=["sales", "订单数"], title="近14天销售额（元）")
    assert [m for m in caught if "missing" in m.lower() or "glyph" in m.lower()] == []
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (600, 400)
    assert image.mode in ("RGB", "RGBA")
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, "a blank or nearly blank image"
    assert b"Software" not in png and b"tIME" not in png, "no metadata that changes between runs"


def test_the_glyph_check_catches_a_font_without_chinese() -> None:
    """The assertion above can fail: DejaVu Sans, matplotlib's default, has no Chinese glyphs."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1))
    fig.add_subplot().set_title("近14天销售额", fontfamily="DejaVu Sans")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(io.BytesIO(), format="png")
    assert any("missing" in str(w.message).lower() for w in caught)


def test_the_font_comes_from_the_installed_package_not_the_system() -> None:
    path = font_path()
    assert path.is_file() and "mplfonts" in path.parts and path.suffix == ".otf"


def test_two_renders_of_the_same_data_are_byte_identical() -> None:
    assert chart(trend())[0] == chart(trend())[0]
    assert chart(trend())[0] != chart(trend(13))[0]


def test_a_chart_column_missing_from_the_result_names_the_columns_there_are() -> None:
    with pytest.raises(RenderError) as caught:
        chart(trend(), y=["revenue"])
    assert "'revenue'" in caught.value.message and "day, sales, 订单数" in caught.value.message


def test_a_non_numeric_y_column_is_refused() -> None:
    df = trend().assign(region="华东")
    with pytest.raises(RenderError, match="'region' is not numeric"):
        chart(df, y=["region"])


def orders() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": ["华东", "华东", "华北"],
            "order_id": [101, 102, 103],
            "created_at": ["2026-11-27 09:15:00", "2026-11-27 10:00:30", "2026-11-27 23:59:59"],
            "day": ["2026-11-27", "2026-11-27", None],
            "amount": [Decimal("1200.50"), Decimal("99.25"), None],
            "note": ["首单", None, '含逗号, 和 "引号"'],
        }
    )


def test_the_xlsx_reads_back_with_every_row_its_types_and_a_header() -> None:
    book = openpyxl.load_workbook(io.BytesIO(build_attachment(orders(), "xlsx", "x.xlsx", FIRE).data))
    sheet = book.active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("region", "order_id", "created_at", "day", "amount", "note")
    assert rows[1:] == [
        ("华东", 101, datetime(2026, 11, 27, 9, 15), datetime(2026, 11, 27), 1200.5, "首单"),
        ("华东", 102, datetime(2026, 11, 27, 10, 0, 30), datetime(2026, 11, 27), 99.25, None),
        ("华北", 103, datetime(2026, 11, 27, 23, 59, 59), None, None, '含逗号, 和 "引号"'),
    ]
    assert [c.data_type for c in sheet[2]] == ["s", "n", "d", "d", "n", "s"]
    assert sheet["B2"].is_date is False and sheet["C2"].is_date and sheet["D2"].is_date
    assert all(c.font.b for c in sheet[1]), "a bold header row"
    assert sheet.freeze_panes == "A2"
    assert sheet.column_dimensions["C"].width >= len("2026-11-27 09:15:00")
    assert book.properties.modified == datetime(2026, 11, 28, 1, 0), "the fire time, in UTC"


def test_the_xlsx_and_the_zipped_csv_are_byte_identical_for_the_same_rows_and_fire_time() -> None:
    for fmt, name in (("xlsx", "明细.xlsx"), ("csv", "明细.zip")):
        first = build_attachment(orders(), fmt, name, FIRE).data
        assert first == build_attachment(orders(), fmt, name, FIRE).data
        assert first != build_attachment(orders(), fmt, name, FIRE + timedelta(days=1)).data


def test_the_csv_travels_as_a_zip_holding_one_utf8_csv_with_a_bom_named_after_the_zip() -> None:
    attachment = build_attachment(orders(), "csv", "明细-2026-11-27.zip", FIRE)
    archive = zipfile.ZipFile(io.BytesIO(attachment.data))
    [info] = archive.infolist()
    assert info.filename == "明细-2026-11-27.csv"
    assert info.date_time == (2026, 11, 28, 9, 0, 0)
    data = archive.read(info)
    assert data.startswith(b"\xef\xbb\xbf")
    lines = data[3:].decode("utf-8").split("\r\n")
    assert lines[0] == "region,order_id,created_at,day,amount,note"
    assert lines[3] == '华北,103,2026-11-27 23:59:59,,,"含逗号, 和 ""引号"""'


RICH = """\
timezone: Asia/Shanghai
sources: {shop: "sqlite:///shop.db"}
recipients: {leads: {userids: [manager4974]}}
reports:
  daily:
    title: 每日销售
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT 1 AS n"
    to: [leads]
    msgtype: oa
    oa:
      head_colour: "FF1E88E5"
      form: {订单数: "{{ row.n }}"}
    chart: {x: day, y: sales, kind: pie}
    attach:
      format: csv
      name: "明细-{{ yesterday }}.csv"
"""


def test_validate_reports_every_rich_problem_with_file_and_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "reports.yaml", RICH)
    assert main(["validate", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    assert (
        "reports.yaml:13: reports.daily.oa.head_colour: unknown key 'head_colour'; did you mean 'head_color'?"
        in err
    )
    assert (
        "reports.yaml:15: reports.daily.chart.kind: kind should be one of 'line', 'bar' or 'barh', got 'pie'"
        in err
    )
    assert "reports.yaml:12: reports.daily.oa: msgtype oa needs oa.url" in err
    assert "reports.yaml:18: reports.daily.attach.name:" in err and "must end in .zip for format csv" in err
    assert "Traceback" not in err


def test_an_oa_block_needs_msgtype_oa_and_an_xlsx_name_must_end_in_xlsx(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    text = RICH.replace("    msgtype: oa\n", "").replace("head_colour", "head_color").replace("pie", "bar")
    text = text.replace("format: csv", "format: xlsx").replace(".csv", ".zip")
    text += '    action_url: "https://bi.example.com"\n'
    path = write(tmp_path / "reports.yaml", text)
    assert main(["validate", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    assert "reports.daily.oa: an oa: block needs msgtype: oa" in err
    assert "must end in .xlsx for format xlsx" in err


def test_a_chart_param_with_an_unknown_macro_and_a_missing_chart_query_file_are_config_errors(  # type: ignore[no-untyped-def]
    tmp_path, capsys
) -> None:
    text = RICH.replace("    chart: {x: day, y: sales, kind: pie}\n", "")
    text = text.replace("head_colour", "head_color").replace(".csv", ".zip")
    text = text.replace("    oa:\n", "    oa:\n      url: https://bi.example.com\n")
    text += "    chart: {x: day, y: sales, query: trend.sql, params: {start: '{{ yesterdy }}'}}\n"
    path = write(tmp_path / "reports.yaml", text)
    assert main(["validate", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    assert "reports.daily.chart.params.start:" in err and "yesterdy" in err
    assert "reports.daily.chart.query: query file queries/trend.sql does not exist" in err
    assert err.count("reports.daily") == 2, err
