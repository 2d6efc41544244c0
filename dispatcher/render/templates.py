"""Author-written report templates: the sandbox they run in, the helpers they see, their errors.

A template is untrusted Jinja2 markdown. It runs in the bounded sandbox (`dispatcher.templating.bounded`),
made immutable and narrowed to reading pandas and numpy objects. Data cannot inject markdown, twice
over: cells reach the template inert (`format.inert`: text escaped, bytes decoded, containers to the
last item), and whatever `{{ … }}` prints is escaped, whatever its type. Jinja's autoescape tells the
template's own markdown from printed values: the template's text, a macro's or a `{% set %}` block's
output are `Markup` and pass; nothing a template computes from a value can become `Markup`.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd
from jinja2 import (
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    pass_eval_context,
)
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context as JinjaContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from dispatcher.dingtalk.markdown import escape
from dispatcher.errors import RenderError
from dispatcher.render.fit import Fit, Page, fit_rows
from dispatcher.render.format import (
    change,
    currency,
    inert,
    integer,
    is_missing,
    md,
    number,
    percent,
    signed,
)
from dispatcher.templating.bounded import BoundedSandbox

if TYPE_CHECKING:
    from dispatcher.render.options import RenderOptions

# What templates may touch on pandas and numpy objects: reading, never writing files or mutating.
_DATA_ATTRS = frozenset(
    """columns index shape empty size ndim dtype dtypes name T head tail iloc loc iat at items
    iterrows itertuples keys get sum mean median min max count nunique unique mode quantile
    std var prod cumsum cummax cummin abs round clip diff pct_change rank idxmax idxmin
    nlargest nsmallest sort_values sort_index value_counts describe isna notna isnull notnull
    fillna dropna between isin any all groupby first last astype copy reset_index set_index
    rename tolist to_list to_dict item str dt contains startswith endswith upper lower strip
    len replace slice split year month day hour minute second weekday isoweekday date time
    strftime isoformat day_name month_name quarter""".split()
)
_MAX_REPEAT = 100_000
_MAX_EXPONENT = 1_000


class TemplateSandbox(BoundedSandbox, ImmutableSandboxedEnvironment):
    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if type(obj).__module__.split(".")[0] in ("pandas", "numpy"):
            in_frame = isinstance(obj, pd.DataFrame) and attr in obj.columns
            return attr in _DATA_ATTRS or in_frame
        return True

    # The template's own markup (a macro's output) used as text gives text: Markup's methods and
    # operators would HTML-escape their arguments, not markdown-escape them.
    def getattr(self, obj: Any, attribute: str) -> Any:
        return super().getattr(_demoted(obj), attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        return super().getitem(_demoted(obj), argument)

    def call(self, context: JinjaContext, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if "inplace" in kwargs:
            raise SecurityError("inplace= is not allowed in templates")
        return super().call(context, obj, *args, **kwargs)

    def call_binop(self, context: JinjaContext, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, numbers.Real) and abs(float(right)) > _MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is too large")
        if operator == "*":
            seq, times = (left, right) if isinstance(left, str | list | tuple) else (right, left)
            big = isinstance(seq, str | list | tuple) and isinstance(times, int)
            if big and len(seq) * times > _MAX_REPEAT:
                raise SecurityError("repeating a sequence that many times is not allowed")
        return super().call_binop(context, operator, _demoted(left), _demoted(right))


def _demoted(value: Any) -> Any:
    return str(value) if isinstance(value, Markup) else value


@pass_eval_context  # evaluated at render time: Jinja would otherwise HTML-escape constants when compiling
def finalize(_ctx: EvalContext, value: Any) -> Any:
    """What `{{ x }}` prints: text, never markup (`md`: `—` for missing, 是/否, ISO dates, bytes
    decoded, lists and mappings to the last item). Only the template's own markup passes as is."""
    if isinstance(value, Markup | Undefined):
        return value
    return Markup(escape(value) if type(value) is str else md(value))  # noqa: S704 (markdown-escaped)


