"""A chart as a 600×400 PNG (DingTalk's recommended 3:2 image), byte-identical for the same data.

matplotlib runs headless (Agg). Chinese labels need a CJK font on machines without one: the Noto
Sans CJK SC font shipped by the `mplfonts` package is loaded by path, never looked up among the
system's fonts, so the image is the same on every machine. The PNG carries no software or time
metadata, so the same data gives the same bytes.

The rows are untrusted: a chart draws at most MAX_CATEGORIES bars (the top ones by the first y
column) or MAX_POINTS line points (the latest), and says in the image how many it left out, so its
time and memory are bounded whatever the query returns. Values no axis can span (infinities, or
beyond ±MAX_VALUE) are a RenderError naming the column and row.
"""

from __future__ import annotations

import importlib.util
import io
import threading
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatcher import DISTRIBUTION
from dispatcher.errors import RenderError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from dispatcher.config.rich import ChartSpec

WIDTH, HEIGHT, DPI = 600, 400, 100
FONT_FILE = "fonts/NotoSansCJKsc-Regular.otf"
_LOCK = threading.Lock()  # matplotlib's font cache is shared; the daemon renders in threads
MAX_CATEGORIES = 30  # bars a 600 px wide image can show apart
MAX_POINTS = 1000  # line points: more than the image has pixels across
MAX_LABEL = 20  # characters of a category label
# Far above any real figure, and far enough below float's 1.8e308 that the axis arithmetic
# (the span between extremes, margins, tick steps) cannot overflow.
MAX_VALUE = 1e300


@cache
def font_path() -> Path:
    """The CJK font file, found without importing mplfonts (whose import touches matplotlib's config)."""
    spec = importlib.util.find_spec("mplfonts")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = Path(root) / FONT_FILE
        if path.is_file():
            return path
    raise RenderError(
        "the CJK chart font is missing (package mplfonts)",
        hint=f"reinstall dispatcher, which installs it: pip install --force-reinstall {DISTRIBUTION} "
        "(in a checkout: pip install -e .)",
    )


def check_columns(df: pd.DataFrame, spec: ChartSpec) -> None:
    """RenderError naming the missing or non-numeric column, with the columns there are."""
    import pandas as pd

    have = [str(c) for c in df.columns]
    for name in [spec.x, *spec.y]:
        if name not in have:
            raise RenderError(
                f"chart column {name!r} is not in the result; its columns are: {', '.join(have)}",
                hint="fix chart.x / chart.y, or the chart's query",
            )
    for name in spec.y:
        if not pd.api.types.is_numeric_dtype(numeric(df[name])):
            raise RenderError(
                f"chart.y column {name!r} is not numeric (it holds {df[name].dtype})",
                hint="chart.y must name numeric columns; cast it in SQL if needed",
            )


