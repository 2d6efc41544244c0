"""What every CLI command shares: loading the config, the instant it works at, one report's message.

Its own module so that `cli` and the commands split out of it (`cli_send`) both import it and never
each other.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dispatcher.cli.progress import Progress
    from dispatcher.config.model import Config, Report
    from dispatcher.run.prepare import Prepared


def load(args: argparse.Namespace) -> Config:
    from dispatcher.config.check import load_config

    return load_config(args.config)


def instant(config: Config, at: datetime | None) -> datetime:
    """`--at` (a time without an offset is in the config's zone), or now."""
    from dispatcher import clock
    from dispatcher.schedule import to_zone

    if at is None:  # prepare.now_in, without importing prepare (sources, SQLAlchemy) for `list`
        return clock.now().astimezone(to_zone(config.timezone))
    return at if at.tzinfo else at.replace(tzinfo=to_zone(config.timezone))


def prepare_report(
    config: Config, report: Report, fire: datetime, progress: Progress | None = None
) -> Prepared:
    """Query and render `report` as its run at `fire` would, on sources opened for this command;
    `progress` shows the query and the rendering as they start."""
    from dispatcher.app import open_sources
    from dispatcher.run.prepare import prepare
    from dispatcher.words import plural

    def on_rows(rows: int) -> None:
        if progress is not None:
            progress.stage("render", f"{plural(rows, 'row')}, rendering the message…")

    if progress is not None:
        progress.stage("query", f"running the query on source {report.source!r}…")
    with open_sources(config) as sources:
        prepared = prepare(config, sources, report, fire, on_rows)
    if progress is not None:
        progress.clear()
    return prepared


def print_message(markdown: str) -> None:
    print("-" * 60)
    print(markdown)
    print("-" * 60)
