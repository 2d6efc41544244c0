"""A run's chart and attachment: their queries, the PNG, the file, and the note when a file is too large.

Part of preparing a run (prepare.prepare): a function of the report and its fire time only, so a
retry rebuilds byte-identical files and reuses their cached media_ids. An attachment that cannot be
built is a part not sent, as a refused one would be: the text still goes, and the run is partial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dispatcher import logs
from dispatcher.config.params import render_params, render_value
from dispatcher.dingtalk.message import msg_bytes
from dispatcher.errors import DispatcherError, RenderError

if TYPE_CHECKING:
    import pandas as pd

    from dispatcher.config.model import Config, Report
    from dispatcher.render import Rendered
    from dispatcher.render.attach import Attachment
    from dispatcher.sources.query import QueryResult, Sources

CHART_NAME = "chart.png"


@dataclass(frozen=True)
class RichParts:
    """What a run sends besides its text or card."""

    chart: bytes | None = None
    attachment: Attachment | None = None
    warnings: tuple[str, ...] = ()
    attach_error: str | None = None  # why the attachment could not be built

    @property
    def file_to_send(self) -> Attachment | None:
        return self.attachment if self.attachment is not None and not self.attachment.too_large else None


def prepare_rich(
    config: Config,
    sources: Sources,
    report: Report,
    fire_time: datetime,
    macros: dict[str, str],
    result: QueryResult,
) -> RichParts | None:
    """The chart and attachment of `report` for this fire time; None when it has neither."""
    if report.chart is None and report.attach is None:
        return None
    chart = attachment = None
    warnings: list[str] = []
    if report.chart is not None:
        from dispatcher.render.chart import render_chart

        spec = report.chart
        frame = _rows(config, sources, report, "chart", spec.sql, spec.query, spec.params, macros, result)
        _refuse_secrets(config, [frame], f"report {report.id!r}'s chart data")
        draw = lambda: render_chart(frame, spec, report.title, report.formats, report.labels)  # noqa: E731
        chart = _located(report, "chart", draw)
    error = None
    if report.attach is not None:
        try:
            attachment = _attachment(config, sources, report, fire_time, macros, result)
        except Exception as exc:  # the text and chart still go; the ledger keeps why the file did not
            error = _why(report, exc)
        if attachment is not None and attachment.too_large:
            from dispatcher.render.attach import MAX_FILE_BYTES

            mb = len(attachment.data) / 1024 / 1024
            warnings.append(
                f"attachment {attachment.name} not sent: {mb:.1f} MB, a file message carries at most "
                f"{MAX_FILE_BYTES // 1024 // 1024} MB"
            )
    return RichParts(chart, attachment, tuple(warnings), error)


def _attachment(
    config: Config, sources: Sources, report: Report, fire_time: datetime, macros: dict[str, str],
    result: QueryResult,
) -> Attachment:  # fmt: skip
    """The file, its name rendered for this fire time and checked as validate checks it."""
    from dispatcher.config.rich import name_problem
    from dispatcher.render.attach import build_attachment

    att = report.attach
    assert att is not None
    name = str(render_value(att.name, macros, f"reports.{report.id}.attach.name", config.path.name))
    problem = name_problem(att.format, name)
    if problem:
        raise RenderError(problem, hint="attach.name must render to a plain file name at every fire time")
    frame = _rows(config, sources, report, "attach", att.sql, att.query, att.params, macros, result)
    _refuse_secrets(config, [name, frame], f"report {report.id!r}'s attachment")
    zone = config.report_zone(report)
    return build_attachment(frame, att.format, name, fire_time, report.labels, report.formats, zone)


def _why(report: Report, exc: Exception) -> str:
    if isinstance(exc, DispatcherError):
        why = exc.message.removeprefix(f"report {report.id!r}: ")
    else:
        logs.log.exception("attach.crashed", extra={"report": report.id})
        why = f"internal error: {type(exc).__name__}: {exc}"
    return f"report {report.id!r}: attachment not built: {why}"


def _rows(
    config: Config,
    sources: Sources,
    report: Report,
    key: str,
    sql: str | None,
    query: str | None,
    params: dict[str, Any],
    macros: dict[str, str],
    result: QueryResult,
) -> pd.DataFrame:
    """The block's own query (bound to the report's params, then its own), or the report's rows."""
    from dispatcher.sources.query import run_query

    if sql is None and query is None:
        return result.frame
    text = sql if sql is not None else (config.queries_dir / str(query)).read_text(encoding="utf-8")
    bound = {
        **render_params(report.params, macros, report.id, config.path.name),
        **render_params(params, macros, f"{report.id}.{key}", config.path.name),
    }
    return run_query(
        sources, report.source, text, bound, max_rows=report.max_rows, max_bytes=report.max_bytes,
        timeout=report.query_timeout, report=report.id,
    ).frame  # fmt: skip


def _refuse_secrets(config: Config, values: list[Any], what: str) -> None:
    """A chart or a file is checked as the data it is drawn from: a PNG's pixels cannot be searched."""
    from dispatcher.config.secrets import credentials
    from dispatcher.leaks import refuse

    texts = [_columns(v) if hasattr(v, "columns") else v for v in values]
    refuse(texts, credentials(config), what)


def _columns(frame: pd.DataFrame) -> list[str]:
    """Each column's name and cells as one text: one search per column, not one per cell."""
    return [f"{name}\n" + "\n".join(frame[name].astype(str)) for name in frame.columns]


def _located(report: Report, key: str, make: Callable[[], bytes]) -> bytes:
    try:
        return make()
    except RenderError as exc:
        raise RenderError(f"report {report.id!r}: {key}: {exc.message}", hint=exc.hint) from None


def with_notes(rendered: Rendered, notes: tuple[str, ...], limit: int) -> Rendered:
    """The summary with a line per note (an attachment left out), still within DingTalk's limit."""
    if not notes:
        return rendered
    note = "\n\n".join(f"⚠️ {n}" for n in notes)
    msg = _append(rendered.msg, note)
    size = msg_bytes(msg)
    if size > limit:
        raise RenderError(
            f"the message is {size} bytes with the note that the attachment was too large;"
            f" the limit is {limit}",
            hint="shorten the template, or make the attachment smaller",
        )
    return replace(rendered, msg=msg, msg_bytes=size, markdown=f"{rendered.markdown}\n\n{note}")


def _append(msg: dict[str, Any], note: str) -> dict[str, Any]:
    kind = msg["msgtype"]
    body = dict(msg[kind])
    if kind == "oa":
        inner = dict(body["body"])
        inner["content"] = f"{inner.get('content', '')}\n{note}".strip()
        body["body"] = inner
    else:
        field = {"markdown": "text", "action_card": "markdown", "text": "content"}[kind]
        body[field] = f"{body[field]}\n\n{note}"
    return {**msg, kind: body}
