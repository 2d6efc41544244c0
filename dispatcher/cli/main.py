"""The command line: parse arguments, call one function, turn DispatcherError into exit code 1.

Exit codes: 0 success, 1 a user error (bad config, failed query, refused delivery), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The commands' handlers; each imports what it needs when it runs, so `validate` stays quick.
from dispatcher.cli.arguments import backfill_day, iso_instant
from dispatcher.cli.backfill import cmd_backfill, cmd_resend
from dispatcher.cli.ops import (
    cmd_demo_load,
    cmd_doctor,
    cmd_init,
    cmd_quota,
    cmd_run,
    cmd_sandbox,
    cmd_schema,
    cmd_state_backup,
    cmd_validate,
    log_tz,
)
from dispatcher.cli.preview import cmd_preview
from dispatcher.cli.sandbox import add_delivery_options, add_read_option
from dispatcher.cli.schedule import NEXT_MAX, cmd_cron, next_count
from dispatcher.cli.send import cmd_send
from dispatcher.cli.views import cmd_history, cmd_list
from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from typing import TypeAlias

    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

Handler = Callable[[argparse.Namespace], int]
# The CLI reference, relative to a checkout until the manual is published.
MANUAL = "docs/reference/cli.md"


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
    _add_cron(sub, common)
    _add_preview(sub, common)
    _add_send(sub, common)
    _add_sandbox(sub, common)
    _add_run(sub, common)
    _add_history(sub, common)
    _add_backfill(sub, common)
    _add_resend(sub, common)
    _add_quota(sub, common)
    _add_demo(sub, common)
    _add_state(sub, common)
    _add_init(sub)
    _add_schema(sub)
    _add_doctor(sub, common)
    _point_at_the_manual(parser, "")
    return parser


def _point_at_the_manual(parser: argparse.ArgumentParser, command: str) -> None:
    """End every --help with its page in the manual: `docs/reference/cli.md#demo-load` for `demo load`."""
    parser.epilog = f"manual: {MANUAL}" + (f"#{command.replace(' ', '-')}" if command else "")
    for sub in (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)):
        for name, child in sub.choices.items():
            _point_at_the_manual(child, f"{command} {name}".strip())


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
    p.add_argument("report_id", nargs="?", metavar="REPORT_ID", help="only this report")
    p.add_argument(
        "--at",
        type=iso_instant,
        metavar="ISO-8601",
        help="show fire times after this instant (default: now; no offset = the config's timezone)",
    )
    p.add_argument("--next", type=next_count, metavar="N",
                   help=f"with REPORT_ID: its next N fire times (1-{NEXT_MAX})")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print a JSON array")
    add_read_option(p)
    p.set_defaults(handler=cmd_list)


def _add_cron(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    # -c is accepted (and unused) so one shell alias with -c serves every command.
    p = sub.add_parser(
        "cron", parents=[common], help="explain a cron line in words and print its next fire times"
    )
    p.add_argument("expression", metavar="EXPR", help="a 5-field cron line or @daily, @hourly, ...")
    p.add_argument(
        "--tz", metavar="ZONE", help="an IANA time zone (default: Asia/Shanghai, as in reports.yaml)"
    )
    p.add_argument("--next", type=next_count, default=5, metavar="N",
                   help=f"how many fire times to print (default: 5, at most {NEXT_MAX})")  # fmt: skip
    p.add_argument("--at", type=iso_instant, metavar="ISO-8601",
                   help="fire times after this instant (default: now; no offset = --tz)")  # fmt: skip
    p.set_defaults(handler=cmd_cron)


def _add_preview(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "preview",
        parents=[common],
        help="run a report's query and print its message; sends nothing",
    )
    p.add_argument("report_id", metavar="REPORT_ID")
    p.add_argument(
        "--at",
        type=iso_instant,
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
        type=iso_instant,
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
    add_delivery_options(p)
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
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: 8765, or DISPATCHER_SANDBOX_PORT)")
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
        help="deliver to the DingTalk sandbox already on its port (dispatcher sandbox), else to a built-in"
        " one, and print its inbox address",
    )
    p.add_argument(
        "--sandbox-port",
        type=int,
        metavar="PORT",
        help="the sandbox's port on 127.0.0.1 (default: 8765, or DISPATCHER_SANDBOX_PORT; 0 picks one)",
    )
    p.add_argument(
        "--health-port",
        type=int,
        metavar="PORT",
        help="serve GET /healthz and GET /metrics on PORT",
    )
    p.add_argument(
        "--health-host",
        metavar="HOST",
        help="the address --health-port listens on (default: $DISPATCHER_HEALTH_HOST, else 127.0.0.1; "
        "0.0.0.0 in a container or pod)",
    )
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="one line per event: text (default) or json",
    )
    p.add_argument(
        "--log-tz",
        type=log_tz,
        default="UTC",
        metavar="ZONE",
        help="timestamps in this IANA zone, or 'report' for each event's report zone (default: UTC)",
    )
    p.set_defaults(handler=cmd_run)


def _add_history(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("history", parents=[common], help="show the run ledger, newest first")
    p.add_argument("report_id", nargs="?", metavar="REPORT_ID", help="only this report")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="rows to show (default: 20)")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    add_read_option(p)
    p.set_defaults(handler=cmd_history)


def _add_backfill(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "backfill", parents=[common], help="run every fire time of a report in a date range, in order"
    )
    p.add_argument("report_id", metavar="REPORT_ID")
    p.add_argument("--from", dest="start", type=backfill_day, required=True, metavar="YYYY-MM-DD",
                   help="the first day (in the report's time zone)")  # fmt: skip
    p.add_argument("--to", dest="end", type=backfill_day, required=True, metavar="YYYY-MM-DD",
                   help="the last day, included")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print what each fire time would do; send nothing")
    p.add_argument("--force", action="store_true", help="send fire times already sent again")
    add_delivery_options(p)
    p.set_defaults(handler=cmd_backfill)


def _add_resend(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "resend", parents=[common], help="send a run's recorded message again to whoever missed it"
    )
    p.add_argument("report_id", metavar="REPORT_ID")
    p.add_argument("--fire-time", type=iso_instant, required=True, metavar="ISO-8601",
                   help="the run's fire time (no offset = the report's time zone)")  # fmt: skip
    p.add_argument("--only", choices=["failed", "unread"], default="failed",
                   help="whose receipts said failed (default) or unread")  # fmt: skip
    add_delivery_options(p, "resend a sandbox run")
    p.set_defaults(handler=cmd_resend)


def _add_quota(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "quota", parents=[common], help="DingTalk API calls used this month, and the month's forecast"
    )
    p.add_argument("--json", action="store_true", help="print a JSON object")
    add_read_option(p)
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


def _add_state(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("state", help="the state store: back it up")
    state_sub = p.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    backup = state_sub.add_parser(
        "backup", parents=[common], help="copy a SQLite state store to FILE, safely while the daemon runs"
    )
    backup.add_argument("file", type=Path, metavar="FILE", help="the new backup file (never overwritten)")
    backup.set_defaults(handler=cmd_state_backup)


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
    add_delivery_options(p, "check against and --send-test")
    p.set_defaults(handler=cmd_doctor)


def _version() -> str:
    from dispatcher import version

    return f"dispatcher {version()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if isinstance(getattr(args, "config", None), Path):
            from dispatcher.config.environment import load_dotenv

            load_dotenv(args.config.expanduser().parent)
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
