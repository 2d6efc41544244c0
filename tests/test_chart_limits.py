"""Charts over hostile data: too many categories are capped (what is drawn is counted, never timed),
and values a chart cannot draw (±1e308, infinities) end in a clear error naming report and column."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from dispatcher.cli.main import main
from dispatcher.config.rich import ChartSpec
from dispatcher.errors import RenderError
from dispatcher.render.chart import MAX_CATEGORIES, MAX_POINTS, chart_figure, render_chart

AT = "2026-11-28T10:00+08:00"
MANY = 100_000


def _many_categories(path: Path) -> pd.DataFrame:
    """100,000 distinct categories from a real SQLite file, values scrambled so the top ones are spread."""
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "SELECT 'c' || i AS cat, (i * 7919) % 100003 AS v, i AS w FROM n",
        (MANY,),
    ).fetchall()
    conn.close()
    return pd.DataFrame(rows, columns=["cat", "v", "w"])


@pytest.mark.parametrize("kind", ["bar", "barh"])
def test_a_bar_chart_over_100000_categories_draws_only_the_top_ones_and_says_how_many_are_left_out(
    tmp_path: Path, kind: str
) -> None:
    df = _many_categories(tmp_path / "many.db")
    fig = chart_figure(df, ChartSpec(x="cat", y=["v", "w"], kind=kind), "品类")
    [ax] = fig.axes
    bars = ax.patches
    assert len(bars) == 2 * MAX_CATEGORIES, "two series of the top categories"
    heights = sorted((b.get_width() if kind == "barh" else b.get_height()) for b in bars[:MAX_CATEGORIES])
    assert heights == sorted(df["v"].nlargest(MAX_CATEGORIES).tolist()), "the top ones by the first y"
    texts = [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))]
    left_out = f"{MANY - MAX_CATEGORIES:,}"
    assert any(f"另有 {left_out} 项未画出" in t for t in texts), texts


def test_a_line_over_100000_points_draws_at_most_max_points_the_latest(tmp_path: Path) -> None:
    df = _many_categories(tmp_path / "many.db")
    fig = chart_figure(df, ChartSpec(x="cat", y=["w"], kind="line"), "趋势")
    [line] = fig.axes[0].lines
    drawn = list(line.get_ydata())
    assert len(drawn) == MAX_POINTS
    assert drawn == df["w"].iloc[-MAX_POINTS:].astype(float).tolist(), "the latest points, in order"
    texts = [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))]
    assert any(f"前 {MANY - MAX_POINTS:,} 个点未画出" in t for t in texts), texts


def test_a_chart_within_the_caps_draws_everything_and_no_note() -> None:
    df = pd.DataFrame({"x": ["a", "b", "c"], "y": [3, 1, 2]})
    fig = chart_figure(df, ChartSpec(x="x", y=["y"], kind="bar"), "小")
    assert [b.get_height() for b in fig.axes[0].patches] == [3, 1, 2], "the query's order is kept"
    texts = [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))]
    assert not any("未画出" in t for t in texts)


def test_a_long_category_label_is_shortened() -> None:
    df = pd.DataFrame({"x": ["长" * 5000, "b"], "y": [1, 2]})
    fig = chart_figure(df, ChartSpec(x="x", y=["y"], kind="bar"), "t")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert max(len(t) for t in labels) <= 21 and labels[0].endswith("…")


@pytest.mark.parametrize(
    "values", [[1e308, -1e308], [1e308, 1e308], [float("inf"), 1.0], [1.0, float("-inf")]]
)
@pytest.mark.parametrize("kind", ["line", "bar", "barh"])
def test_values_a_chart_cannot_draw_are_a_render_error_naming_the_column(
    values: list[float], kind: str
) -> None:
    df = pd.DataFrame({"x": ["a", "b"], "sales": values})
    with pytest.raises(RenderError, match=r"chart.y column 'sales' holds .* at row [12]"):
        render_chart(df, ChartSpec(x="x", y=["sales"], kind=kind), "t")


@pytest.mark.parametrize(
    "values", [[1e20, -3e25, float("nan")], [1e300, -1e300, 0.0], [1e300, 1e300, 1e300], [5e-324, 0.0, 0.0]]
)
@pytest.mark.parametrize("kind", ["line", "bar", "barh"])
def test_large_but_drawable_values_and_missing_ones_draw(values: list[float], kind: str) -> None:
    df = pd.DataFrame({"x": ["a", "b", "c"], "sales": values})
    assert render_chart(df, ChartSpec(x="x", y=["sales"], kind=kind), "t").startswith(b"\x89PNG")


@pytest.mark.parametrize("sql", ["SELECT 'a' AS region, 1e308 AS sales UNION ALL SELECT 'b', -1e308",
                                 "SELECT 'a' AS region, 9e999 AS sales"])  # fmt: skip
def test_preview_of_a_chart_over_extreme_values_exits_1_naming_report_and_column(
    project: Path, capsys: pytest.CaptureFixture[str], sql: str
) -> None:
    path = project / "reports.yaml"
    extra = f"    chart: {{x: region, y: [sales], sql: {sql!r}}}\n"
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    assert main(["preview", "daily", "-c", str(path), "--at", AT]) == 1
    err = capsys.readouterr().err
    assert "report 'daily': chart: chart.y column 'sales' holds" in err
    assert "Traceback" not in err and "internal error" not in err
