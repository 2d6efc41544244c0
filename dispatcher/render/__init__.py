"""A query result (pandas DataFrame) → one DingTalk work-notification `msg` within the size budget.

Render is deterministic: the same inputs give byte-identical output (a retry must not look like new
content), and the footer carries the run's fire time (two runs must never look identical, or
DingTalk silently drops the second one the same day)
[asynchronous-sending-of-enterprise-session-messages].

The package is split by concern: `format` (values as markdown text), `fit` (the byte budget),
`default` (the rendering without a template), `templates` (author templates, their helpers and
errors), `chart`, `attach` and `oa` (images, files and cards); the bounded Jinja sandbox they render
in is `dispatcher.templating`, shared with `params:`. Markdown itself
is read and escaped by one module, `dispatcher.dingtalk.markdown`, which the sandbox's inbox uses too.
This module stays light: `validate` imports `dispatcher.templating.bounded` and must not load pandas.

May import: config (its rich options), dingtalk, templating and the top-level helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatcher.dingtalk.message import msg_bytes
from dispatcher.render.options import MSGTYPES, Rendered, RenderOptions

__all__ = ["MSGTYPES", "RenderOptions", "Rendered", "render"]

if TYPE_CHECKING:
    import pandas as pd


def render(df: pd.DataFrame, opts: RenderOptions) -> Rendered:
    """Render `df` as the message `opts` describes; RenderError when that is impossible."""
    # pandas and the template sandbox load with the first render, not with this package
    from dispatcher.render.default import render_default
    from dispatcher.render.fit import page_for
    from dispatcher.render.format import one_line
    from dispatcher.render.templates import render_template

    if opts.msgtype == "oa":
        return _render_oa(df, opts)
    page = page_for(opts)
    fit = render_template(df, opts, page) if opts.template is not None else render_default(df, opts, page)
    msg = page.wrap(fit.text)
    return Rendered(
        title=one_line(opts.title),
        markdown=fit.text,
        msg=msg,
        msg_bytes=msg_bytes(msg),
        rows=len(df),
        rows_shown=fit.shown,
        truncated=opts.query_truncated or fit.dropped > 0 or fit.lines_dropped > 0,
    )


def _render_oa(df: pd.DataFrame, opts: RenderOptions) -> Rendered:
    from dispatcher.config.rich import OaCard
    from dispatcher.errors import RenderError
    from dispatcher.render.oa import render_oa

    if not opts.action_url:
        raise RenderError("msgtype oa needs a link: set oa.url")
    return render_oa(df, opts, opts.oa or OaCard(), opts.action_url)
