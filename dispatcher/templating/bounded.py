"""The bounded Jinja sandbox that report templates and `params:` values render in.

Every loop, call, operator and output chunk goes through the checks of `dispatcher.templating.limits`,
so an untrusted template stops with a clear error instead of eating the CPU or the memory. Only
Jinja is imported here: `validate` renders `params:` with it and must stay free of pandas.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from typing import Any, cast

from jinja2 import Environment, StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2.runtime import Context as JinjaContext
from jinja2.sandbox import SandboxedEnvironment, SandboxedFormatter
from jinja2.visitor import NodeTransformer

from dispatcher.templating.limits import (
    MAX_CHARS,
    TemplateLimitError,
    bounded_filters,
    bounded_iter,
    bounded_join,
    bounded_method,
    check_deadline,
    check_format_spec,
    check_int_growth,
    check_percent,
    check_repeat,
    check_size,
    render_budget,
)


class BoundedTemplate(Template):
    """Each render gets its own deadline and loop budget, in the rendering thread."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        with render_budget():
            return super().render(*args, **kwargs)


class _BoundedFormatter(SandboxedFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        check_format_spec(format_spec)
        return check_size(super().format_field(value, format_spec))


class BoundedSandbox(SandboxedEnvironment):
    """A sandbox whose renders stop at the limits instead of eating the CPU or the memory."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.template_class = BoundedTemplate
        self.globals["__bounded_iter__"] = bounded_iter
        self.globals["__bounded_concat__"] = lambda *parts: bounded_join(parts, "a string")
        self.filters.update(bounded_filters(self.filters))

    @staticmethod
    def concat(chunks: Iterable[str]) -> str:
        return bounded_join(chunks, "the rendered text")

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        bounded: nodes.Template = _Bounds().visit(tree)
        return bounded

    def call(self, context: JinjaContext, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        check_deadline()
        return check_size(super().call(context, obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        check_deadline()
        return bounded_method(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return bounded_method(super().getitem(obj, argument))

    def call_binop(self, context: JinjaContext, operator: str, left: Any, right: Any) -> Any:
        check_deadline()
        if operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            check_size(left)
            check_size(right)
            if len(left) + len(right) > MAX_CHARS:
                raise TemplateLimitError(f"a string grew past {MAX_CHARS:,} characters")
        if operator == "%" and isinstance(left, str):
            check_percent(left, right)
        if operator == "*":
            check_repeat(left, right)
        if operator in ("*", "**"):
            check_int_growth(operator, left, right)
        return check_size(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        formatter = _BoundedFormatter(self)
        text, is_map = value.__self__, value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                return str(formatter.vformat(text, (), args[0]))
            return str(formatter.vformat(text, args, kwargs))

        return bounded


class _Bounds(NodeTransformer):
    """Route every loop and every `~` through the bounds: Jinja compiles both to plain Python."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _call("__bounded_iter__", [cast(nodes.Expr, node.iter)])
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _call("__bounded_concat__", node.nodes)


def _call(name: str, args: list[nodes.Expr]) -> nodes.Call:
    return nodes.Call(nodes.Name(name, "load"), args, [], None, None)


# --- the `params:` environment ---------------------------------------------------------------------


def add_days(value: str, days: int) -> str:
    """`{{ yesterday | add_days(-7) }}`: shift an ISO date."""
    return (date.fromisoformat(str(value)[:10]) + timedelta(days=int(days))).isoformat()


def params_environment() -> BoundedSandbox:
    """Where `params:` and `period:` values render: the date macros and `add_days`, nothing else."""
    env = BoundedSandbox(undefined=StrictUndefined, autoescape=False)
    env.filters["add_days"] = add_days
    return env


@functools.cache
def _params_env() -> BoundedSandbox:
    return params_environment()


# Keyed by the text: 5,000 reports share a few dozen `params:` values, and compiling one costs a
# millisecond (bench scenario 7, issue 28). A template keeps no state between renders (each gets
# its own context and budget), so reports and threads can share it. Bounded, as a reload may bring
# new texts.
@functools.lru_cache(maxsize=2048)
def params_template(source: str) -> Template:
    """`source` compiled in the `params:` environment, once per distinct text; raises as
    `from_string` does (a failure is not kept)."""
    return _params_env().from_string(source)


@functools.lru_cache(maxsize=1024)
def syntax_problem(source: str) -> str | None:
    """Why Jinja cannot parse a report's `template:` (`template line N: …`), or None; once per text."""
    try:
        Environment().parse(source)
    except TemplateSyntaxError as exc:
        return f"template line {exc.lineno}: {exc.message}"
    return None
