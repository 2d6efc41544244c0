"""The command line: parse arguments, call one function, turn DispatcherError into exit code 1.

Exit codes: 0 success, 1 a user error (bad config, failed query, refused delivery), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatcher.cli_common import instant, load, prepare_report, print_message
from dispatcher.errors import DispatcherError
from dispatcher.words import plural

if TYPE_CHECKING:
    from typing import TypeAlias

    from dispatcher.config import Config
    from dispatcher.errors import Problem
    from dispatcher.prepare import Prepared
    from dispatcher.store.ledger import Run

    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

Handler = Callable[[argparse.Namespace], int]


def _iso_instant(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO-8601 time, e.g. 2026-11-28T09:00 or 2026-11-28T09:00:00+08:00"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dispatcher",
        description="Scheduled SQL reports delivered as DingTalk work notifications.",
    )
    parser.add_argument("-V", "--version", action="version", version=_version())
    _add_config_option(parser, default=Path("reports.yaml"))
    # The same option after the command; SUPPRESS keeps a value given before the command.
    common = argparse.ArgumentParser(add_help=False)
    _add_config_option(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_validate(sub, common)
    _add_list(sub, common)
    _add_preview(sub, common)
    _add_send(sub, common)
    _add_sandbox(sub, common)
    _add_run(sub, common)
    _add_history(sub, common)
    _add_backfill(sub, common)
    _add_resend(sub, common)
    _add_quota(sub, common)
    _add_demo(sub, common)
    _add_init(sub)
    _add_schema(sub)
    _add_doctor(sub, common)
    return parser


def _add_config_option(parser: argparse.ArgumentParser, default: Any) -> None:
    """`-c` works before or after the command: `dispatcher -c FILE list` = `dispatcher list -c FILE`."""
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=default,
        metavar="PATH",
        help="the reports file (default: ./reports.yaml)",
    )


def _add_validate(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("validate", parents=[common], help="check reports.yaml and print every problem")
    p.set_defaults(handler=cmd_validate)


def _add_list(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("list", parents=[common], help="show every report and its next fire time")
    p.add_argument(
        "--at",
        type=_iso_instant,
        metavar="ISO-8601",
        help="show fire times after this instant (default: now; no offset = the config's timezone)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(handler=cmd_list)


def _add_preview(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "preview",
        parents=[common],
        help="run a report's query and print its message; sends nothing",
    )
    p.add_argument("report_id", metavar="REPORT_ID")
    p.add_argument(
        "--at",
        type=_iso_instant,
        metavar="ISO-8601",
        help="preview the run due at the last fire time at or before this instant (default: now)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument(
        "--as",
        dest="as_value",
        metavar="VALUE",
        help="split_by reports: the message of the recipient whose split_by value is VALUE",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="also write each message's JSON, the chart PNG and the attachment into DIR",
    )
    p.set_defaults(handler=cmd_preview)


def _add_send(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("send", parents=[common], help="run one report now and deliver it")
    p.add_argument("report_id", metavar="REPORT_ID")
    p.add_argument(
        "--at",
        type=_iso_instant,
        metavar="ISO-8601",
        help="send the run due at the last fire time at or before this instant (default: now)",
    )
    p.add_argument(
        "--to",
        nargs="+",
        metavar="USERID|MOBILE",
        help="send to these people instead of the report's recipients (a test send)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="resolve the recipients and print what would be sent"
    )
    p.add_argument(
        "--sandbox", action="store_true", help="start a DingTalk sandbox in this process and deliver there"
    )
    p.add_argument(
        "--robot",
        action="append",
        metavar="NAME",
        help="send only to this group robot (repeatable), not to the report's recipients",
    )
    p.set_defaults(handler=cmd_send)


def _add_sandbox(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    # -c is accepted (and unused) so one shell alias with -c serves every command.
    p = sub.add_parser(
        "sandbox", parents=[common], help="run a local DingTalk-compatible server with an inbox page"
    )
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default: 8765)")
    p.add_argument("--latency", type=float, metavar="SECONDS", help="delay added to every API call")
    p.add_argument("--token-ttl", type=float, metavar="SECONDS", help="access token lifetime (default: 7200)")
    p.add_argument(
        "--fail-rate", type=float, metavar="SHARE", help="share of API calls answered with HTTP 500"
    )
    p.add_argument(
        "--reset-rate", type=float, metavar="SHARE", help="share of API calls whose connection is reset"
    )
    p.add_argument(
        "--throttle-first", type=int, metavar="N", help="answer the first N calls with errcode 90018"
    )
    p.add_argument(
        "--directory", metavar="FILE", help="extra users (JSON list or CSV) for the sandbox's directory"
    )
    p.set_defaults(handler=cmd_sandbox)


def _add_run(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("run", parents=[common], help="run the daemon: push every report on its schedule")
    p.add_argument(
        "--sandbox",
        action="store_true",
        help="deliver to a built-in DingTalk sandbox and print its inbox address",
    )
    p.add_argument(
        "--sandbox-port",
        type=int,
        default=8765,
        metavar="PORT",
        help="the sandbox's port on 127.0.0.1 (default: 8765; 0 picks a free one)",
    )
    p.add_argument(
        "--health-port",
        type=int,
        metavar="PORT",
        help="serve GET /healthz and GET /metrics on 127.0.0.1:PORT",
    )
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="one line per event: text (default) or json",
    )
    p.set_defaults(handler=cmd_run)


def _add_history(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("history", parents=[common], help="show the run ledger, newest first")
    p.add_argument("report_id", nargs="?", metavar="REPORT_ID", help="only this report")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="rows to show (default: 20)")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(handler=cmd_history)


def _add_backfill(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "backfill", parents=[common], help="run every fire time of a report in a date range, in order"
    )
    p.add_argument("report_id", metavar="REPORT_ID")
    p.add_argument("--from", dest="start", type=date.fromisoformat, required=True, metavar="YYYY-MM-DD",
                   help="the first day (in the report's time zone)")  # fmt: skip
    p.add_argument("--to", dest="end", type=date.fromisoformat, required=True, metavar="YYYY-MM-DD",
                   help="the last day, included")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print what each fire time would do; send nothing")
    p.add_argument("--force", action="store_true", help="send fire times already sent again")
    p.set_defaults(handler=cmd_backfill)


def _add_resend(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "resend", parents=[common], help="send a run's recorded message again to whoever missed it"
    )
    p.add_argument("report_id", metavar="REPORT_ID")
    p.add_argument("--fire-time", type=_iso_instant, required=True, metavar="ISO-8601",
                   help="the run's fire time (no offset = the report's time zone)")  # fmt: skip
    p.add_argument("--only", choices=["failed", "unread"], default="failed",
                   help="whose receipts said failed (default) or unread")  # fmt: skip
    p.set_defaults(handler=cmd_resend)


def _add_quota(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "quota", parents=[common], help="DingTalk API calls used this month, and the month's forecast"
    )
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(handler=cmd_quota)


def _add_demo(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", help="the demo shop database")
    demo_sub = p.add_subparsers(dest="demo_command", metavar="ACTION", required=True)
    loader = demo_sub.add_parser("load", parents=[common], help="load the demo shop data into a database")
    loader.add_argument(
        "--source",
        required=True,
        metavar="URL|NAME",
        help="a SQLAlchemy URL, or a source name from the config",
    )
    loader.add_argument(
        "--end",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="the data's last day (default: today in the config's timezone)",
    )
    loader.add_argument(
        "--replace", action="store_true", help="drop and reload the demo tables if they exist"
    )
    loader.set_defaults(handler=cmd_demo_load)


def _add_init(sub: Subcommands) -> None:
    p = sub.add_parser("init", help="create a minimal working project: reports.yaml, queries/, .env.example")
    p.add_argument("folder", nargs="?", type=Path, default=Path("."), metavar="DIR",
                   help="where (default: the current folder)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="overwrite an existing reports.yaml")
    p.set_defaults(handler=cmd_init)


def _add_schema(sub: Subcommands) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of reports.yaml (for editors)")
    p.set_defaults(handler=cmd_schema)


def _add_doctor(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("doctor", parents=[common], help="check a deployment before going live")
    p.add_argument("--json", action="store_true", help="print the checks as a JSON array")
    p.add_argument(
        "--send-test", action="store_true", help="also send one short test message to the admins group"
    )
    p.set_defaults(handler=cmd_doctor)


def _version() -> str:
    from dispatcher import __version__

    return f"dispatcher {__version__}"


def cmd_validate(args: argparse.Namespace) -> int:
    from dispatcher.config import check_config

    warnings: list[Problem] = []
    config, problems = check_config(args.config, warnings=warnings)
    for warning in warnings:
        print(f"warning    {warning}")
    if problems or config is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        count = len(problems)
        print(f"{count} problem{'s' if count != 1 else ''} found in {args.config}", file=sys.stderr)
        return 1
    print(
        f"{args.config}: OK: {plural(len(config.reports), 'report')}, "
        f"{plural(len(config.sources), 'source')}, {plural(len(config.recipients), 'recipient group')}"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from dispatcher.cli_views import alert_states
    from dispatcher.prepare import next_fire_time

    config = load(args)
    at = instant(config, args.at)
    last = _last_runs(config)
    alerts = alert_states(config, at)
    rows: list[dict[str, Any]] = [
        {
            "id": report.id,
            "title": report.title,
            "schedule": report.parsed_schedule().expression,
            "timezone": config.report_timezone(report),
            "source": report.source,
            "enabled": report.enabled,
            "next_fire_time": next_fire_time(config, report, at).isoformat(),
            "last_run": last[report.id].to_dict() if report.id in last else None,
            **({"alert": alerts.get(report.id, "ok")} if report.alert is not None else {}),
        }
        for report in config.reports.values()
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for row in rows:
            row["last_state"] = (row["last_run"] or {}).get("state", "-")
        alert_column = ["alert"] if alerts or any(r.alert for r in config.reports.values()) else []
        for row in rows:
            row.setdefault("alert", "-")
        _print_table(
            rows, ["id", "schedule", "timezone", "next_fire_time", "last_state", *alert_column, "title"]
        )
    return 0


def _last_runs(config: Config) -> dict[str, Run]:
    """Each report's latest ledger row, if there is a state store yet (list never creates one)."""
    from dispatcher.app import open_store
    from dispatcher.store.ledger import Ledger

    with open_store(config, create=False) as store:
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
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def cmd_preview(args: argparse.Namespace) -> int:
    from dispatcher.cli_views import as_recipient
    from dispatcher.prepare import fire_time_at

    config = load(args)
    report = config.report(args.report_id)
    prepared = prepare_report(config, report, fire_time_at(config, report, instant(config, args.at)))
    if args.as_value is not None:
        prepared = as_recipient(prepared, args.as_value)
    from dispatcher.cli_robots import group_previews, print_groups

    out = preview_dict(prepared)
    groups = group_previews(config, prepared)
    if args.json:
        print(json.dumps(out | ({"robots": groups} if groups else {}), ensure_ascii=False, indent=2))
    else:
        _print_preview(out, config.dingtalk.max_msg_bytes)
        print_groups(groups)
    if args.out is not None:
        from dispatcher.preview_parts import write_preview

        for path in write_preview(prepared, args.out):
            print(f"wrote      {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def preview_dict(prepared: Prepared) -> dict[str, Any]:
    from dispatcher.preview_parts import parts_listing
    from dispatcher.split import summary

    rendered = prepared.rendered
    slicing = prepared.slicing
    extra = {"slices": summary(slicing), "empty_rows": slicing.empty_rows} if slicing is not None else {}
    return extra | {
        "id": prepared.report.id,
        "title": rendered.title if rendered else prepared.report.title,
        "fire_time": prepared.fire_time.isoformat(),
        "params": prepared.params,
        "rows": prepared.result.rows,
        "truncated": bool(prepared.result.truncated or (rendered and rendered.truncated)),
        "action": prepared.action,
        "msgtype": rendered.msg["msgtype"] if rendered else None,
        "markdown": rendered.markdown if rendered else None,
        "msg": rendered.msg if rendered else None,
        "msg_bytes": rendered.msg_bytes if rendered else 0,
        "rows_shown": rendered.rows_shown if rendered else 0,
        "parts": parts_listing(prepared),
        "warnings": list(prepared.rich.warnings) if prepared.rich else [],
    }


def _print_preview(out: dict[str, Any], limit: int) -> None:
    print(f"report     {out['id']}")
    print(f"fire time  {out['fire_time']}")
    print(f"params     {json.dumps(out['params'], ensure_ascii=False)}")
    print(f"rows       {out['rows']}{' (truncated)' if out['truncated'] else ''}")
    if out["action"] == "skip":
        print("result     no rows and on_empty is 'skip': this run would send nothing")
        return
    print(f"message    {out['msgtype']}, {out['msg_bytes']} of {plural(limit, 'byte')}, "
          f"{plural(out['rows_shown'], 'row')} shown")  # fmt: skip
    print(f"title      {out['title']}")
    if "slices" in out:
        print(f"slices     {plural(len(out['slices']), 'recipient')}, {out['empty_rows']} rows without one; "
              "--as VALUE shows one recipient's message")  # fmt: skip
        print("           below: the whole report (without to:, the largest slice)")
    for part in [p for p in out["parts"] if p["unit"] or p["files"]]:
        files = ", ".join(f"{f['name']} ({plural(f['bytes'], 'byte')})" for f in part["files"])
        print(f"part       {part['msgtype']}, {plural(part['msg_bytes'], 'byte')}: {files}")
    for warning in out["warnings"]:
        print(f"warning    {warning}")
    print_message(out["markdown"])


def cmd_send(args: argparse.Namespace) -> int:
    from dispatcher.cli_send import cmd_send as send

    return send(args)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from dispatcher.sandbox.options import SandboxOptions, changed, from_env
    from dispatcher.sandbox.server import serve_forever

    flags = {
        "latency": args.latency,
        "token_ttl": args.token_ttl,
        "fail_rate": args.fail_rate,
        "reset_rate": args.reset_rate,
        "throttle_first": args.throttle_first,
        "directory_file": args.directory,
    }
    changes = {**from_env(dict(os.environ)), **{k: v for k, v in flags.items() if v is not None}}
    serve_forever(changed(SandboxOptions(), changes), port=args.port)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from dispatcher.daemon import DaemonOptions, run_daemon

    options = DaemonOptions(
        config_path=args.config,
        sandbox=args.sandbox,
        sandbox_port=args.sandbox_port,
        health_port=args.health_port,
        log_format=args.log_format,
    )
    return run_daemon(options)


def cmd_history(args: argparse.Namespace) -> int:
    from dispatcher.app import open_store
    from dispatcher.cli_views import alert_events
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


def cmd_backfill(args: argparse.Namespace) -> int:
    from dispatcher.cli_backfill import cmd_backfill as backfill

    return backfill(args)


def cmd_resend(args: argparse.Namespace) -> int:
    from dispatcher.cli_backfill import cmd_resend as resend

    return resend(args)


def cmd_quota(args: argparse.Namespace) -> int:
    from dispatcher.app import open_store
    from dispatcher.quota import forecast, forecast_text
    from dispatcher.schedule import to_zone
    from dispatcher.store.apicalls import ApiCounter

    config = load(args)
    with open_store(config) as store:
        assert store is not None
        result = forecast(config, ApiCounter(store, to_zone(config.timezone), config.dingtalk.monthly_quota))
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) if args.json else forecast_text(result))
    return 0


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
        "recipients": "" if run.recipients is None else run.recipients,
        "error": error[:80] + ("…" if len(error) > 80 else ""),
    }


