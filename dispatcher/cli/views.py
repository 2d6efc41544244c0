"""`dispatcher list` and `dispatcher history`, and what they and `preview` show of alerts and
split_by reports.

Its own module so that `cli` stays a list of commands; it imports nothing of `cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dispatcher.cli.common import instant, load
from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from dispatcher.config.model import Config, Report
    from dispatcher.run.prepare import Prepared
    from dispatcher.schedule import Schedule
    from dispatcher.store.db import StateStore
    from dispatcher.store.ledger import Run


def alert_states(config: Config, at: datetime) -> dict[str, str]:
    """Each alert's state as `list` shows it: `firing since 09:30 (2 runs)`."""
    from dispatcher.run.alerting import state_text
    from dispatcher.store.alert_state import AlertStates

    if not any(r.alert for r in config.reports.values()):
        return {}
    with _state(config) as store:
        states = AlertStates(store).all() if store is not None else {}
    return {rid: state_text(state, at) for rid, state in states.items()}


def as_recipient(prepared: Prepared, value: str) -> Prepared:
    """The slice of `value` in place of the whole report: what that recipient would get."""
    from dataclasses import replace

    spec, slicing = prepared.report.split_by, prepared.slicing
    if spec is None or slicing is None:
        if spec is None:
            raise DispatcherError(f"report {prepared.report.id!r} has no split_by; --as needs one")
        return prepared  # no rows: nothing for anybody
    found = slicing.find(value, spec.kind)
    if found is None:
        raise DispatcherError(
            f"no rows with {spec.column} = {value!r} in this run",
            hint="preview --json lists every value (slices)",
        )
    return replace(prepared, rendered=found.rendered, slicing=None)


# The store's "cleared" (ok before, ok now) reads to a user as if something had been firing.
_EVENT_WORDS = {"cleared": "ok"}


_LISTED_SLICES = 10  # a split over 2,000 managers names the first few and counts the rest


def split_lines(prepared: Prepared, as_value: str | None = None, *, whole: bool = True) -> list[str]:
    """A split run as `preview` and `send --dry-run` tell it: how many slices and whose they are, who
    gets the whole report, and which one message is printed below (the whole, the largest slice, or
    the `--as` recipient's)."""
    from dispatcher.words import plural

    spec, slicing, report = prepared.report.split_by, prepared.slicing, prepared.report
    if spec is None or slicing is None:
        return []
    listed = [f"{s.key} ({plural(s.rows, 'row')})" for s in slicing.slices[:_LISTED_SLICES]]
    more = len(slicing.slices) - len(listed)
    rest = f", and {more} more" if more > 0 else ""
    lines = [f"slices     {plural(len(slicing.slices), 'slice')} by {spec.column}, each recipient only "
             f"their rows: {', '.join(listed) or 'none'}{rest}"]  # fmt: skip
    if slicing.empty_rows:
        lines.append(f"           {plural(slicing.empty_rows, 'row')} without a recipient: sent to nobody")
    if whole:
        lines.append(f"whole      to: {', '.join(report.to)} gets the whole report" if report.to
                     else "whole      no to: nobody gets the whole report")  # fmt: skip
    return [*lines, f"shown      below: {_shown(prepared, as_value)}"]


def _shown(prepared: Prepared, as_value: str | None) -> str:
    from dispatcher.words import plural

    assert prepared.slicing is not None and prepared.report.split_by is not None
    if as_value is not None:
        found = prepared.slicing.find(as_value, prepared.report.split_by.kind)
        return f"{found.key}'s message ({plural(found.rows, 'row')})" if found else "nothing"
    if prepared.report.to:
        return "the whole report, as to: gets it; preview --as VALUE shows one recipient's message"
    found = next((s for s in prepared.slicing.slices if s.rendered is prepared.rendered), None)
    if found is None:
        return "nothing: no row has a recipient"
    return (f"{found.key}'s message ({plural(found.rows, 'row')}, the largest); "
            "preview --as VALUE shows another recipient's")  # fmt: skip


def alert_events(store: Any, runs: list[Run]) -> dict[tuple[str, datetime], str]:
    """(report, fire time) -> the alert's transition at that fire time (fired, recovered, ...)."""
    from dispatcher.store.alert_state import AlertStates

    ids = {r.report_id for r in runs}
    found = [e for rid in ids for e in AlertStates(store).events(rid, limit=len(runs) + 50)]
    return {(e["report_id"], e["fire_time"]): _EVENT_WORDS.get(e["event"], e["event"]) for e in found}


def cmd_list(args: argparse.Namespace) -> int:
    from dispatcher.config.yamlfile import paused_gc

    # A short-lived command holding 5,000 reports and their last runs: collections only cost.
    with paused_gc():
        return _list(args)


def _list(args: argparse.Namespace) -> int:
    if args.next is not None and args.report_id is None:
        print("usage error: --next N needs a REPORT_ID: dispatcher list REPORT_ID --next N", file=sys.stderr)
        return 2
    config = load(args)
    at = instant(config, args.at)
    if args.report_id is not None:
        config = config.model_copy(update={"reports": {args.report_id: config.report(args.report_id)}})
        if args.next is not None and not args.json:
            return _print_next(config, config.report(args.report_id), at, args.next)
    last = _last_runs(config)
    alerts = alert_states(config, at)
    rows = _list_rows(config, at, last, alerts, as_json=args.json)
    if args.json and args.next is not None:
        from dispatcher.schedule.describe import next_fire_times

        report = config.report(args.report_id)
        fires = next_fire_times(report.parsed_schedule(), at, config.report_zone(report), args.next)
        rows[0]["next_fire_times"] = [f.isoformat() for f in fires]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for row in rows:
            row["last_state"] = row["last_run"].state if row["last_run"] is not None else "-"
        alert_column = ["alert"] if alerts or any(r.alert for r in config.reports.values()) else []
        for row in rows:
            row.setdefault("alert", "-")
        _print_table(
            rows, ["id", "schedule", "timezone", "next_fire_time", "last_state", *alert_column, "title"]
        )
    return 0


