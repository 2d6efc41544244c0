"""`dispatcher resend`: the recorded message of one run, again, to whoever its receipts say missed it.

No new query: the message is the one the run recorded (dispatcher_run_messages). The receipts are
read again now (getsendresult per accepted task), so a reader who opened it since is left alone.
The resent copy carries a line saying so: DingTalk drops identical content sent to the same
person the same day (143106), and an unread recipient already holds the original. What the store
holds is checked before anything is sent, and the copy is fitted with that line included
(`resend_message`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from dispatcher import clock
from dispatcher.dingtalk.message import MAX_MSG_BYTES
from dispatcher.errors import DeliveryError, DispatcherError
from dispatcher.leaks import refuse, unlabelled
from dispatcher.run.resend_message import checked, marked, parsed
from dispatcher.words import plural

if TYPE_CHECKING:
    from dispatcher.config.model import Report
    from dispatcher.dingtalk.client import DingTalkClient
    from dispatcher.store.ledger import Ledger

Only = Literal["failed", "unread"]


@dataclass
class Resent:
    fire_time: datetime
    only: str
    sent: dict[str, list[str]] = field(default_factory=dict)  # unit -> userids resent to
    refused: int = 0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        total = sum(len(u) for u in self.sent.values())
        out = [f"resend     {self.fire_time.isoformat()}: {plural(total, 'recipient')} {self.only}"]
        out += [f"  {unit or 'report'}: {', '.join(users)}" for unit, users in self.sent.items() if users]
        out += [f"note       {n}" for n in self.notes]
        return out


def resend(
    client: DingTalkClient,
    ledger: Ledger,
    report: Report,
    fire: datetime,
    only: Only,
    limit: int = MAX_MSG_BYTES,
) -> Resent:
    """Resend the run's recorded messages, each fitted to `limit` bytes with its resend line."""
    from dispatcher.store.run_messages import RunMessages

    run = ledger.get(report.id, fire)
    if run is None:
        raise DispatcherError(f"report {report.id!r} has no run at {fire.isoformat()}",
                              hint=f"dispatcher history {report.id} lists its fire times")  # fmt: skip
    stored = RunMessages(ledger.store).texts(run.id)
    if not stored:
        raise DispatcherError(
            f"the run at {fire.isoformat()} has no recorded message",
            hint="only runs that sent something since this release can be resent",
        )
    # Every unit is checked before anything is sent: a tampered store sends nothing at all.
    messages = {unit: checked(unit, parsed(unit, text)) for unit, text in stored.items()}
    refuse(
        messages,
        unlabelled(client.secrets.values()),
        f"the recorded message of the run at {fire.isoformat()}",
    )
    result = Resent(fire, only)
    marker = f"（重发于 {clock.now().astimezone(fire.tzinfo).strftime('%Y-%m-%d %H:%M:%S')}）"
    missed = _missed(client, run.batches.get("accepted", []), only, result)
    ready = {unit: marked(unit, messages[unit], marker, limit) for unit in missed if unit in messages}
    for unit, users in missed.items():
        if unit not in ready:
            result.notes.append(f"no recorded message for unit {unit!r}")
            continue
        _send(client, ready[unit], unit, users, result)
    return result


def _missed(
    client: DingTalkClient, accepted: list[dict[str, Any]], only: Only, result: Resent
) -> dict[str, list[str]]:
    """unit -> userids whose receipts, read now, say `only` (failed or unread)."""
    lists: dict[int, set[str]] = {}
    wanted: dict[str, list[str]] = {}
    for batch in accepted:
        task = int(batch["task_id"])
        if batch.get("dept_ids"):
            result.notes.append(f"task {task} went to departments: its receipts cannot name the missed")
            continue
        if task not in lists:
            receipt = client.get_send_result(task)
            lists[task] = set(receipt.failed if only == "failed" else receipt.unread)
        users = [str(u) for u in batch.get("userids", []) if str(u) in lists[task]]
        wanted.setdefault(str(batch.get("unit", "")), []).extend(users)
    return {unit: list(dict.fromkeys(users)) for unit, users in wanted.items()}


def _send(client: DingTalkClient, msg: dict[str, Any], unit: str, users: list[str], result: Resent) -> None:
    if not users:
        return
    try:
        sent = client.send(msg, userids=users, receipts="off")
    except DeliveryError as exc:
        result.refused += len(users)
        result.notes.append(f"{unit or 'report'}: refused: {exc.message}")
        return
    result.sent[unit] = [u for b in sent.accepted for u in b.userids]
    result.refused += sum(len(r.userids) for r in sent.refused)
