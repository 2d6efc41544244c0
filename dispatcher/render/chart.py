"""A chart as a 600×400 PNG (DingTalk's recommended 3:2 image), byte-identical for the same data.

Sized for the phone, which shows the image about DISPLAY_WIDTH (300) CSS px wide: the figure is laid
out at that size and drawn at SCALE (2) image pixels per CSS pixel, so a font size in points is its
size in CSS pixels on the phone (11 px tick labels, a 14 px title), whatever the image's pixel count.
The value axis carries the unit of the first y column's format (`¥` for currency, `%` for percent)
and counts large values in 万 and 亿, as Chinese readers do; the axis and the legend name the
columns by their labels.

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
    from collections.abc import Mapping

    import pandas as pd
    from matplotlib.figure import Figure

    from dispatcher.config.rich import ChartSpec

WIDTH, HEIGHT = 600, 400
DISPLAY_WIDTH = 300  # CSS px the phone shows the image at: 375 less the chat's margins and padding
SCALE = WIDTH // DISPLAY_WIDTH  # image px per CSS px
DPI = 72 * SCALE  # so that 1 pt (a font size, a line width) is 1 CSS px on the phone
TICK_PX, TITLE_PX, NOTE_PX, LINE_PX = 11, 14, 10, 2.0
MAX_X_TICKS, MAX_Y_TICKS = 6, 8  # category labels that stay apart at 11 px across 300, down 200 px
FONT_FILE = "fonts/NotoSansCJKsc-Regular.otf"
_LOCK = threading.Lock()  # matplotlib's font cache is shared; the daemon renders in threads
MAX_CATEGORIES = 30  # bars a 300 px wide chart can show apart
MAX_POINTS = 1000  # line points: more than the image has pixels across
MAX_LABEL = 10  # characters of a category label: ten 11 px characters are a third of the width
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


def render_chart(
    df: pd.DataFrame, spec: ChartSpec, title: str, formats: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None, symbol: str = "¥",
) -> bytes:  # fmt: skip
    """The PNG of `spec` over `df`; `formats` and `labels` are the report's (units and names)."""
    with _LOCK:
        fig = chart_figure(df, spec, title, formats, labels, symbol)
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
        return out.getvalue()


def chart_figure(
    df: pd.DataFrame, spec: ChartSpec, title: str, formats: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None, symbol: str = "¥",
) -> Figure:  # fmt: skip
    """The chart as a matplotlib Figure: checked, capped, drawn."""
    check_columns(df, spec)
    check_values(df, spec)
    shown, note = capped(df, spec)
    unit = value_unit(df, spec, formats or {}, symbol)
    return _draw(shown, spec, title, note, unit, labels or {})


def value_unit(df: pd.DataFrame, spec: ChartSpec, formats: Mapping[str, str], symbol: str) -> str:
    """The value axis's unit: `symbol` for currency, `%` for percent, "" otherwise or when the y
    columns disagree (one axis cannot carry two units)."""
    from dispatcher.render.format import infer_kind

    kinds = {formats.get(name) or infer_kind(numeric(df[name])) for name in spec.y}
    if kinds == {"currency"}:
        return symbol
    return "%" if kinds == {"percent"} else ""


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


def _draw(
    df: pd.DataFrame, spec: ChartSpec, title: str, note: str | None, unit: str, labels: Mapping[str, str]
) -> Figure:
    from matplotlib.figure import Figure  # no pyplot: no global figure registry, no GUI backend
    from matplotlib.font_manager import FontProperties

    from dispatcher.render.format import display_name

    font = FontProperties(fname=str(font_path()))
    fig = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    ax = fig.add_subplot()
    names = [display_name(column, labels) for column in spec.y]
    _plot(ax, spec, df, names)
    _axes(ax, spec, [_label(v) for v in df[spec.x]], font, unit)
    if len(spec.y) == 1:  # one series: the value axis names it; several: the legend does
        label = ax.set_xlabel if spec.kind == "barh" else ax.set_ylabel
        label(names[0], fontproperties=font, fontsize=TICK_PX, color="#646a73")
    ax.set_title(spec.title or title, fontproperties=font, fontsize=TITLE_PX, pad=16 if note else 6)
    if note:
        ax.text(0.5, 1.01, note, transform=ax.transAxes, ha="center", va="bottom", fontproperties=font,
                fontsize=NOTE_PX, color="#666666")  # fmt: skip
    if len(spec.y) > 1:
        legend_font = font.copy()
        legend_font.set_size(TICK_PX)
        ax.legend(prop=legend_font, frameon=False)
    fig.tight_layout(pad=0.4)
    return fig


