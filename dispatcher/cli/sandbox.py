"""`--sandbox` on the commands that deliver (send, backfill, resend, doctor) and those that read
the ledger (history, list, resend, quota): the options, and the app they open.

Delivering commands use the sandbox the user already runs (`dispatcher sandbox` or `run --sandbox`)
when one answers, and say on stderr which sandbox they used (dispatcher.sandbox.attach). Every
sandbox command keeps its runs in the project's `.dispatcher/sandbox.db`, apart from production's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatcher.app import App
    from dispatcher.config.model import Config

READ_HELP = "the sandbox's runs (.dispatcher/sandbox.db beside the config), not production's"


def add_delivery_options(parser: argparse.ArgumentParser, what: str = "deliver") -> None:
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help=f"{what} to the running DingTalk sandbox (dispatcher sandbox / run --sandbox), else to one "
        "started for this command; runs are kept in .dispatcher/sandbox.db",
    )
    parser.add_argument(
        "--sandbox-url",
        metavar="URL",
        help="the running sandbox to use (default: http://127.0.0.1:8765, or DISPATCHER_SANDBOX_PORT); "
        "implies --sandbox",
    )


def add_read_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sandbox", action="store_true", help=READ_HELP)


def wants_sandbox(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "sandbox", False) or getattr(args, "sandbox_url", None))


@contextmanager
def command_app(config: Config, args: argparse.Namespace, **kwargs: Any) -> Iterator[App]:
    """The app of a delivering command: with --sandbox, the running sandbox's or a new one's."""
    from dispatcher.app import open_app

    sandbox = wants_sandbox(args)
    url = getattr(args, "sandbox_url", None)
    with open_app(config, sandbox=sandbox, find_sandbox=True, sandbox_url=url, **kwargs) as app:
        if app.sandbox_note:
            print(app.sandbox_note, file=sys.stderr, flush=True)
        yield app


def sandbox_line(app: App) -> str | None:
    """`send`'s line about where the inbox is, or None outside the sandbox."""
    if app.sandbox is None:
        return None
    if getattr(app.sandbox, "remote", False):
        return f"sandbox    {app.sandbox.url}/ (the running sandbox; the message stays in its inbox)"
    return f"sandbox    {app.sandbox.url}/ (in this process; it stops when the command exits)"
