"""Preparing one run of one report: fire time → dates → query → render (split_by slices, rich parts).

Everything here is a function of the report and its *scheduled* fire time, never of the wall
clock, so a run caught up late or re-run next week queries the same dates as the on-time run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dispatcher import clock
from dispatcher.config.model import Config, Report
from dispatcher.config.params import default_period, render_params, render_value
from dispatcher.config.secrets import credentials
from dispatcher.errors import QueryError, RenderError, ScheduleError
from dispatcher.leaks import refuse
from dispatcher.schedule import date_macros, to_zone
from dispatcher.sources.query import QueryResult, Sources, SourceSpec, run_query
from dispatcher.store.db import resolve_sqlite_url

if TYPE_CHECKING:
    from dispatcher.render import Rendered
    from dispatcher.run.rich import RichParts
    from dispatcher.run.split import Slicing


@dataclass(frozen=True)
class Prepared:
    """A report's message for one fire time, ready to deliver (or a decision not to)."""

    report: Report
    fire_time: datetime
    params: dict[str, Any]
    result: QueryResult
    rendered: Rendered | None
    action: Literal["send", "skip"]
    note: str | None = None  # why an alert sends or skips (see alerting)
    slicing: Slicing | None = None  # split_by: one message per recipient (see split)
    rich: RichParts | None = None  # the chart and attachment, for reports that have them
    alert: str | None = None  # the alert's event for this run (fired, recovered, …; see alerting)


def build_sources(config: Config) -> Sources:
    specs = {
        name: SourceSpec(name, resolve_sqlite_url(url, config.base_dir))
        for name, url in config.sources.items()
    }
    return Sources(specs, on_missing_sqlite=lambda path: _make_demo(path, config))


def _make_demo(path: Path, config: Config) -> bool:
    """The shipped demo database is generated on first use; any other missing file is an error."""
    from dispatcher.demo.shop import DEMO_FILENAME, ensure_demo_sqlite

    if path.name != DEMO_FILENAME:
        return False
    ensure_demo_sqlite(path, now_in(config).date())
    return path.exists()


def fire_time_at(config: Config, report: Report, at: datetime) -> datetime:
    """The report's last scheduled fire time at or before `at`, in the report's timezone."""
    tz = config.report_zone(report)
    fire = report.parsed_schedule().previous_fire_time(at, tz)
    if fire is None:
        raise ScheduleError(f"report {report.id!r} has no fire time at or before {at.isoformat()}")
    return fire


def next_fire_time(config: Config, report: Report, after: datetime) -> datetime:
    tz = config.report_zone(report)
    return report.parsed_schedule().next_fire_time(after, tz)


def prepare(
    config: Config, sources: Sources, report: Report, fire_time: datetime,
    on_rows: Callable[[int], None] | None = None,
) -> Prepared:  # fmt: skip
    """Query and render the report as the run scheduled at `fire_time` would; `on_rows` hears
    the row count when the query is done and rendering starts (`send` shows it)."""
    tz = config.report_zone(report)
    macros = date_macros(fire_time, tz)
    params = render_params(report.params, macros, report.id, config.path.name)
    result = run_query(
        sources,
        report.source,
        config.query_text(report),
        params,
        max_rows=report.max_rows,
        max_bytes=report.max_bytes,
        timeout=report.query_timeout,
        report=report.id,
    )
    if on_rows is not None:
        on_rows(result.rows)
    if result.rows == 0 and report.on_empty != "send":
        if report.on_empty == "error":
            raise QueryError("the query returned no rows and on_empty is 'error'", report=report.id)
        return Prepared(report, fire_time, params, result, None, "skip")
    if report.split_by is not None:
        return _split(config, report, fire_time, macros, params, result)
    from dispatcher.run.rich import prepare_rich, with_notes

    rich = prepare_rich(config, sources, report, fire_time, macros, result)
    rendered = _render(config, report, fire_time, macros, params, result)
    if rich is not None:
        rendered = with_notes(rendered, rich.warnings, config.dingtalk.max_msg_bytes)
    return Prepared(report, fire_time, params, result, rendered, "send", rich=rich)


def _split(
    config: Config,
    report: Report,
    fire_time: datetime,
    macros: dict[str, str],
    params: dict[str, Any],
    result: QueryResult,
) -> Prepared:
    """split_by: the slices, and the whole report when `to` gets it (else the largest slice stands
    for the run's message, as its size is the one that matters)."""
    slicing = _slices(config, report, fire_time, macros, params, result)
    if report.to:
        rendered: Rendered | None = _render(config, report, fire_time, macros, params, result)
    else:
        rendered = max((s.rendered for s in slicing.slices), key=lambda r: r.msg_bytes, default=None)
    note = None if rendered is not None else f"no row has a recipient ({slicing.empty_rows} rows without one)"
    action: Literal["send", "skip"] = "send" if rendered is not None else "skip"
    return Prepared(report, fire_time, params, result, rendered, action, note, slicing)


def _slices(
    config: Config,
    report: Report,
    fire_time: datetime,
    macros: dict[str, str],
    params: dict[str, Any],
    result: QueryResult,
) -> Slicing:
    from dataclasses import replace

    from dispatcher.run.split import build

    assert report.split_by is not None

    def one(frame: Any, key: str) -> Rendered:
        return _render(
            config, report, fire_time, {**macros, "split_value": key}, params, replace(result, frame=frame)
        )

    return build(result.frame, report.split_by, report.id, one)


def _render(
    config: Config,
    report: Report,
    fire_time: datetime,
    macros: dict[str, str],
    params: dict[str, Any],
    result: QueryResult,
    max_msg_bytes: int | None = None,
) -> Rendered:
    from dispatcher.render import RenderOptions, render

    period = render_value(report.period, macros, f"reports.{report.id}.period", config.path.name)
    options = RenderOptions(
        title=report.title,
        fire_time=fire_time,
        footer_seconds=report.parsed_schedule().min_period_seconds < 60,
        period=period if report.period is not None else default_period(params),
        template=report.template,
        formats=report.formats,
        labels=report.labels,
        msgtype=report.msgtype,
        action_url=(report.oa.url if report.oa else None) or report.action_url,
        oa=report.oa,
        action_title=report.action_title,
        max_msg_bytes=max_msg_bytes or config.dingtalk.max_msg_bytes,
        query_truncated=result.truncated,
        macros={**macros, **{k: v for k, v in params.items() if isinstance(v, str)}},
    )
    try:
        rendered = render(result.frame, options)
    except RenderError as exc:
        raise RenderError(f"report {report.id!r}: {exc.message}", hint=exc.hint) from None
    # Every message of a run passes here (slices and robots' larger budget too): none may carry a
    # credential, whatever the data held. Preview shows nothing that a run would refuse to send.
    refuse(rendered.msg, credentials(config), f"report {report.id!r}'s message")
    return rendered


def rerender(config: Config, prepared: Prepared, max_msg_bytes: int) -> Rendered:
    """The same run's message with another byte budget (a group robot's larger one)."""
    report, fire = prepared.report, prepared.fire_time
    macros = date_macros(fire, config.report_zone(report))
    return _render(config, report, fire, macros, prepared.params, prepared.result, max_msg_bytes)


def now_in(config: Config) -> datetime:
    return clock.now().astimezone(to_zone(config.timezone))