def numeric(column: pd.Series) -> pd.Series:
    """DECIMAL columns arrive as objects holding Decimals: numbers all the same."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column):
        return column
    converted = pd.to_numeric(column, errors="coerce")
    return converted if converted.notna().sum() == column.notna().sum() else column


def render_chart(df: pd.DataFrame, spec: ChartSpec, title: str) -> bytes:
    """The PNG of `spec` over `df`."""
    with _LOCK:
        fig = chart_figure(df, spec, title)
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
        return out.getvalue()


def chart_figure(df: pd.DataFrame, spec: ChartSpec, title: str) -> Figure:
    """The chart as a matplotlib Figure: checked, capped, drawn."""
    check_columns(df, spec)
    check_values(df, spec)
    shown, note = capped(df, spec)
    return _draw(shown, spec, title, note)


def check_values(df: pd.DataFrame, spec: ChartSpec) -> None:
    """RenderError naming the first value of a y column that no axis can span. Missing values are fine."""
    import numpy as np

    for name in spec.y:
        values = numeric(df[name]).astype(float).to_numpy()
        bad = np.flatnonzero(~np.isnan(values) & ~(np.abs(values) <= MAX_VALUE))
        if bad.size:
            value, row = float(values[bad[0]]), int(bad[0]) + 1
            raise RenderError(
                f"chart.y column {name!r} holds {value!r} at row {row}, which a chart cannot draw",
                hint=f"values must be finite and within ±{MAX_VALUE:g}; filter or cap them in the query",
            )


def capped(df: pd.DataFrame, spec: ChartSpec) -> tuple[pd.DataFrame, str | None]:
    """The rows the chart draws, and what it says about those it leaves out (None: it draws all)."""
    import numpy as np

    if spec.kind == "line":
        if len(df) <= MAX_POINTS:
            return df, None
        return df.iloc[-MAX_POINTS:], f"前 {len(df) - MAX_POINTS:,} 个点未画出，只画出最近 {MAX_POINTS:,} 个"
    if len(df) <= MAX_CATEGORIES:
        return df, None
    by = numeric(df[spec.y[0]]).astype(float).fillna(-np.inf).to_numpy()
    top = np.sort(np.argsort(-by, kind="stable")[:MAX_CATEGORIES])  # the top ones, in the query's order
    left = len(df) - MAX_CATEGORIES
    return df.iloc[top], f"另有 {left:,} 项未画出（按 {spec.y[0]} 只画出前 {MAX_CATEGORIES} 项）"


def _draw(df: pd.DataFrame, spec: ChartSpec, title: str, note: str | None) -> Figure:
    from matplotlib.figure import Figure  # no pyplot: no global figure registry, no GUI backend
    from matplotlib.font_manager import FontProperties

    font = FontProperties(fname=str(font_path()))
    fig = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    ax = fig.add_subplot()
    labels = [_label(v) for v in df[spec.x]]
    positions = list(range(len(labels)))
    _plot(ax, spec, df, positions)
    _axes(ax, spec, labels, positions, font)
    ax.set_title(spec.title or title, fontproperties=font, fontsize=13, pad=18 if note else 6)
    if note:
        ax.text(0.5, 1.01, note, transform=ax.transAxes, ha="center", va="bottom", fontproperties=font,
                fontsize=8, color="#666666")  # fmt: skip
    if len(spec.y) > 1:
        ax.legend(prop=font, fontsize=9)
    fig.tight_layout()
    return fig


def _plot(ax: Any, spec: ChartSpec, df: pd.DataFrame, positions: list[int]) -> None:
    n = len(spec.y)
    width = 0.8 / n
    for i, column in enumerate(spec.y):
        values = [float(v) for v in numeric(df[column]).astype(float).fillna(0.0)]
        if spec.kind == "line":
            ax.plot(positions, values, marker="o", markersize=3, label=column)
        elif spec.kind == "bar":
            ax.bar([p + (i - (n - 1) / 2) * width for p in positions], values, width, label=column)
        else:
            ax.barh([p + (i - (n - 1) / 2) * width for p in positions], values, width, label=column)


def _axes(ax: Any, spec: ChartSpec, labels: list[str], positions: list[int], font: Any) -> None:
    step = max(1, len(labels) // 8)  # at most ~8 tick labels stay readable 600 px wide
    ticks, shown = positions[::step], labels[::step]
    if spec.kind == "barh":
        ax.set_yticks(ticks, shown, fontproperties=font, fontsize=8)
    else:
        ax.set_xticks(ticks, shown, fontproperties=font, fontsize=8, rotation=30, ha="right")
    from matplotlib.ticker import FuncFormatter

    values = ax.xaxis if spec.kind == "barh" else ax.yaxis
    values.set_major_formatter(FuncFormatter(_tick))
    ax.tick_params(labelsize=8)
    ax.grid(True, alpha=0.3)


def _tick(value: float, _: Any) -> str:
    """Whole numbers with separators; beyond 15 digits (float's precision) in scientific notation."""
    return f"{value:,.0f}" if abs(value) < 1e15 else f"{value:.3g}"


def _label(value: Any) -> str:
    """Dates print as MM-DD: a two-week axis has no room for the year."""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        return text[5:10]
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"
