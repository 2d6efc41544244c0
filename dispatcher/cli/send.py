"""`dispatcher send`: one report now, recorded in history as a manual run, its outcome told plainly.

Exit 1 whenever the message did not reach everyone it was meant for: refused, partial, dropped as
duplicate content, or reaching nobody per the receipts.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dispatcher.cli.common import instant, load, prepare_report, print_message
from dispatcher.cli.progress import Progress
from dispatcher.errors import CredentialsError, DeliveryError, DispatcherError
from dispatcher.words import plural, reach

if TYPE_CHECKING:
    from dispatcher.app import App
    from dispatcher.config.model import Config, Report
    from dispatcher.dingtalk.client import DeliveryResult, DingTalkClient
    from dispatcher.run.delivery import Outcome, Recipients
    from dispatcher.run.prepare import Prepared
    from dispatcher.store.ledger import Ledger, RunState

Finish = Callable[..., None]
RobotEntries = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def cmd_send(args: argparse.Namespace) -> int:
    from dispatcher.cli.robots import check_robot_names
    from dispatcher.cli.sandbox import command_app, sandbox_line, wants_sandbox
    from dispatcher.run.delivery import credentials_from, recipients_for, recipients_from_cli
    from dispatcher.run.prepare import fire_time_at

    config = load(args)
    report = config.report(args.report_id)
    chosen = list(getattr(args, "robot", None) or [])
    check_robot_names(config, chosen)
    recipients = recipients_from_cli(args.to) if args.to else recipients_for(config, report.to)
    # --robot sends to those robots only; --to is a test send to people, without the groups.
    channels = _Channels(work=not chosen and bool(args.to or report.to),
                         robots=chosen or ([] if args.to else list(report.robots)))  # fmt: skip
    fire = fire_time_at(config, report, instant(config, args.at))
    split = report.split_by is not None and not args.to and not chosen  # --to: a test send
    if args.dry_run and not wants_sandbox(args) and _missing_credentials(credentials_from, config):
        return _offline_dry_run(config, report, fire, recipients, split=split)
    # Credentials are checked before the query runs: a missing variable fails fast.
    with command_app(config, args) as app:
        print(f"report     {report.id} (fire time {fire.isoformat()})")
        if sandbox_line(app):
            print(sandbox_line(app))
        if args.dry_run:
            prepared = _prepare_or_skip(config, report, fire)
            if prepared is not None:
                _print_dry_run(app.client, prepared, recipients, split=split)
            return 0
        ledger = app.ledger  # a sandbox app's is the sandbox's own (.dispatcher/sandbox.db)
        progress = Progress()
        app.client.on_receipt_wait = progress.waiting
        try:
            _send_recorded(config, report, fire, app, recipients, ledger, channels, progress, split=split)
        finally:
            progress.clear()  # an error's message starts on a line of its own
    return 0


@dataclass(frozen=True)
class _Channels:
    work: bool  # the work notification to the recipients
    robots: list[str]


def _missing_credentials(credentials_from: Callable[[Config], object], config: Config) -> bool:
    try:
        credentials_from(config)
    except CredentialsError:
        return True
    return False


def _prepare_or_skip(
    config: Config, report: Report, fire: datetime, progress: Progress | None = None
) -> Prepared | None:
    prepared = prepare_report(config, report, fire, progress)
    if prepared.rendered is None:
        print("result     no rows and on_empty is 'skip': nothing to send")
        return None
    rendered = prepared.rendered
    print(
        f"message    {rendered.msg['msgtype']}, {plural(rendered.msg_bytes, 'byte')}, "
        f"{plural(prepared.result.rows, 'row')}"
    )
    return prepared


def _send_recorded(
    config: Config,
    report: Report,
    fire: datetime,
    app: App,
    recipients: Recipients,
    ledger: Ledger | None,
    channels: _Channels,
    progress: Progress,
    *,
    split: bool = False,
) -> None:
    """Prepare, deliver and print; the ledger row (trigger manual) follows the run from start to end."""
    run = ledger.start_manual(report.id, fire, _owner()) if ledger is not None else None

    def finish(state: RunState, **fields: Any) -> None:
        if ledger is not None and run is not None:
            ledger.finish(run.id, state, trigger="manual", **fields)

    try:
        prepared = _prepare_or_skip(config, report, fire, progress)
        if prepared is None:
            finish("skipped", rows=0)
            return
        progress.stage("send", "sending to DingTalk…")
        if split:
            _send_split(app, prepared, finish, progress)
            return
        outcome = _deliver(app, prepared, recipients, progress) if channels.work else None
        entries = None
        if channels.robots:
            from dispatcher.cli.robots import send_to_robots

            # A manual send is its own message: its msgUuid must not collide with the daemon's run.
            salt = f"manual:{run.id}" if run is not None else f"manual:{secrets.token_hex(8)}"
            progress.stage("send", f"posting to {plural(len(channels.robots), 'group robot')}…")
            entries = send_to_robots(app, prepared, channels.robots, salt)
            progress.clear()
    except DispatcherError as exc:
        finish("failed", error=str(exc))
        raise
    except BaseException as exc:  # Ctrl-C or a bug: the row must not stay 'running' forever
        finish("failed", error=f"interrupted: {type(exc).__name__}")
        raise
    _record_and_judge(finish, prepared, outcome, entries)


def _send_split(app: App, prepared: Prepared, finish: Finish, progress: Progress) -> None:
    """split_by: each recipient their slice (and `to` the whole report), as the daemon sends it."""
    from dispatcher.run.split_delivery import Parts, deliver_split

    assert prepared.rendered is not None and prepared.slicing is not None
    parts = Parts(prepared.report, prepared.rendered.msg, prepared.slicing)
    outcome = deliver_split(app.client, app.config, [], parts, app.config.dingtalk.receipt_wait)
    progress.clear()
    slices = plural(len(prepared.slicing.slices), "slice")
    ids = ", ".join(map(str, outcome.task_ids))
    print(f"sent       {plural(outcome.recipients, 'recipient')}, {slices}; task ids {ids}")
    for note in outcome.notes:
        print(f"warning    {note}")
    _record_and_judge(finish, prepared, outcome)


def _deliver(app: App, prepared: Prepared, recipients: Recipients, progress: Progress) -> Outcome:
    from dispatcher.run.delivery import deliver, outcome_of

    assert prepared.rendered is not None
    if prepared.rich is not None:
        result, outcome = _deliver_rich(app, prepared, recipients, progress)
    else:
        result = deliver(app.client, prepared.rendered.msg, recipients, prepared.report.receipts)
        outcome = outcome_of(None, result)
    progress.clear()
    _print_result(result)
    if app.sandbox is not None:
        ours = [m for m in app.sandbox.messages() if m.get("task_id") in result.task_ids]  # not earlier ones
        names = sorted({f"{m['name']} ({m['userid']})" for m in ours})
        print(f"inbox      delivered to {', '.join(names) or 'nobody'}")
    return outcome


def _deliver_rich(
    app: App, prepared: Prepared, recipients: Recipients, progress: Progress
) -> tuple[DeliveryResult, Outcome]:
    """The text or card, then the chart, then the file (dispatcher.run.parts); uploads print their media."""
    from dataclasses import replace

    from dispatcher.run.parts import build_parts, deliver_parts, failed_parts, media_id_of, scope_of

    assert prepared.rendered is not None and prepared.rich is not None
    scope = scope_of(prepared.fire_time)  # the daemon's run of this fire time shares its uploads
    parts = build_parts(prepared.rendered.msg, prepared.rich, app.client.media_id, scope)
    progress.clear()
    print(f"parts      {', '.join(p.msg['msgtype'] for p in parts)}")
    for part in parts:
        if part.media is not None:  # each fire time has media_ids of its own: DingTalk drops a repeat
            _, name, content, _ = part.media
            print(f"media      {name} ({plural(len(content), 'byte')}): {media_id_of(part.msg)}")
    failed = failed_parts(prepared.rich)
    progress.stage("send", "sending to DingTalk…")
    result, outcome = deliver_parts(app.client, parts, recipients, prepared.report.receipts, failed=failed)
    for warning in [*prepared.rich.warnings, *(why for _, why in failed)]:
        print(f"warning    {warning}")
    return result, replace(outcome, notes=(*outcome.notes, *prepared.rich.warnings))


def _record_and_judge(
    finish: Finish, prepared: Prepared, outcome: Outcome | None, entries: RobotEntries | None = None
) -> None:
    from dispatcher.run.robots import merge

    assert prepared.rendered is not None
    if entries is not None:
        try:
            outcome = merge(outcome, None, *entries)
        except DeliveryError as exc:  # no channel accepted it
            finish(
                "failed",
                rows=prepared.result.rows,
                error=str(exc),
                batches={"accepted": [], "refused": entries[1]},
            )
            raise
    assert outcome is not None
    finish(
        outcome.state, rows=prepared.result.rows, msg_bytes=prepared.rendered.msg_bytes,
        recipients=outcome.recipients, task_ids=outcome.task_ids, receipts=outcome.counts,
        error=outcome.reason or "; ".join(outcome.notes) or None, batches=outcome.batches,
    )  # fmt: skip
    if outcome.state != "sent":
        raise DeliveryError(outcome.reason or outcome.state, hint=_HINTS[outcome.state])
    nobody = [n for n in outcome.notes if n.startswith("nobody received")]
    if nobody:
        hint = "check the recipients' userids and mobiles (see docs/delivering/send.md)"
        raise DeliveryError(nobody[0], hint=hint)


_HINTS = {
    "partial": "the recipients listed as refused did not get it; fix the cause and send again",
    "suppressed": "DingTalk sends the same content to a person once a day; change the message or wait",
}


def _owner() -> str:
    return f"send@{socket.gethostname()}:{os.getpid()}"


def _print_result(result: DeliveryResult) -> None:
    counts = result.counts()
    ids = ", ".join(map(str, result.task_ids))
    task_words = f"task id{'s' if len(result.task_ids) != 1 else ''} {ids}"
    if result.partial:
        total = result.recipients + sum(len(r.userids) for r in result.refused)
        print(f"partial    {result.recipients} of {plural(total, 'recipient')} in "
              f"{plural(result.batches, 'call')}; {task_words}")  # fmt: skip
        for refusal in result.refused:
            print(f"refused    {plural(len(refusal.userids), 'recipient')}: {refusal.message}")
    else:
        print(f"sent       {reach(result.recipients, result.dept_ids)} in {plural(result.batches, 'call')}; "
              f"{task_words}")  # fmt: skip
    forbidden = " ".join(f"{k.removeprefix('forbidden_')}:{v}" for k, v in counts.items() if k[10:] and v)
    print(
        f"receipts   unread {counts['unread']} · read {counts['read']} · invalid {counts['invalid']} · "
        f"forbidden {counts['forbidden']}{f' ({forbidden})' if forbidden else ''} · "
        f"failed {counts['failed']} · resent {counts['resent']}"
    )
    for problem in [*result.unresolved_mobiles, *result.warnings]:
        print(f"warning    {problem}")
    for note in result.notes:
        print(f"note       {note}")


def _print_dry_run(
    client: DingTalkClient, prepared: Prepared, recipients: Recipients, *, split: bool
) -> None:
    assert prepared.rendered is not None
    resolved, problems = client.resolve_mobiles(list(recipients.mobiles))
    _print_recipients(recipients, list(resolved.values()), problems, split=split)
    _print_split(prepared, split)
    _print_parts(prepared)
    print("dry run    nothing was sent; the message would be:")
    _print_markdown(prepared.rendered.markdown)


def _cached_userids(config: Config, mobiles: list[str]) -> dict[str, str]:
    """mobile -> userid from the state store's cache, without credentials or a call to DingTalk.

    Without an app key, any app's entry will do: the store normally serves one app. A dry run
    never creates a state store.
    """
    from dispatcher.app import open_store
    from dispatcher.dingtalk.client import USERID_MAX_AGE
    from dispatcher.store.userids import UseridCache

    if not mobiles:
        return {}
    with open_store(config, create=False) as store:
        if store is None:
            return {}
        cache = UseridCache(store)
        if config.dingtalk.app_key:
            return cache.get_userids(config.dingtalk.app_key, mobiles, USERID_MAX_AGE)
        return cache.get_any_app(mobiles, USERID_MAX_AGE)


def _offline_dry_run(
    config: Config, report: Report, fire: datetime, recipients: Recipients, *, split: bool
) -> int:
    """No credentials: resolve mobiles from the userid cache only, and say which are left."""
    from dispatcher.dingtalk.results import mask_mobile

    print(f"report     {report.id} (fire time {fire.isoformat()})")
    prepared = _prepare_or_skip(config, report, fire)
    if prepared is None:
        return 0
    known = _cached_userids(config, list(recipients.mobiles))
    unresolved = [
        f"{mask_mobile(m)}: not in the userid cache; resolved at send time"
        for m in recipients.mobiles
        if m not in known
    ]
    assert prepared.rendered is not None
    _print_recipients(recipients, list(known.values()), [], unresolved, split=split)
    _print_split(prepared, split)
    _print_parts(prepared)
    print("dry run    nothing was sent (no DingTalk credentials: mobiles come from the userid cache only);")
    print("           the message would be:")
    _print_markdown(prepared.rendered.markdown)
    return 0


def _print_recipients(  # noqa: PLR0913
    recipients: Recipients,
    resolved: list[str],
    problems: list[str],
    unresolved: list[str] | None = None,
    *,
    split: bool = False,
) -> None:
    userids = list(dict.fromkeys([*recipients.userids, *resolved]))
    if userids or not split:  # a split report without to: is for its slices' recipients only
        print(f"userids    {', '.join(userids) or '(none)'}{' (to: the whole report)' if split else ''}")
    if recipients.dept_ids:
        print(f"dept_ids   {', '.join(map(str, recipients.dept_ids))}")
    for line in unresolved or []:
        print(f"unresolved {line}")
    for problem in problems:
        print(f"warning    {problem}")


def _print_split(prepared: Prepared, split: bool) -> None:
    from dispatcher.cli.views import split_lines

    for line in split_lines(prepared, whole=False) if split else []:
        print(line)


def _print_parts(prepared: Prepared) -> None:
    """A rich report's image and file messages, which a dry run neither uploads nor sends."""
    from dispatcher.cli.preview_parts import parts_listing

    for part in [p for p in parts_listing(prepared) if p["unit"] or p["files"]]:
        files = ", ".join(f"{f['name']} ({plural(f['bytes'], 'byte')})" for f in part["files"])
        print(f"part       {part['msgtype']}: {files}")
    for warning in prepared.rich.warnings if prepared.rich else ():
        print(f"warning    {warning}")
    if prepared.rich is not None and prepared.rich.attach_error is not None:
        print(f"warning    {prepared.rich.attach_error}")


def _print_markdown(markdown: str) -> None:

    print_message(markdown)
