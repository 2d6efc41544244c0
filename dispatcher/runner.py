"""One run of one report: fire time → dates → query → render (→ deliver → record, later).

Everything here is a function of the report and its *scheduled* fire time, never of the wall
clock, so a run caught up late or re-run next week queries the same dates as the on-time run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dispatcher import clock
from dispatcher.config import Config, Report
from dispatcher.errors import QueryError, ScheduleError
from dispatcher.params import default_period, render_params, render_value
from dispatcher.query import QueryResult, Sources, SourceSpec, run_query
from dispatcher.schedule import date_macros, to_zone
from dispatcher.state import resolve_sqlite_url

if TYPE_CHECKING:
    from dispatcher.render import Rendered


@dataclass(frozen=True)
class Prepared:
    """A report's message for one fire time, ready to deliver (or a decision not to)."""

    report: Report
    fire_time: datetime
    params: dict[str, Any]
    result: QueryResult
    rendered: Rendered | None
    action: Literal["send", "skip"]


def build_sources(config: Config) -> Sources:
    specs = {
        name: SourceSpec(name, resolve_sqlite_url(url, config.base_dir))
        for name, url in config.sources.items()
    }
    return Sources(specs, on_missing_sqlite=lambda path: _make_demo(path, config))


def _make_demo(path: Path, config: Config) -> bool:
    """The shipped demo database is generated on first use; any other missing file is an error."""
    from dispatcher.demo import DEMO_FILENAME, ensure_demo_sqlite

    if path.name != DEMO_FILENAME:
        return False
    today = clock.now().astimezone(to_zone(config.timezone)).date()
    ensure_demo_sqlite(path, today)
    return path.exists()


def fire_time_at(config: Config, report: Report, at: datetime) -> datetime:
    """The report's last scheduled fire time at or before `at`, in the report's timezone."""
    tz = to_zone(config.report_timezone(report))
    fire = report.parsed_schedule().previous_fire_time(at, tz)
    if fire is None:
        raise ScheduleError(f"report {report.id!r} has no fire time at or before {at.isoformat()}")
    return fire


def next_fire_time(config: Config, report: Report, after: datetime) -> datetime:
    tz = to_zone(config.report_timezone(report))
    return report.parsed_schedule().next_fire_time(after, tz)


def prepare(config: Config, sources: Sources, report: Report, fire_time: datetime) -> Prepared:
    """Query and render the report as the run scheduled at `fire_time` would."""
    tz = to_zone(config.report_timezone(report))
    macros = date_macros(fire_time, tz)
    params = render_params(report.params, macros, report.id, config.path.name)
    result = run_query(
        sources,
        report.source,
        config.query_text(report),
        params,
        max_rows=report.max_rows,
        timeout=report.query_timeout,
        report=report.id,
    )
    if result.rows == 0 and report.on_empty != "send":
        if report.on_empty == "error":
            raise QueryError("the query returned no rows and on_empty is 'error'", report=report.id)
        return Prepared(report, fire_time, params, result, None, "skip")
    rendered = _render(config, report, fire_time, macros, params, result)
    return Prepared(report, fire_time, params, result, rendered, "send")


def _render(
    config: Config,
    report: Report,
    fire_time: datetime,
    macros: dict[str, str],
    params: dict[str, Any],
    result: QueryResult,
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
        action_url=report.action_url,
        action_title=report.action_title,
        max_msg_bytes=config.dingtalk.max_msg_bytes,
        query_truncated=result.truncated,
        macros={**macros, **{k: v for k, v in params.items() if isinstance(v, str)}},
    )
    return render(result.frame, options)


def now_in(config: Config) -> datetime:
    return clock.now().astimezone(to_zone(config.timezone))
