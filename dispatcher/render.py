"""A query result (pandas DataFrame) → one DingTalk work-notification `msg` within the size budget.

Render is deterministic: the same inputs give byte-identical output (a retry must not look like new
content), and the footer carries the run's fire time (two runs must never look identical, or
DingTalk silently drops the second one the same day)
[asynchronous-sending-of-enterprise-session-messages].
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SecurityError

from dispatcher.dingtalk.markdown import hard_breaks, to_plain
from dispatcher.dingtalk.message import (
    MAX_MSG_BYTES,
    action_card_msg,
    markdown_msg,
    msg_bytes,
    text_msg,
)
from dispatcher.errors import RenderError
from dispatcher.render_helpers import (
    KINDS,
    MISSING,
    TemplateSandbox,
    column_formatter,
    escape_frame,
    finalize,
    infer_kind,
    md,
    template_helpers,
)

MSGTYPES = ("markdown", "text", "action_card")


@dataclass(frozen=True)
class RenderOptions:
    title: str
    fire_time: datetime  # aware, already in the report's timezone
    footer_seconds: bool = False  # the schedule can fire more than once a minute
    period: str | None = None
    template: str | None = None  # author-written Jinja2 markdown: untrusted, runs sandboxed
    formats: Mapping[str, str] = field(default_factory=dict)  # column -> one of KINDS
    labels: Mapping[str, str] = field(default_factory=dict)  # column -> display label
    msgtype: str = "markdown"
    action_url: str | None = None
    action_title: str = "查看详情"
    max_msg_bytes: int = MAX_MSG_BYTES
    query_truncated: bool = False
    macros: Mapping[str, str] = field(default_factory=dict)
    currency_symbol: str = "¥"


@dataclass(frozen=True)
class Rendered:
    title: str
    markdown: str  # the body as sent (the content, for the text msgtype)
    msg: dict[str, Any]
    msg_bytes: int
    rows: int
    rows_shown: int
    truncated: bool


def render(df: pd.DataFrame, opts: RenderOptions) -> Rendered:
    """Render `df` as the message `opts` describes; RenderError when that is impossible."""
    page = _page(opts)
    fit = _render_template(df, opts, page) if opts.template is not None else _default(df, opts, page)
    msg = page.wrap(fit.text)
    return Rendered(
        title=_one_line(opts.title),
        markdown=fit.text,
        msg=msg,
        msg_bytes=msg_bytes(msg),
        rows=len(df),
        rows_shown=fit.shown,
        truncated=opts.query_truncated or fit.dropped > 0 or fit.lines_dropped > 0,
    )


# --- the page: flavour, wrapper, footer, budget ---------------------------------------------------


@dataclass(frozen=True)
class _Fit:
    text: str
    shown: int
    dropped: int = 0
    lines_dropped: int = 0


@dataclass(frozen=True)
class _Page:
    wrap: Callable[[str], dict[str, Any]]
    conv: Callable[[str], str]  # markdown line → line as sent (identity, or plain text)
    breaks: Callable[[str], str]  # the whole text → the phone's line breaks (markdown only)
    footer: str
    limit: int
    query_truncated: bool

    def block(self, lines: Iterable[str]) -> str:
        return "\n".join(self.conv(line) for line in lines)

    def text(self, blocks: list[str], note: str | None) -> str:
        # Breaks are made here, on the text that is measured, so they count in the byte budget.
        return self.breaks("\n\n".join([b for b in blocks if b] + ([note] if note else []) + [self.footer]))

    def size(self, text: str) -> int:
        return msg_bytes(self.wrap(text))

    def note(self, rows: int, unit: str, lines: int = 0) -> str | None:
        """The line saying what the reader does not see; counts only what render left out."""
        parts = [f"另有 {rows} {unit}未显示"] if rows else []
        parts += [f"省略 {lines} 行内容"] if lines else []
        text = "，".join(parts)
        if self.query_truncated:
            text += "（查询结果已截断）" if text else "查询结果已截断"
        return self.conv("…… " + text) if text else None


def _page(opts: RenderOptions) -> _Page:
    if opts.msgtype not in MSGTYPES:
        raise RenderError(f"unknown msgtype {opts.msgtype!r}; use one of {', '.join(MSGTYPES)}")
    if opts.fire_time.tzinfo is None or opts.fire_time.utcoffset() is None:
        raise RenderError("fire_time must be timezone-aware (the report's timezone)")
    if opts.max_msg_bytes <= 0:
        raise RenderError(f"max_msg_bytes must be positive, not {opts.max_msg_bytes}")
    title = _one_line(opts.title)
    wrap: Callable[[str], dict[str, Any]]
    if opts.msgtype == "text":
        wrap = text_msg
    elif opts.msgtype == "action_card":
        url = opts.action_url
        if not url:
            raise RenderError("msgtype action_card needs an action_url")
        wrap = lambda t: action_card_msg(title, t, opts.action_title, url)  # noqa: E731
    else:
        wrap = lambda t: markdown_msg(title, t)  # noqa: E731
    conv, breaks = (to_plain, _identity) if opts.msgtype == "text" else (_identity, hard_breaks)
    stamp = opts.fire_time.strftime("%Y-%m-%d %H:%M:%S" if opts.footer_seconds else "%Y-%m-%d %H:%M")
    footer = conv(f"数据截至 {stamp}")
    return _Page(wrap, conv, breaks, footer, opts.max_msg_bytes, opts.query_truncated)


def _identity(line: str) -> str:
    return line


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _json_size(text: str) -> int:
    """Bytes `text` adds inside a JSON string as sent (escapes included); sizes add up."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8")) - 2


