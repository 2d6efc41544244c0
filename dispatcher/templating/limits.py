"""The bounds every template render runs under: a deadline, a loop budget, a cap on each string.

Jinja's own sandbox stops attribute escapes but not a template that loops 10^10 times or doubles a
string 34 times. Templates (and `params:`) are untrusted input, and Python cannot kill a thread, so
the bounds are checked from inside the render: at every loop step, call, operator and output chunk
(`dispatcher.templating.bounded` routes them here). A template that crosses one fails with a
`TemplateLimitError` (a Jinja `SecurityError`), which the callers turn into a clear RenderError or
ConfigError.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import SecurityError

MAX_CHARS = 1_000_000  # one string or one rendered output; a DingTalk message is at most ~20 KB
MAX_ITEMS = 100_000  # one list built by an operator
MAX_LOOP_STEPS = 1_000_000  # loop iterations in one render, all loops together
MAX_INT_BITS = 100_000  # an integer a template computes (Python's own cap on printing one is 4,300 digits)
RENDER_SECONDS = 5.0  # wall time of one render
_CHECK_EVERY = 1024  # loop steps between deadline checks
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")
_NUMBER = re.compile(r"\d+")


class TemplateLimitError(SecurityError):
    """A template went past one of the render bounds."""


@dataclass
class _Budget:
    deadline: float
    steps: int = 0


_local = threading.local()


def _budget() -> _Budget | None:
    return getattr(_local, "budget", None)


@contextmanager
def render_budget() -> Iterator[None]:
    """One deadline and loop budget per render, in the rendering thread; a nested render shares it."""
    outer = _budget()
    _local.budget = _Budget(time.monotonic() + RENDER_SECONDS) if outer is None else outer
    try:
        yield
    finally:
        _local.budget = outer


def check_deadline() -> None:
    budget = _budget()
    if budget is not None and time.monotonic() > budget.deadline:
        raise TemplateLimitError(f"rendering took longer than {RENDER_SECONDS:g}s")


def check_size(value: Any) -> Any:
    """Pass `value` through, or fail when it is a string or list over the caps."""
    if isinstance(value, str) and len(value) > MAX_CHARS:
        raise TemplateLimitError(f"a string grew past {MAX_CHARS:,} characters")
    if isinstance(value, list | tuple) and len(value) > MAX_ITEMS:
        raise TemplateLimitError(f"a list grew past {MAX_ITEMS:,} items")
    return value


def check_width(width: Any, what: str) -> None:
    if isinstance(width, int) and width > MAX_CHARS:
        raise TemplateLimitError(f"{what} width {width:,} is over the {MAX_CHARS:,}-character limit")


def check_format_spec(spec: str) -> None:
    """`'{:999999999}'.format(x)`: every number in a format spec is a width or a precision."""
    for number in _NUMBER.findall(spec):
        check_width(int(number), "format")


def bounded_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    """Count loop steps against the render's budget; check the deadline every few steps."""
    budget = _budget()
    for item in iterable:
        if budget is not None:
            budget.steps += 1
            if budget.steps > MAX_LOOP_STEPS:
                raise TemplateLimitError(f"loops ran more than {MAX_LOOP_STEPS:,} steps")
            if budget.steps % _CHECK_EVERY == 0:
                check_deadline()
        yield item


def bounded_join(chunks: Iterable[Any], what: str) -> str:
    parts, total = [], 0
    for chunk in chunks:
        text = str(chunk)
        total += len(text)
        if total > MAX_CHARS:
            raise TemplateLimitError(f"{what} grew past {MAX_CHARS:,} characters")
        parts.append(text)
    return "".join(parts)


def check_repeat(left: Any, right: Any) -> None:
    seq, times = (left, right) if isinstance(left, str | list | tuple) else (right, left)
    if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_CHARS:
        raise TemplateLimitError(f"repeating a sequence past {MAX_CHARS:,} items is not allowed")


def check_int_growth(operator: str, left: Any, right: Any) -> None:
    # Big integers are a memory and CPU bomb of their own: 9 ** 9 ** 9, or squaring in a loop.
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    if operator == "**":
        bits = left.bit_length() * max(right, 0) if abs(left) > 1 else 0
    else:
        bits = left.bit_length() + right.bit_length()
    if bits > MAX_INT_BITS:
        raise TemplateLimitError(f"an integer grew past {MAX_INT_BITS:,} bits")


def check_percent(text: str, args: Any) -> None:
    stars = 0
    for match in _PERCENT_SPEC.finditer(text):
        for part in match.groups():
            if part == "*":
                stars += 1
            elif part is not None:
                check_width(int(part), "%-format")
    if stars:
        values = args if isinstance(args, tuple) else (args,)
        for value in values:
            check_width(value, "%-format")


# str methods whose output can be far longer than their input, checked before they allocate.
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def bounded_method(value: Any) -> Any:
    owner = getattr(value, "__self__", None)
    if not isinstance(owner, str) or not callable(value):
        return value
    name = getattr(value, "__name__", "")
    if name in _WIDTH_METHODS:
        return _width_checked(value, name)
    if name == "expandtabs":
        return lambda tabsize=8: check_size(owner.expandtabs(_tab(owner, tabsize)))
    if name == "replace":
        return lambda old, new, count=-1: _replace(owner, old, new, count)
    if name == "join":
        return lambda items: _joined(owner, items)
    return value


def _joined(sep: str, items: Iterable[Any]) -> str:
    return bounded_join(((sep if i else "") + str(x) for i, x in enumerate(items)), "join")


def _width_checked(method: Callable[..., str], name: str) -> Callable[..., str]:
    def checked(width: Any, *rest: Any) -> str:
        check_width(width, name)
        return method(width, *rest)

    return checked


def _tab(text: str, tabsize: Any) -> Any:
    if isinstance(tabsize, int) and text.count("\t") * tabsize > MAX_CHARS:
        raise TemplateLimitError(f"expandtabs would grow a string past {MAX_CHARS:,} characters")
    return tabsize


def _replace(text: str, old: Any, new: Any, count: Any = -1) -> str:
    if isinstance(old, str) and isinstance(new, str):
        hits = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        if len(text) + hits * (len(new) - len(old)) > MAX_CHARS:
            raise TemplateLimitError(f"replace would grow a string past {MAX_CHARS:,} characters")
    return text.replace(old, new, count)


def bounded_filters(filters: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The built-in filters that can build a long string from a short one, checked first."""
    center, indent = filters["center"], filters["indent"]

    def do_center(value: Any, width: int = 80) -> str:
        check_width(width, "center")
        return str(center(value, width))

    def do_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> str:
        if isinstance(width, int):
            check_width(width * (str(value).count("\n") + 1), "indent")
        out: str = check_size(indent(value, width, *args, **kwargs))
        return out

    def do_format(value: Any, *args: Any, **kwargs: Any) -> str:
        if args and kwargs:
            raise TemplateLimitError("format takes positional or keyword arguments, not both")
        text = str(value)
        check_percent(text, args if args else kwargs)
        out: str = check_size(text % (kwargs or args))
        return out

    def do_replace(value: Any, old: Any, new: Any, count: Any = None) -> str:
        return _replace(str(value), str(old), str(new), -1 if count is None else count)

    def do_join(value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
        items = (x.get(attribute) if attribute is not None and isinstance(x, dict) else x for x in value)
        return _joined(d, items)

    return {"center": do_center, "indent": do_indent, "format": do_format, "replace": do_replace,
            "join": do_join}  # fmt: skip
