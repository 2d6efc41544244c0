"""Query parameters and the period line, rendered from the run's date macros.

Values like `"{{ yesterday }}"` are Jinja2 expressions evaluated in a sandbox; the result is bound
as a SQL parameter (`:day`), never pasted into the SQL text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jinja2 import TemplateError

from dispatcher.errors import ConfigError, Problem
from dispatcher.templating.bounded import params_template

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


def render_value(value: Any, macros: Mapping[str, str], where: str, file: str = "reports.yaml") -> Any:
    """Render one parameter value; non-strings pass through unchanged."""
    if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
        return value
    try:
        return params_template(value).render(**macros)
    except (TemplateError, ValueError, TypeError) as exc:
        raise ConfigError([Problem(file, None, where, f"cannot render {value!r}: {exc}")]) from None


def render_params(
    params: Mapping[str, Any], macros: Mapping[str, str], report_id: str, file: str = "reports.yaml"
) -> dict[str, Any]:
    where = f"reports.{report_id}.params"
    return {k: render_value(v, macros, f"{where}.{k}", file) for k, v in params.items()}


def default_period(params: Mapping[str, Any]) -> str | None:
    """The data's period when the author gave none: the single date the query is bound to."""
    dates = sorted({v for v in params.values() if isinstance(v, str) and ISO_DATE.match(v)})
    if len(dates) == 1:
        return dates[0]
    return None
