"""`dispatcher backfill` and `dispatcher resend`: re-running the past, through the ledger.

Exit 1 when a backfilled run did not end sent (or skipped: no rows), or a resend was refused.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from dispatcher.cli.common import load
from dispatcher.errors import DeliveryError
from dispatcher.words import plural

if TYPE_CHECKING:
    from dispatcher.config.model import Config, Report
    from dispatcher.run.backfill import Range

OK_STATES = ("sent", "skipped", "suppressed")


def cmd_backfill(args: argparse.Namespace) -> int:
    from dispatcher import clock
    from dispatcher.run import backfill

    config = load(args)
    report = config.report(args.report_id)
    fires = backfill.fire_times(config, report, args.start, args.end, clock.now())
    if args.dry_run:
        _dry_run(config, report, fires, args.force)
        return 0
    from dispatcher.app import default_owner, open_app

    with open_app(config, owner=f"backfill@{default_owner()}") as app:
        progress = backfill.Progress(len(fires.due), sys.stdout.isatty(), sys.stdout.write)
        steps = backfill.run_all(app.services(), report, fires.due, force=args.force, on_step=progress)
    print(backfill.summary(steps, fires))
    return 0 if all(s.outcome in OK_STATES for s in steps if s.ran) else 1


def _dry_run(config: Config, report: Report, fires: Range, force: bool) -> None:
    from dispatcher.app import open_sources, open_store
    from dispatcher.run import backfill
    from dispatcher.run.prepare import prepare
    from dispatcher.store.ledger import Ledger

    with open_store(config, create=False) as store, open_sources(config) as sources:
        ledger = Ledger(store) if store is not None else None
        for fire, verdict in backfill.plan(ledger, report.id, fires.due, force):
            if verdict.startswith("kept"):
                print(f"{fire.isoformat()}  {verdict}")
                continue
            prepared = prepare(config, sources, report, fire)
            print(f"{fire.isoformat()}  {verdict}: {_would(prepared)}")
    print(f"dry run: {plural(len(fires.due), 'fire time')}{fires.left()}; nothing was sent or recorded")


def _would(prepared: object) -> str:
    from dispatcher.run.prepare import Prepared

    assert isinstance(prepared, Prepared)
    rows = plural(prepared.result.rows, "row")
    if prepared.rendered is None:
        return f"{rows}, nothing to send (on_empty {prepared.report.on_empty})"
    slices = f", {plural(len(prepared.slicing.slices), 'slice')}" if prepared.slicing is not None else ""
    return f"would send {rows}, {plural(prepared.rendered.msg_bytes, 'byte')}{slices}"


def cmd_resend(args: argparse.Namespace) -> int:
    from dispatcher.app import open_app
    from dispatcher.run.resend import resend

    config = load(args)
    report = config.report(args.report_id)
    fire = (
        args.fire_time if args.fire_time.tzinfo else args.fire_time.replace(tzinfo=config.report_zone(report))
    )
    with open_app(config) as app:
        result = resend(app.client, app.ledger, report, fire, args.only, config.dingtalk.max_msg_bytes)
    for line in result.lines():
        print(line)
    if result.refused:
        raise DeliveryError(f"the resend was refused for {plural(result.refused, 'recipient')}")
    return 0