def _text_only(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    """Filter `f`, except that it cannot turn text into markup: `|safe`, `|e`, `|tojson`… give text,
    which `finalize` escapes; a filter of the template's own markup with no other text stays markup."""
    passes = getattr(f, "jinja_pass_arg", None) is not None

    @functools.wraps(f)
    def text_only(*args: Any, **kwargs: Any) -> Any:
        out = f(*args, **kwargs)
        value, *rest = args[1:] if passes else args
        others = [*rest, *kwargs.values()]
        if isinstance(out, Markup) and (
            name in _TEXT_FILTERS or not isinstance(value, Markup) or any(_is_text(o) for o in others)
        ):
            return str(out)
        return out

    return text_only


_TEXT_FILTERS = frozenset({"safe", "e", "escape", "forceescape", "tojson", "urlize", "xmlattr"})


def _is_text(value: Any) -> bool:
    """Text, or a container that may hold some: what a filter could slip into the markup it returns."""
    return not isinstance(value, Markup) and isinstance(value, str | Iterable)


def escape_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose object cells are inert (`format.inert`), so `{{ r.name }}` cannot inject structure."""
    out = df.copy(deep=False)
    for j in range(df.shape[1]):
        col = df.iloc[:, j]
        if pd.api.types.is_object_dtype(col.dtype) or pd.api.types.is_string_dtype(col.dtype):
            cells = pd.Series([inert(v) for v in col.tolist()], index=col.index, dtype=object)
            out.isetitem(j, cells.to_numpy(dtype=object))  # one object per row, lists kept whole
    return out


def top(data: Any, n: Any, by: str, ascending: bool = False) -> list[dict[str, Any]]:
    """The first `n` rows (DataFrame or list of row dicts) ordered by `by`; missing values last."""
    count = max(0, int(n))
    if isinstance(data, pd.DataFrame):
        ordered = data.sort_values(by, ascending=ascending, kind="mergesort", na_position="last")
        return ordered.head(count).to_dict("records")  # type: ignore[return-value]
    rows = list(data)
    present = [r for r in rows if not is_missing(r.get(by))]
    absent = [r for r in rows if is_missing(r.get(by))]
    present.sort(key=lambda r: r[by], reverse=not ascending)
    return (present + absent)[:count]


def template_helpers(currency_symbol: str) -> dict[str, Callable[..., Any]]:
    """The helpers templates get as both filters and globals."""

    def currency_default(x: Any, digits: Any = None, symbol: str = currency_symbol) -> str:
        return currency(x, digits, symbol)

    return {
        "number": number,
        "integer": integer,
        "percent": percent,
        "currency": currency_default,
        "change": change,
        "signed": signed,
        "top": top,
        "md": md,
    }


# Keyed by the text: many reports share a few templates, and every run rendered its own compile
# (issue 28). A template keeps no state between renders (each has its own context and budget).
@functools.lru_cache(maxsize=256)
def compile_template(source: str, currency_symbol: str) -> Template:
    """`source` in the report sandbox, once per distinct (text, currency symbol); a failure is not kept."""
    env = TemplateSandbox(
        undefined=StrictUndefined,
        autoescape=True,  # to tell the template's own markup from printed values; `finalize` escapes
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        finalize=finalize,
    )
    env.filters.update({name: _text_only(name, f) for name, f in env.filters.items()})  # Jinja's own
    helpers = template_helpers(currency_symbol)
    env.filters.update({**helpers, "e": md, "escape": md, "forceescape": md})  # markdown's escape, not HTML's
    env.globals.update(helpers)
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise template_error(exc) from None


def template_error(exc: Exception) -> RenderError:
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


def render_template(df: pd.DataFrame, opts: RenderOptions, page: Page) -> Fit:
    """The template rendered with as many of the rows as fit the page."""
    assert opts.template is not None
    template = compile_template(opts.template, opts.currency_symbol)
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
                raise template_error(exc) from None
            bodies[k] = page.block(out.lstrip("\n").rstrip().split("\n"))
        return bodies[k]

    return fit_rows(page, body, n)
