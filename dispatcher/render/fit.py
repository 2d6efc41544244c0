"""The byte-budget fitter: as many rows, then lines, as fit DingTalk's 2048-byte `msg`.

A page is the message around a body: its msgtype wrapper, the footer with the run's fire time and
the note saying what the reader does not see. Fitting measures the whole `msg` as sent
(`dispatcher.dingtalk.message`), after the phone's line breaks are made (`dispatcher.dingtalk.markdown`),
so what is measured is exactly what is sent. A line is never cut in the middle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dispatcher.dingtalk.markdown import hard_breaks, to_plain
from dispatcher.dingtalk.message import action_card_msg, dumps, markdown_msg, msg_bytes, text_msg
from dispatcher.errors import RenderError
from dispatcher.render.format import fire_stamp, one_line

if TYPE_CHECKING:
    from dispatcher.render.options import RenderOptions


@dataclass(frozen=True)
class Fit:
    text: str
    shown: int
    dropped: int = 0
    lines_dropped: int = 0


@dataclass(frozen=True)
class Page:
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


def page_for(opts: RenderOptions) -> Page:
    """The page `opts` asks for; RenderError when the options cannot make a message."""
    _check(opts)
    conv, breaks = (to_plain, _identity) if opts.msgtype == "text" else (_identity, hard_breaks)
    footer = conv(f"数据截至 {fire_stamp(opts.fire_time, opts.footer_seconds)}")
    return Page(_wrapper(opts), conv, breaks, footer, opts.max_msg_bytes, opts.query_truncated)


def _check(opts: RenderOptions) -> None:
    from dispatcher.render.options import MSGTYPES

    if opts.msgtype not in MSGTYPES:
        raise RenderError(f"unknown msgtype {opts.msgtype!r}; use one of {', '.join(MSGTYPES)}")
    if opts.fire_time.tzinfo is None or opts.fire_time.utcoffset() is None:
        raise RenderError("fire_time must be timezone-aware (the report's timezone)")
    if opts.max_msg_bytes <= 0:
        raise RenderError(f"max_msg_bytes must be positive, not {opts.max_msg_bytes}")


def _wrapper(opts: RenderOptions) -> Callable[[str], dict[str, Any]]:
    title = one_line(opts.title)
    if opts.msgtype == "text":
        return text_msg
    if opts.msgtype == "action_card":
        url = opts.action_url
        if not url:
            raise RenderError("msgtype action_card needs an action_url")
        return lambda t: action_card_msg(title, t, opts.action_title, url)
    return lambda t: markdown_msg(title, t)


def _identity(line: str) -> str:
    return line


def _json_size(text: str) -> int:
    """Bytes `text` adds inside a JSON string as sent (escapes included); sizes add up."""
    return len(dumps(text).encode("utf-8")) - 2


def fit_items(page: Page, head: list[str], items: Iterator[str], n: int, unit: str) -> Fit:
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
            return Fit(text, n)

    def cost(k: int) -> int:
        # an item block adds "\n\n" before it and "\n" between lines: prefix[k] + 2 bytes
        return page.size(page.text(head, page.note(n - k, unit))) + (prefix[k] + 2 if k else 0)

    # Below n the note is always there and only shrinks as k grows, so cost rises with k.
    if cost(0) > page.limit:
        return fit_lines(page, head, n, unit)
    lo, hi = 0, min(len(lines), n - 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= page.limit else (lo, mid - 1)
    text = page.text([*head, "\n".join(lines[:lo])], page.note(n - lo, unit))
    assert page.size(text) == cost(lo), "item sizes must add up to the message size"
    return Fit(text, lo, n - lo)


def fit_lines(page: Page, blocks: list[str], rows_dropped: int, unit: str) -> Fit:
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
    return Fit(text, 0, rows_dropped, omitted)


def fit_rows(page: Page, body: Callable[[int], str], n: int) -> Fit:
    """The body of the first k of `n` rows, for the largest k whose message fits (galloping search).

    `body(k)` is a template rendered with k rows: its size need not grow evenly with k, so the
    search measures whole messages.
    """

    def attempt(k: int) -> str | None:
        text = page.text([body(k)], page.note(n - k, "行"))
        return text if page.size(text) <= page.limit else None

    full = attempt(n)
    if full is not None:
        return Fit(full, n)
    best, best_text, failed = -1, "", n
    for k in _gallop(n):
        text = attempt(k)
        if text is None:
            failed = k
            break
        best, best_text = k, text
    if best < 0:
        independent = n > 0 and body(0) == body(n)  # the template does not list rows
        fit = fit_lines(page, [body(0)], 0 if independent else n, "行")
        return Fit(fit.text, n if independent else 0, fit.dropped, fit.lines_dropped)
    while failed - best > 1:
        mid = (best + failed) // 2
        text = attempt(mid)
        best, best_text, failed = (mid, text, failed) if text is not None else (best, best_text, mid)
    return Fit(best_text, best, n - best)


def _gallop(n: int) -> Iterator[int]:
    """0, 1, 2, 4, 8, … below n: a fitting message holds few rows, so probe small frames first."""
    k = 0
    while k < n:
        yield k
        k = 1 if k == 0 else k * 2
