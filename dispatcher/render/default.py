"""The default rendering, for reports without a template: a heading, then a KPI form or a row list.

One row becomes one `- **label** value` line per column; several rows become one line per row,
`- **华东** · 销售额 ¥1,234,567 · 订单 3,210` (`- 区域 **华东** · …` when the first column has a label).
DingTalk's phones show no tables, so none is made. A column without a label shows its name as words
(`open_tickets` → `open tickets`, `format.column_label`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from dispatcher.errors import RenderError
from dispatcher.render.fit import Fit, Page, fit_items
from dispatcher.render.format import KINDS, column_formatter, column_label, infer_kind, md, one_line

if TYPE_CHECKING:
    from dispatcher.render.options import RenderOptions

# (label, formatter, first values, whether the report set the label)
_Column = tuple[str, Callable[[Any], str], list[Any], bool]


def render_default(df: pd.DataFrame, opts: RenderOptions, page: Page) -> Fit:
    head = [page.block([f"### {one_line(opts.title)}"])]
    if opts.period:
        head.append(page.block([f"**统计周期** {md(opts.period)}"]))  # may carry data: split_value
    n = len(df)
    if n == 0 or df.shape[1] == 0:
        return fit_items(page, [*head, page.block(["暂无数据"])], iter(()), 0, "行")
    columns = _columns(df, opts)
    if n == 1:  # a KPI: one line per column
        kpis = (page.conv(f"- **{label}** {fmt(values[0])}") for label, fmt, values, _ in columns)
        fit = fit_items(page, head, kpis, len(columns), "项")
        return Fit(fit.text, min(fit.shown, 1), fit.dropped, fit.lines_dropped)
    rows = (page.conv(_row_line(columns, i)) for i in range(len(columns[0][2])))
    return fit_items(page, head, rows, n, "行")


def _columns(df: pd.DataFrame, opts: RenderOptions) -> list[_Column]:
    """Each column's label, formatter (decided from the whole column) and its first values.

    A line costs at least a byte, so no more than `max_msg_bytes` rows can ever be shown: only
    those become Python objects, however many rows the query returned.
    """
    shown = min(len(df), opts.max_msg_bytes)
    columns = []
    for j, name in enumerate(map(str, df.columns)):
        series = df.iloc[:, j]
        kind = opts.formats.get(name) or infer_kind(series)
        if kind not in KINDS:
            raise RenderError(f"column {name!r}: unknown format {kind!r}; use one of {', '.join(KINDS)}")
        fmt = column_formatter(series, kind, opts.currency_symbol)
        label = column_label(name, opts.labels)
        labelled = bool(str(opts.labels.get(name, "")).strip())
        columns.append((label, fmt, series.iloc[:shown].tolist(), labelled))
    return columns


def _row_line(columns: list[_Column], i: int) -> str:
    """`- **华东** · 销售额 ¥1,234,567 · 订单 3,210`: the first column names the row, after its label
    where the report sets one (`- 区域 **华东** · …`); a column name alone would be noise there."""
    (first_label, first_fmt, first_values, labelled), rest = columns[0], columns[1:]
    key = f"**{first_fmt(first_values[i])}**"
    parts = [f"- {first_label} {key}" if labelled else f"- {key}"]
    parts += [f"{label} {fmt(values[i])}" for label, fmt, values, _ in rest]
    return " · ".join(parts)
