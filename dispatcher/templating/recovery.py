"""An alert's recovery message: its template, rendered in the bounded sandbox, and the duration."""

from __future__ import annotations

from datetime import datetime

from jinja2 import TemplateError

from dispatcher.errors import RenderError

DURATION_UNITS = ((86400, "天"), (3600, "小时"), (60, "分钟"))


def render_recovery(template: str, title: str, lasted: float, since: datetime) -> str:
    from dispatcher.templating.bounded import params_template

    try:
        return params_template(template).render(
            title=title, duration=human_duration(lasted), since=since.strftime("%Y-%m-%d %H:%M")
        )
    except (TemplateError, ValueError, TypeError) as exc:
        raise RenderError(f"alert recovery_template: {exc}") from None


def recovery_problem(template: str) -> str | None:
    """Why `recovery_template` cannot render (checked by validate), or None."""
    try:
        render_recovery(template, "title", 0, datetime(2026, 1, 5, 9, 0))
    except RenderError as exc:
        return exc.message
    return None


def human_duration(seconds: float) -> str:
    """`2小时30分钟`: the recovery message's duration, to the minute (seconds below one minute)."""
    if seconds < 60:
        return f"{int(seconds)}秒"
    parts, left = [], int(seconds)
    for size, unit in DURATION_UNITS:
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts)
