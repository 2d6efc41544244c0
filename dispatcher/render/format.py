"""Values as DingTalk markdown text: cells, numbers, currency, percentages, dates, labels.

Cell text is untrusted: `md` makes it text the markdown cannot read as structure, with the escaping of
the one DingTalk markdown module (dispatcher.dingtalk.markdown.escape). Precision for the default
rendering is a property of a column, decided once from all its values (`column_formatter`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd

from dispatcher.dingtalk.markdown import escape

MISSING = "—"
CELL_MAX_CHARS = 64
LARGE = 100_000  # at or above this, cents are noise on a phone: numbers show no decimals
MAX_DEPTH = 8  # nesting shown of a list or mapping cell (a JSON document); deeper shows as `…`


def is_missing(x: Any) -> bool:
    """None, NaN, NaT and pd.NA: what shows as `—`."""
    if x is None or x is pd.NaT or x is pd.NA:
        return True
    if isinstance(x, Decimal):
        return x.is_nan()
    if isinstance(x, float):
        return math.isnan(x)
    if isinstance(x, str | bytes | Mapping | Sequence):
        return False
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def plain_value(x: Any, depth: int = 0) -> str:
    """A value as readable text: `—` for missing, 是/否 for bools, ISO for dates, bytes decoded as
    UTF-8 (U+FFFD for invalid bytes), lists as `a, b` and mappings as `k: v`, nested ones in brackets.
    """
    if is_missing(x):
        return MISSING
    if isinstance(x, bool) or type(x).__name__ == "bool_":
        return "是" if x else "否"
    if isinstance(x, datetime):
        return x.strftime(_datetime_pattern(x))
    if isinstance(x, date):
        return x.isoformat()
    if isinstance(x, bytes | bytearray | memoryview):
        return bytes(x).decode("utf-8", "replace")
    if isinstance(x, Mapping | list | tuple | set | frozenset | np.ndarray):
        return _plain_collection(x, depth)
    return str(x)


def _plain_collection(x: Any, depth: int) -> str:
    if depth >= MAX_DEPTH:
        return "…"
    if isinstance(x, Mapping):
        items = [f"{plain_value(k, depth + 1)}: {plain_value(v, depth + 1)}" for k, v in x.items()]
    else:
        items = [plain_value(v, depth + 1) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
        if isinstance(x, set | frozenset):
            items.sort()  # a set's order changes from run to run; a retry must render the same bytes
    text = ", ".join(items)
    return f"({text})" if depth else text


def inert(x: Any, depth: int = 0) -> Any:
    """A cell as a template sees it: text escaped (`md`), bytes decoded and escaped, containers
    likewise to the last item, numbers as plain numbers, anything else as escaped text.

    Whatever a template then does with the value (`~`, `format`, `join`, a loop), it works on text
    that cannot open markdown structure; an object's own `__str__` never reaches the message.
    """
    if x is None or type(x) in _INERT_TYPES or is_missing(x):
        return x
    if isinstance(x, str | bytes | bytearray | memoryview) or depth >= MAX_DEPTH:
        return md(x)
    if isinstance(x, Mapping):
        # keys stay as they are, so `r.meta.user_name` still finds its value; printing one escapes it
        return {k: inert(v, depth + 1) for k, v in x.items()}
    if isinstance(x, list | tuple | set | frozenset | np.ndarray):
        return [inert(v, depth + 1) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    return _inert_scalar(x)


def _inert_scalar(x: Any) -> Any:
    if isinstance(x, bool) or type(x).__name__ == "bool_":
        return bool(x)
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, Decimal):
        return Decimal(x)  # a plain Decimal of the same value, without a subclass's __str__
    if isinstance(x, numbers.Real):
        return float(x)
    return md(x)


# Types whose text is their value: a template gets them as they are.
_INERT_TYPES = frozenset(
    {int, float, Decimal, bool, datetime, date, time, timedelta, pd.Timestamp, pd.Timedelta}
)


def md(x: Any) -> str:
    """A value made safe to drop anywhere in markdown: one line, no structure it could open."""
    return escape(plain_value(x))


def display_name(name: str, labels: Mapping[str, str]) -> str:
    """A column's name as a reader sees it, as plain text: its label where the report sets one, else
    its name as a person would write it (`open_tickets` → `open tickets`)."""
    if name in labels:
        return labels[name]
    return " ".join(name.replace("_", " ").split()) or name


def column_label(name: str, labels: Mapping[str, str]) -> str:
    """`display_name` as markdown: escaped as any cell is, `—` when empty.

    Underscores become spaces before escaping: an underscore left in would show as its full-width
    look-alike (`open＿tickets`), and a space cannot open markdown structure.
    """
    return md(display_name(name, labels)) or MISSING


def cell(x: Any) -> str:
    """`md` capped at CELL_MAX_CHARS, for one value inside a default-rendered line; blank shows `—`."""
    text = md(x) or MISSING  # an empty value would leave `- ****` or a label with nothing after it
    return text if len(text) <= CELL_MAX_CHARS else text[: CELL_MAX_CHARS - 1] + "…"


def one_line(text: str) -> str:
    """An author's title or period on one line: runs of whitespace become one space."""
    return " ".join(text.split())


