"""Delivering a `split_by` run: the whole report to `to`, each slice to its own recipient.

Every accepted or refused batch entry carries its ledger unit: "" for the whole report,
"slice:<value>" for a slice ("slice:<userid>" for a mobile: the userid it resolved to). A retry
skips each (unit, userid) an accepted entry already covers, so it sends only the failed slices.
Slices whose messages are identical share a batch: one asyncsend_v2 per distinct content per 100
recipients. A mobile that resolves to nobody is counted and reported, never replaced by somebody
else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dispatcher.errors import DeliveryError
from dispatcher.run.delivery import Outcome, recipients_for
from dispatcher.run.split import UNIT_PREFIX, by_content
from dispatcher.words import plural

if TYPE_CHECKING:
    from dispatcher.config.model import Config, Report
    from dispatcher.dingtalk.client import DeliveryResult, DingTalkClient
    from dispatcher.run.delivery import Recipients
    from dispatcher.run.split import Slicing


@dataclass
class _Tally:
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[DeliveryError] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # unit -> msg sent


def deliver_split(
    client: DingTalkClient,
    config: Config,
    prior: list[dict[str, Any]],
    parts: Parts,
    wait: float,
    record: Callable[[dict[str, dict[str, Any]]], None] | None = None,
) -> Outcome:
    """Send what this attempt still owes (`prior`: the accepted batches of earlier attempts); the
    outcome over every attempt so far. `record` gets unit -> msg of every unit before anything is sent."""
    report = parts.report
    covered = {(str(b.get("unit", "")), str(u)) for b in prior for u in b.get("userids", [])}
    tally = _Tally()
    assert report.split_by is not None
    slices, notes = _resolve(client, parts.slicing, report.split_by.kind == "mobile")
    if record is not None:
        record(({"": parts.whole} if report.to else {}) | {unit: msg for unit, (_, msg) in slices.items()})
    if report.to:
        _send_whole(client, recipients_for(config, report.to), prior, parts, tally, wait)
    owed = {unit: pair for unit, pair in slices.items() if (unit, pair[0]) not in covered}
    for msg, pairs in by_content(owed):
        _send_group(client, report, msg, pairs, tally, wait)
    if tally.errors and not tally.accepted and not prior:
        raise tally.errors[0]  # nothing went out at all: the run failed, and is retried whole
    return _outcome(prior, tally, notes, parts.slicing)


@dataclass(frozen=True)
class Parts:
    """A split run's messages: the whole report (for `to`) and the slices."""

    report: Report
    whole: dict[str, Any]
    slicing: Slicing


def _send_whole(
    client: DingTalkClient,
    who: Recipients,
    prior: list[dict[str, Any]],
    parts: Parts,
    tally: _Tally,
    wait: float,
) -> None:
    report, msg = parts.report, parts.whole
    main = [b for b in prior if not b.get("unit")]
    try:
        result = client.send(
            msg, userids=list(who.userids), mobiles=list(who.mobiles), dept_ids=list(who.dept_ids),
            skip_userids={str(u) for b in main for u in b.get("userids", [])},
            skip_dept_ids={int(d) for b in main for d in b.get("dept_ids", [])},
            receipts=report.receipts, receipt_wait=wait,
        )  # fmt: skip
    except DeliveryError as exc:
        tally.errors.append(exc)
        tally.refused.append(_refused(exc.errcode, exc.message, len(who), list(who.dept_ids), ""))
        return
    _record(result, tally, {u: "" for b in result.accepted for u in b.userids}, whole=True)


def _resolve(
    client: DingTalkClient, slicing: Slicing, by_mobile: bool
) -> tuple[dict[str, tuple[str, dict[str, Any]]], list[str]]:
    """unit -> (userid, msg) of every slice with a recipient; notes on the rows nobody gets.

    A mobile slice's unit names the userid it resolved to, so the ledger holds no mobile numbers.
    """
    mobiles = [s.key for s in slicing.slices] if by_mobile else []
    resolved, problems = client.resolve_mobiles(mobiles) if mobiles else ({}, [])
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    unresolved_rows = 0
    for piece in slicing.slices:
        userid = resolved.get(piece.key) if by_mobile else piece.key
        if userid is None:
            unresolved_rows += piece.rows
        else:
            found.setdefault(UNIT_PREFIX + userid, (userid, piece.rendered.msg))
    notes = []
    if slicing.empty_rows:
        notes.append(f"{plural(slicing.empty_rows, 'row')} with an empty split_by value: sent to nobody")
    if problems:
        lost = f"{plural(len(problems), 'mobile')} ({plural(unresolved_rows, 'row')})"
        notes.append(f"{lost} resolve to nobody: {'; '.join(problems[:5])}")
    return found, notes


def _send_group(
    client: DingTalkClient, report: Report, msg: dict[str, Any], pairs: list[tuple[str, str]], tally: _Tally,
    wait: float,
) -> None:  # fmt: skip
    units: dict[str, list[str]] = {}
    for unit, userid in pairs:
        units.setdefault(userid, []).append(unit)
    try:
        result = client.send(msg, userids=list(units), receipts=report.receipts, receipt_wait=wait)
    except DeliveryError as exc:
        tally.errors.append(exc)
        tally.refused += [_refused(exc.errcode, exc.message, 1, [], unit) for unit, _ in pairs]
        return
    for refusal in result.refused:
        tally.refused += [_refused(refusal.errcode, refusal.message, 1, [], unit)
                          for u in refusal.userids for unit in units.get(u, [])]  # fmt: skip
    _record(result, tally, units)


def _record(result: DeliveryResult, tally: _Tally, units: dict[str, Any], whole: bool = False) -> None:
    tally.counts.update(result.counts())
    for batch in result.accepted:
        if whole:
            tally.accepted.append({"task_id": batch.task_id, "recipients": len(batch.userids),
                                   "userids": list(batch.userids), "dept_ids": list(batch.dept_ids),
                                   "unit": ""})  # fmt: skip
            continue
        for userid in batch.userids:
            tally.accepted += [{"task_id": batch.task_id, "recipients": 1, "userids": [userid],
                                "dept_ids": [], "unit": unit} for unit in units.get(userid, [])]  # fmt: skip


def _refused(
    errcode: int | None, message: str, recipients: int, depts: list[int], unit: str
) -> dict[str, Any]:
    return {"errcode": errcode, "message": message, "recipients": recipients, "dept_ids": depts, "unit": unit}


def _outcome(prior: list[dict[str, Any]], tally: _Tally, notes: list[str], slicing: Slicing) -> Outcome:
    accepted = prior + tally.accepted
    reached = len({str(u) for b in accepted for u in b["userids"]})
    task_ids = list(dict.fromkeys(int(b["task_id"]) for b in accepted))
    batches = {"accepted": accepted, "refused": tally.refused}
    counts = dict(tally.counts)
    slices = f"{plural(len(slicing.slices), 'slice')}"
    if tally.refused:
        units = len({r["unit"] for r in tally.refused})
        codes = ", ".join(
            sorted({f"errcode {r['errcode']}" for r in tally.refused if r["errcode"] is not None})
        )
        why = "; ".join(dict.fromkeys(str(r["message"]) for r in tally.refused))
        reason = f"partial delivery ({codes or 'refused'}): {units} of {slices} or groups not reached: {why}"
        return Outcome("partial", reached, units, task_ids, batches, counts, reason, tuple(notes))
    return Outcome("sent", reached, 0, task_ids, batches, counts, None, tuple(notes))