def cmd_demo_load(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from dispatcher.demo import load_demo
    from dispatcher.store.db import resolve_sqlite_url

    url, end = args.source, args.end
    if "://" not in url or end is None:
        config = load(args)
        if "://" not in url:
            if url not in config.sources:
                raise DispatcherError(
                    f"no source named {url!r}", hint="pass a SQLAlchemy URL or a name from sources:"
                )
            url = resolve_sqlite_url(config.sources[url], config.base_dir)
        end = end or instant(config, None).date()
    try:
        engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise DispatcherError(
            f"cannot use that URL: {exc}",
            hint="PostgreSQL needs dispatcher[postgres], MySQL dispatcher[mysql]",
        ) from None
    try:
        counts = load_demo(engine, end, replace=args.replace)
    finally:
        engine.dispose()
    print(f"loaded the demo shop up to {end}: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from dispatcher.init import init_project, next_steps

    print(next_steps(init_project(args.folder, force=args.force)))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from dispatcher.config_schema import dumps, generate

    sys.stdout.write(dumps(generate()))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from dispatcher.doctor import doctor

    return doctor(args.config, as_json=args.json, send_test=args.send_test)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except DispatcherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a traceback for the user; DISPATCHER_DEBUG=1 shows it
        if os.environ.get("DISPATCHER_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("  hint: rerun with DISPATCHER_DEBUG=1 and report the traceback", file=sys.stderr)
        return 1