def _fit_items(page: _Page, head: list[str], items: Iterator[str], n: int, unit: str) -> _Fit:
    """Head blocks, then as many of the `n` item lines as fit, then the note and the footer.

    Each item line is measured once and summed, so a 10,000-row result costs one pass over the
    rows that can possibly fit, plus a binary search of small whole-message measurements.
    """
    lines: list[str] = []
    prefix = [0]  # prefix[k]: bytes of the first k lines, each with its "\n"
    for line in items:
        lines.append(line)
        prefix.append(prefix[-1] + _json_size(line) + 2)
        if prefix[-1] > page.limit:
            break
    if len(lines) == n:
        text = page.text([*head, "\n".join(lines)], page.note(0, unit))
        if page.size(text) <= page.limit:
            return _Fit(text, n)

    def cost(k: int) -> int:
        # an item block adds "\n\n" before it and "\n" between lines: prefix[k] + 2 bytes
        return page.size(page.text(head, page.note(n - k, unit))) + (prefix[k] + 2 if k else 0)

    # Below n the note is always there and only shrinks as k grows, so cost rises with k.
    if cost(0) > page.limit:
        return _fit_lines(page, head, n, unit)
    lo, hi = 0, min(len(lines), n - 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= page.limit else (lo, mid - 1)
    text = page.text([*head, "\n".join(lines[:lo])], page.note(n - lo, unit))
    assert page.size(text) == cost(lo), "item sizes must add up to the message size"
    return _Fit(text, lo, n - lo)


def _fit_lines(page: _Page, blocks: list[str], rows_dropped: int, unit: str) -> _Fit:
    """Last resort when no data line fits: keep the longest run of whole leading body lines."""
    lines = "\n\n".join(b for b in blocks if b).split("\n")

    def attempt(keep: int) -> tuple[str, int]:
        omitted = sum(1 for line in lines[keep:] if line.strip())
        text = page.text(["\n".join(lines[:keep]).rstrip()], page.note(rows_dropped, unit, omitted))
        return text, omitted

    smallest, _ = attempt(0)
    if page.size(smallest) > page.limit:
        raise RenderError(
            f"the message is {page.size(smallest)} bytes with no data and no body lines;"
            f" the limit is {page.limit} bytes",
            hint="shorten the title or the template's fixed text, or raise dingtalk.max_msg_bytes",
        )
    lo, hi = 0, len(lines) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if page.size(attempt(mid)[0]) <= page.limit else (lo, mid - 1)
    text, omitted = attempt(lo)
    return _Fit(text, 0, rows_dropped, omitted)


# --- default rendering ---------------------------------------------------------------------------


def _default(df: pd.DataFrame, opts: RenderOptions, page: _Page) -> _Fit:
    head = [page.block([f"### {_one_line(opts.title)}"])]
    if opts.period:
        head.append(page.block([f"**统计周期** {_one_line(opts.period)}"]))
    n = len(df)
    if n == 0 or df.shape[1] == 0:
        return _fit_items(page, [*head, page.block(["暂无数据"])], iter(()), 0, "行")
    columns = _columns(df, opts)
    if n == 1:  # a KPI: one line per column
        kpis = (page.conv(f"- **{label}** {fmt(values[0])}") for label, fmt, values in columns)
        fit = _fit_items(page, head, kpis, len(columns), "项")
        return _Fit(fit.text, min(fit.shown, 1), fit.dropped, fit.lines_dropped)
    rows = (page.conv(_row_line(columns, i)) for i in range(len(columns[0][2])))
    return _fit_items(page, head, rows, n, "行")


_Column = tuple[str, Callable[[Any], str], list[Any]]


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
        label = md(opts.labels.get(name, name)) or MISSING
        columns.append((label, fmt, series.iloc[:shown].tolist()))
    return columns


def _row_line(columns: list[_Column], i: int) -> str:
    """`- **华东** · 销售额 ¥1,234,567 · 订单 3,210`: the first column names the row."""
    (_, first_fmt, first_values), rest = columns[0], columns[1:]
    parts = [f"- **{first_fmt(first_values[i])}**"]
    parts += [f"{label} {fmt(values[i])}" for label, fmt, values in rest]
    return " · ".join(parts)


# --- templates -----------------------------------------------------------------------------------


def _compile(source: str, currency_symbol: str) -> Template:
    env = TemplateSandbox(
        undefined=StrictUndefined,
        autoescape=False,  # markdown, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        finalize=finalize,
    )
    helpers = template_helpers(currency_symbol)
    env.filters.update(helpers)
    env.globals.update(helpers)
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise _template_error(exc) from None


def _template_error(exc: Exception) -> RenderError:
    line = getattr(exc, "lineno", None) or _template_line(exc)
    where = f" at line {line}" if line else ""
    if isinstance(exc, TemplateSyntaxError):
        return RenderError(f"template syntax error{where}: {exc.message}")
    if isinstance(exc, SecurityError):
        return RenderError(f"template not allowed{where}: {exc}")
    if isinstance(exc, UndefinedError):
        return RenderError(f"template error{where}: {exc.message}")
    return RenderError(f"template error{where}: {type(exc).__name__}: {exc}")


def _template_line(exc: BaseException) -> int | None:
    """The template line Jinja writes into the traceback of an error raised while rendering."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _render_template(df: pd.DataFrame, opts: RenderOptions, page: _Page) -> _Fit:
    """Render with the first k rows for the largest k whose message fits (galloping search)."""
    assert opts.template is not None
    template = _compile(opts.template, opts.currency_symbol)
    frame = escape_frame(df)
    records: list[dict[str, Any]] = frame.to_dict("records")  # type: ignore[assignment]
    n = len(records)
    base = {
        **opts.macros,
        "columns": [str(c) for c in df.columns],
        "n_rows": n,
        "title": opts.title,
        "period": opts.period,
        "fire_time": opts.fire_time,
        "row": records[0] if records else {},
    }
    bodies: dict[int, str] = {}

    def body(k: int) -> str:
        if k not in bodies:
            context = {**base, "df": frame.head(k), "rows": records[:k]}
            context["truncated"] = opts.query_truncated or k < n
            try:
                out = template.render(context)
            except Exception as exc:  # untrusted code: every failure is the author's to read
                raise _template_error(exc) from None
            bodies[k] = page.block(out.lstrip("\n").rstrip().split("\n"))
        return bodies[k]

    def attempt(k: int) -> str | None:
        text = page.text([body(k)], page.note(n - k, "行"))
        return text if page.size(text) <= page.limit else None

    full = attempt(n)
    if full is not None:
        return _Fit(full, n)
    best, best_text, failed = -1, "", n
    for k in _gallop(n):
        text = attempt(k)
        if text is None:
            failed = k
            break
        best, best_text = k, text
    if best < 0:
        independent = n > 0 and body(0) == body(n)  # the template does not list rows
        fit = _fit_lines(page, [body(0)], 0 if independent else n, "行")
        return _Fit(fit.text, n if independent else 0, fit.dropped, fit.lines_dropped)
    while failed - best > 1:
        mid = (best + failed) // 2
        text = attempt(mid)
        best, best_text, failed = (mid, text, failed) if text is not None else (best, best_text, mid)
    return _Fit(best_text, best, n - best)


def _gallop(n: int) -> Iterator[int]:
    """0, 1, 2, 4, 8, … below n: a fitting message holds few rows, so probe small frames first."""
    k = 0
    while k < n:
        yield k
        k = 1 if k == 0 else k * 2