def _plot(ax: Any, spec: ChartSpec, df: pd.DataFrame, names: list[str]) -> None:
    n = len(spec.y)
    width = 0.8 / n
    positions = list(range(len(df)))
    for i, (column, name) in enumerate(zip(spec.y, names, strict=True)):
        values = [float(v) for v in numeric(df[column]).astype(float).fillna(0.0)]
        shifted = [p + (i - (n - 1) / 2) * width for p in positions]
        if spec.kind == "line":
            ax.plot(positions, values, marker="o", markersize=LINE_PX * 2, linewidth=LINE_PX, label=name)
        elif spec.kind == "bar":
            ax.bar(shifted, values, width, label=name)
        else:
            ax.barh(shifted, values, width, label=name)


def _axes(ax: Any, spec: ChartSpec, labels: list[str], font: Any, unit: str) -> None:
    positions = list(range(len(labels)))
    most = MAX_Y_TICKS if spec.kind == "barh" else MAX_X_TICKS
    step = -(-len(labels) // most) or 1  # every step-th category: at most `most` labels
    ticks, shown = positions[::step], labels[::step]
    if spec.kind == "barh":
        ax.set_yticks(ticks, shown, fontproperties=font, fontsize=TICK_PX)
        ax.invert_yaxis()  # the first row at the top, as the query ordered it
    else:
        tilt = max((len(t) for t in shown), default=0) > 5  # MM-DD dates stay level
        ax.set_xticks(ticks, shown, fontproperties=font, fontsize=TICK_PX,
                      rotation=30 if tilt else 0, ha="right" if tilt else "center")  # fmt: skip
    _value_ticks(ax, spec.kind == "barh", font, unit)
    ax.tick_params(labelsize=TICK_PX, width=0.8, length=3, colors="#646a73")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, axis="x" if spec.kind == "barh" else "y", alpha=0.35, linewidth=0.8)


def _value_ticks(ax: Any, horizontal: bool, font: Any, unit: str) -> None:
    """Value-axis ticks labelled in the CJK font (万, 亿), set explicitly: a formatter's labels would
    be drawn in matplotlib's default font, which has no Chinese."""
    from matplotlib.ticker import MaxNLocator

    low, high = ax.get_xlim() if horizontal else ax.get_ylim()
    values = [v for v in MaxNLocator(nbins=4 if horizontal else 5).tick_values(low, high) if low <= v <= high]
    if horizontal:
        ax.set_xticks(values, [tick(v, unit) for v in values], fontproperties=font, fontsize=TICK_PX)
        ax.set_xlim(low, high)
    else:
        ax.set_yticks(values, [tick(v, unit) for v in values], fontproperties=font, fontsize=TICK_PX)
        ax.set_ylim(low, high)


def tick(value: float, unit: str = "") -> str:
    """A value-axis label the phone can read: `¥12万`, `1.5亿`, `12%`, `3,210`; `symbol` before the
    number, `%` after it; beyond 15 digits (float's precision) in scientific notation."""
    if unit == "%":
        return f"{value * 100:,.4g}%" if abs(value) < 1e13 else f"{value * 100:.3g}%"
    sign, magnitude = ("-" if value < 0 else ""), abs(value)
    if magnitude >= 1e15:
        number = f"{magnitude:.3g}"
    elif magnitude >= 1e8:
        number = f"{magnitude / 1e8:,.4g}亿"
    elif magnitude >= 1e4:
        number = f"{magnitude / 1e4:.4g}万"
    else:
        number = f"{magnitude:,.4g}"
    return f"{sign}{unit}{number}"


def _label(value: Any) -> str:
    """Dates print as MM-DD: a two-week axis has no room for the year."""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        return text[5:10]
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"