def as_number(x: Any) -> int | float | Decimal | None:
    """The numeric value of `x`, or None when it is not a number (bools are not numbers here)."""
    if isinstance(x, bool) or type(x).__name__ == "bool_" or is_missing(x):
        return None
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, Decimal):
        return x
    if isinstance(x, numbers.Real):
        return float(x)
    if isinstance(x, str):
        try:
            value = Decimal(x.strip().replace(",", ""))
        except InvalidOperation:
            return None
        return None if value.is_nan() else value
    return None


def _digits(digits: Any) -> int:
    return max(0, min(int(digits), 10))


def _format(value: int | float | Decimal, digits: int) -> str:
    """Rounded half up (四舍五入, as report readers expect), starting from the shortest repr."""
    exact = (
        value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
    )
    if not exact.is_finite():
        return "-∞" if exact < 0 else "∞"
    context = Context(prec=max(28, exact.adjusted() + digits + 2), rounding=ROUND_HALF_UP)
    text = format(exact.quantize(Decimal(1).scaleb(-digits), context=context), ",f")
    if text.startswith("-") and not text.strip("-0,."):
        text = text[1:]  # -0.00 is noise
    return text


def number(x: Any, digits: Any = 0) -> str:
    """`1234567.891` → `1,234,568` (digits=0) or `1,234,567.89` (digits=2)."""
    value = as_number(x)
    return md(x) if value is None else _format(value, _digits(digits))


def integer(x: Any) -> str:
    return number(x, 0)


def percent(x: Any, digits: Any = 1) -> str:
    """A ratio as a percentage: 0.123 → `12.3%`."""
    value = as_number(x)
    if value is None:
        return md(x)
    return _format(value * 100, _digits(digits)) + "%"


def currency(x: Any, digits: Any = None, symbol: str = "¥") -> str:
    """`-1234.5` → `-¥1,234.50`; the sign goes before the symbol.

    Without `digits`, the default rendering's rule for one value (`money_digits`): a template and a
    report without one show the same amount the same way.
    """
    value = as_number(x)
    if value is None:
        return md(x)
    magnitude = -value if value < 0 else value
    places = money_digits([value]) if digits is None else _digits(digits)
    text = _format(magnitude, places)
    sign = "-" if value < 0 and text.strip("0,.") else ""
    return f"{sign}{symbol}{text}"


def signed(x: Any, digits: Any = 0) -> str:
    """`+1,234` / `-1,234` / `0`: an explicit sign for deltas."""
    value = as_number(x)
    if value is None:
        return md(x)
    text = _format(value, _digits(digits))
    return text if text.startswith("-") or not text.strip("0,.") else "+" + text


def change(current: Any, previous: Any, digits: Any = 1) -> str:
    """Relative change: `▲12.3%`, `▼4.0%`, `持平` when it rounds to zero, `—` with no base."""
    cur, prev = as_number(current), as_number(previous)
    if cur is None or prev is None or prev == 0:
        return MISSING
    ratio = (float(cur) - float(prev)) / abs(float(prev))
    text = _format(abs(ratio) * 100, _digits(digits))
    if not text.strip("0,."):
        return "持平"
    return ("▲" if ratio > 0 else "▼") + text + "%"


