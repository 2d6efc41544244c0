"""`preview` of rich reports: every part with its size, `--out DIR`, and the shipped daily-sales card."""

from __future__ import annotations

import io
import json
import shutil
from datetime import datetime
from pathlib import Path

import openpyxl
import sqlalchemy as sa
from PIL import Image

from dispatcher.cli.main import main
from tests.conftest import REPO

AT = "2026-11-28T10:00+08:00"
RICH = """\
    chart: {x: region, y: [sales, orders], kind: bar, title: 区域销售}
    attach: {format: csv, name: "明细-{{ yesterday }}.zip"}
"""


def rich_project(project: Path, extra: str = RICH) -> Path:
    path = project / "reports.yaml"
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


def test_preview_json_lists_every_part_with_its_size_and_files(project, capsys) -> None:  # type: ignore[no-untyped-def]
    path = rich_project(project)
    assert main(["preview", "daily", "-c", str(path), "--at", AT, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    main_part, image, file = out["parts"]
    assert (main_part["unit"], main_part["msgtype"], main_part["files"]) == ("", "markdown", [])
    assert main_part["msg_bytes"] == out["msg_bytes"]
    assert (image["unit"], image["msgtype"], [f["name"] for f in image["files"]]) == (
        "part:image", "image", ["chart.png"],
    )  # fmt: skip
    assert (file["unit"], file["msgtype"], [f["name"] for f in file["files"]]) == (
        "part:file", "file", ["明细-2026-11-27.zip"],
    )  # fmt: skip
    assert image["files"][0]["bytes"] > 5000 and file["files"][0]["bytes"] > 100
    assert out["warnings"] == []


def test_preview_out_writes_each_message_the_png_and_the_attachment(project, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = rich_project(project)
    out = tmp_path / "look"
    assert main(["preview", "daily", "-c", str(path), "--at", AT, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "part       image" in printed and "明细-2026-11-27.zip" in printed
    names = sorted(p.name for p in out.iterdir())
    assert names == ["01-markdown.json", "02-image.json", "03-file.json", "chart.png", "明细-2026-11-27.zip"]
    assert json.loads((out / "02-image.json").read_text(encoding="utf-8")) == {
        "msgtype": "image",
        "image": {"media_id": "<media_id of chart.png>"},
    }
    assert json.loads((out / "01-markdown.json").read_text(encoding="utf-8"))["msgtype"] == "markdown"
    assert Image.open(out / "chart.png").size == (600, 400)
    first = (out / "chart.png").read_bytes(), (out / "明细-2026-11-27.zip").read_bytes()
    assert main(["preview", "daily", "-c", str(path), "--at", AT, "--out", str(out)]) == 0
    assert ((out / "chart.png").read_bytes(), (out / "明细-2026-11-27.zip").read_bytes()) == first


def test_preview_of_a_chart_column_that_is_not_there_exits_1_naming_the_columns(project, capsys) -> None:  # type: ignore[no-untyped-def]
    path = rich_project(project, "    chart: {x: day, y: [sales]}\n")
    assert main(["preview", "daily", "-c", str(path), "--at", AT]) == 1
    err = capsys.readouterr().err
    assert "chart: chart column 'day' is not in the result; its columns are: region, sales, orders" in err
    assert "Traceback" not in err


def test_the_shipped_daily_sales_is_an_oa_card_with_a_trend_chart_and_an_xlsx(
    tmp_path: Path, demo_sqlite: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    shutil.copy(REPO / "reports.yaml", tmp_path / "reports.yaml")
    shutil.copytree(REPO / "queries", tmp_path / "queries")
    shutil.copy(demo_sqlite, tmp_path / "demo.db")
    out = tmp_path / "out"
    args = ["preview", "daily-sales", "-c", str(tmp_path / "reports.yaml"), "--at", AT, "--json"]
    assert main([*args, "--out", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [p["msgtype"] for p in shown["parts"]] == ["oa", "file"]
    card = shown["msg"]["oa"]
    assert card["message_url"] == "https://bi.example.com/sales"
    assert card["body"]["rich"]["unit"] == "元" and len(card["body"]["form"]) == 5
    assert "数据截至 2026-11-28 09:00" in card["body"]["content"]
    image = Image.open(out / "chart.png")
    assert image.size == (600, 400)

    book = openpyxl.load_workbook(io.BytesIO((out / "销售明细-2026-11-27.xlsx").read_bytes()))
    rows = list(book.active.iter_rows(values_only=True))
    assert rows[0] == ("region", "order_id", "created_at", "status", "amount")
    engine = sa.create_engine(f"sqlite:///{demo_sqlite}")
    with engine.connect() as conn:
        expected = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM orders WHERE order_date = '2026-11-27' AND status <> 'cancelled'"
        ).scalar()
    engine.dispose()
    assert len(rows) - 1 == expected > 100
    # typed cells: ids and amounts are numbers, the creation time a date (SQLite keeps it as text)
    assert all(isinstance(r[1], int) and isinstance(r[4], int | float) for r in rows[1:])
    assert all(isinstance(r[2], datetime) for r in rows[1:])


def test_a_dry_run_lists_the_image_and_the_file_it_would_send(project, capsys) -> None:  # type: ignore[no-untyped-def]
    path = rich_project(project)
    assert main(["send", "daily", "-c", str(path), "--at", AT, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "part       image: chart.png (" in out
    assert "part       file: 明细-2026-11-27.zip (" in out
    assert "dry run    nothing was sent" in out
