"""msgtype oa: a KPI card (head colour, title, form rows, one headline number, image, link).

Values are the author's Jinja templates over the first row, in the same sandbox and with the same
helpers as markdown templates. The footer with the fire time goes into the card's content, so two
runs never send identical content (DingTalk drops the second one of a day).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.dingtalk.message import msg_bytes, oa_msg
from dispatcher.errors import RenderError
from dispatcher.render.format import fire_stamp, md, one_line
from dispatcher.render.options import Rendered, RenderOptions

if TYPE_CHECKING:
    import pandas as pd

    from dispatcher.config.rich import OaCard

MEDIA_ID_RESERVE = 80  # bytes an image media_id adds to body.image when delivery fills it in


def render_oa(df: pd.DataFrame, opts: RenderOptions, card: OaCard, url: str) -> Rendered:
    from dispatcher.render.templates import compile_template, template_error

    records: list[dict[str, Any]] = df.head(1).to_dict("records")  # type: ignore[assignment]
    context = {**opts.macros, "row": records[0] if records else {}, "title": opts.title,
               "period": opts.period, "n_rows": len(df), "fire_time": opts.fire_time}  # fmt: skip

    def value(source: str) -> str:
        try:
            return one_line(compile_template(source, opts.currency_symbol).render(context))
        except RenderError:
            raise
        except Exception as exc:  # untrusted template: every failure is the author's to read
            raise template_error(exc) from None

    body: dict[str, Any] = {"title": one_line(opts.title)}
    if card.form:
        body["form"] = [{"key": key, "value": value(v)} for key, v in card.form.items()]
    if card.rich is not None:
        body["rich"] = {"num": value(card.rich.num), "unit": card.rich.unit}
    body["content"] = _content(opts, value(card.content) if card.content else None)
    msg = oa_msg(url, card.head_color, one_line(opts.title), body)
    size = msg_bytes(msg)
    if size + MEDIA_ID_RESERVE > opts.max_msg_bytes:
        raise RenderError(
            f"the OA card is {size} bytes (+{MEDIA_ID_RESERVE} for the chart's media_id); "
            f"DingTalk accepts {opts.max_msg_bytes}",
            hint="shorten the form rows or the content",
        )
    return Rendered(one_line(opts.title), _as_text(body), msg, size, len(df), min(1, len(df)), False)


def _as_text(body: dict[str, Any]) -> str:
    """The card as lines of text, for preview and dry runs."""
    rich = body.get("rich")
    lines = [f"{rich['num']} {rich['unit']}".strip()] if rich else []
    lines += [f"{row['key']}  {row['value']}" for row in body.get("form", [])]
    return "\n".join([*lines, body["content"]])


def _content(opts: RenderOptions, extra: str | None) -> str:
    stamp = fire_stamp(opts.fire_time, opts.footer_seconds)
    lines = [extra] if extra else []
    if opts.period:
        lines.append(f"统计日期 {md(opts.period)}")  # may carry data: split_value
    lines.append(f"数据截至 {stamp}")
    return "\n".join(lines)