def _print_next(config: Config, report: Report, at: datetime, count: int) -> int:
    from dispatcher.cli.schedule import print_schedule

    print(f"{report.id}  {report.title}")
    print_schedule(report.parsed_schedule(), config.report_zone(report), at, count)
    return 0


def _list_rows(
    config: Config, at: datetime, last: dict[str, Run], alerts: dict[str, str], *, as_json: bool
) -> list[dict[str, Any]]:
    """One row per report; `last_run` is the Run itself for the table, its dict for --json."""
    fires: dict[tuple[Schedule, ZoneInfo], str] = {}  # 5,000 reports share a few schedules
    rows: list[dict[str, Any]] = []
    for report in config.reports.values():
        when = (report.parsed_schedule(), config.report_zone(report))
        if when not in fires:
            fires[when] = when[0].next_fire_time(at, when[1]).isoformat()
        run = last.get(report.id)
        rows.append(
            {
                "id": report.id,
                "title": report.title,
                "schedule": when[0].expression,
                "timezone": config.report_timezone(report),
                "source": report.source,
                "enabled": report.enabled,
                "next_fire_time": fires[when],
                # The table shows only the state: no to_dict() of every run for it.
                "last_run": (run.to_dict() if as_json else run) if run is not None else None,
                **({"alert": alerts.get(report.id, "ok")} if report.alert is not None else {}),
            }
        )
    return rows


def _last_runs(config: Config) -> dict[str, Run]:
    """Each report's latest ledger row, if there is a state store yet (list never creates one)."""
    from dispatcher.store.ledger import Ledger

    with _state(config) as store:
        return Ledger(store).last_runs() if store is not None else {}


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        print("no reports")
        return
    widths = {c: max(len(c), *(_width(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(_pad(str(row[c]), widths[c]) for c in columns).rstrip())


def _width(text: str) -> int:
    # CJK characters take two terminal columns.
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for ch in text if ord(ch) > 0x2E7F)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def cmd_history(args: argparse.Namespace) -> int:
    from dispatcher.app import open_store
    from dispatcher.store.ledger import Ledger

    config = load(args)
    if args.report_id is not None:
        config.report(args.report_id)  # unknown id: a clear error, not an empty table
    with open_store(config) as store:
        assert store is not None
        runs = Ledger(store).history(args.report_id, limit=max(args.limit, 1))
        events = alert_events(store, runs)
    if args.json:
        rows = [_history_json(config, r, events) for r in runs]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not runs:
        print(f"report {args.report_id!r} has no runs yet" if args.report_id else "no runs yet")
        return 0
    table = [_history_row(config, r) | {"alert": events.get((r.report_id, r.fire_time), "")} for r in runs]
    _print_table(table, ["fire_time", "report", "state", "trigger", *(["alert"] if events else []),
                 "attempts", "rows", "bytes", "recipients", "error"])  # fmt: skip
    return 0


def _history_json(config: Config, run: Run, events: dict[tuple[str, datetime], str]) -> dict[str, Any]:
    event = events.get((run.report_id, run.fire_time))
    return (
        run.to_dict() | {"fire_time": _in_zone(config, run).isoformat()} | ({"alert": event} if event else {})
    )


def _in_zone(config: Config, run: Run) -> datetime:
    """A run's fire time in its report's zone (the config's, for a report no longer configured)."""
    from dispatcher.schedule import to_zone

    report = config.reports.get(run.report_id)
    return run.fire_time.astimezone(to_zone(config.report_timezone(report) if report else config.timezone))


def _history_row(config: Config, run: Run) -> dict[str, Any]:
    error = " ".join((run.error or "").split())
    return {
        "fire_time": _in_zone(config, run).isoformat(),
        "report": run.report_id,
        "state": run.state,
        "trigger": run.trigger,
        "attempts": run.attempts,
        "rows": "" if run.rows is None else run.rows,
        "bytes": "" if run.msg_bytes is None else run.msg_bytes,
        "recipients": _recipients(run),
        "error": error[:80] + ("…" if len(error) > 80 else ""),
    }


def _recipients(run: Run) -> str | int:
    """The userids reached, and the departments sent to, whose members DingTalk does not count."""
    from dispatcher.words import reach

    accepted = run.batches.get("accepted", [])
    depts = list(dict.fromkeys(int(d) for b in accepted for d in b.get("dept_ids", [])))
    if run.recipients is None:
        return ""
    return reach(run.recipients, depts, short=True) if depts else run.recipients


def _state(config: Config) -> AbstractContextManager[StateStore | None]:
    """The state store if it exists, without importing the app (the DingTalk client, sources,
    render: a fifth of `list`'s time at 5,000 reports, bench scenario 7)."""
    from dispatcher.store.db import open_state

    return open_state(config.base_dir, config.state, create=False)