def _datetime_pattern(x: datetime) -> str:
    return "%Y-%m-%d %H:%M:%S" if x.second or x.microsecond else "%Y-%m-%d %H:%M"


# --- the default rendering: one formatter per column, decided from the whole column ---------------

KINDS = ("number", "integer", "percent", "currency", "text", "date")


def infer_kind(series: pd.Series) -> str:
    """The format a column gets when the report names none."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "text"  # bools print 是/否 under every kind
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "date"
    if pd.api.types.is_object_dtype(dtype):
        return _infer_object_kind(series.tolist())
    return "text"


def _infer_object_kind(values: Iterable[Any]) -> str:
    present = [v for v in values if not is_missing(v)]
    if not present:
        return "text"
    if all(isinstance(v, date) for v in present):
        return "date"
    if all(as_number(v) is not None and not isinstance(v, str) for v in present):
        return "integer" if all(isinstance(v, numbers.Integral) for v in present) else "number"
    return "text"


def column_formatter(series: pd.Series, kind: str, symbol: str) -> Callable[[Any], str]:
    """A function turning one value of this column into safe cell text.

    Precision is a property of the column, not of each value, so a list reads aligned: numbers and
    currency show no decimals when every value is whole or the largest reaches LARGE, else two.
    """
    if kind in ("number", "currency"):
        digits = _column_digits(series)
        fmt = number if kind == "number" else _bound_currency(symbol)
        return lambda x: _with_bools(x, lambda v: cell(fmt(v, digits)))
    if kind == "integer":
        return lambda x: _with_bools(x, lambda v: cell(integer(v)))
    if kind == "percent":
        return lambda x: _with_bools(x, lambda v: cell(percent(v)))
    if kind == "date":
        pattern = _column_date_pattern(series)
        return lambda x: cell(x.strftime(pattern) if isinstance(x, datetime) and not is_missing(x) else x)
    return cell


def _bound_currency(symbol: str) -> Callable[[Any, int], str]:
    return lambda x, digits: currency(x, digits, symbol)


def _with_bools(x: Any, fmt: Callable[[Any], str]) -> str:
    return cell(x) if isinstance(x, bool) or type(x).__name__ == "bool_" else fmt(x)


def _column_digits(series: pd.Series) -> int:
    # Numeric dtypes are decided in numpy: a million-row column costs milliseconds, not seconds.
    if pd.api.types.is_integer_dtype(series.dtype):
        return 0
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        finite = values[np.isfinite(values)]
        if not finite.size or bool(np.all(finite == np.trunc(finite))) or np.abs(finite).max() >= LARGE:
            return 0
        return 2
    return money_digits(series.tolist())


def money_digits(values: Iterable[Any]) -> int:
    """Decimals for these amounts: none when all are whole or the largest reaches LARGE, else two."""
    present = [v for v in (as_number(x) for x in values) if v is not None]
    finite = [v for v in present if math.isfinite(v)]
    if not finite or all(v == int(v) for v in finite) or max(abs(float(v)) for v in finite) >= LARGE:
        return 0
    return 2


def _column_date_pattern(series: pd.Series) -> str:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        times = series.dropna().dt
        seconds, minutes = (times.second | times.microsecond).any(), (times.hour | times.minute).any()
    else:
        stamps = [v for v in series.tolist() if isinstance(v, datetime) and not is_missing(v)]
        seconds = any(v.second or v.microsecond for v in stamps)
        minutes = any(v.hour or v.minute for v in stamps)
    if seconds:
        return "%Y-%m-%d %H:%M:%S"
    return "%Y-%m-%d %H:%M" if minutes else "%Y-%m-%d"


def fire_stamp(fire_time: datetime, seconds: bool = False) -> str:
    """The footer's `数据截至` time: the local wall time, and its UTC offset when the clocks show
    that time twice (a repeated autumn hour), so the two runs never carry identical content."""
    stamp = fire_time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    offset = fire_time.utcoffset()
    if offset is None or fire_time.replace(fold=1 - fire_time.fold).utcoffset() == offset:
        return stamp
    sign, minutes = "-" if offset.total_seconds() < 0 else "+", abs(int(offset.total_seconds())) // 60
    return f"{stamp} (UTC{sign}{minutes // 60:02}:{minutes % 60:02})"
