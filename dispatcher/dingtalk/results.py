"""What a send produced: task ids, per-task receipts from getsendresult, and their tallies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FORBIDDEN_CODES = ("143105", "143106")  # always present in counts(): the two a report can cause
DUPLICATE = "143106"  # the same content to the same person on the same day: DingTalk drops it


@dataclass(frozen=True)
class Batch:
    """One asyncsend_v2 call DingTalk accepted."""

    task_id: int
    userids: list[str]
    dept_ids: list[int]


@dataclass(frozen=True)
class Refusal:
    """The recipients no accepted call reached: the refused call's, and those of every call after it."""

    errcode: int | None
    message: str
    userids: list[str]
    dept_ids: list[int]


@dataclass
class Receipt:
    """getsendresult for one task [gets-the-result-of-sending-messages-asynchronously-...]."""

    task_id: int
    userids: list[str] = field(default_factory=list)
    dept_ids: list[int] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    forbidden: dict[str, str] = field(default_factory=dict)  # userid -> code, e.g. "143106"
    failed: list[str] = field(default_factory=list)
    read: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)
    invalid_dept_ids: list[int] = field(default_factory=list)
    # False when the task had not finished by the receipt timeout, or holds departments and was not
    # read (getsendresult cannot report on tasks that may exceed 100 recipients: `full` mode only).
    complete: bool = True
    attempts: int = 1  # asyncsend_v2 HTTP attempts it took; >1 means a retry happened


@dataclass
class DeliveryResult:
    task_ids: list[int]
    batches: int
    recipients: int  # unique userids in accepted calls (department members are not counted)
    dept_ids: list[int]
    unresolved_mobiles: list[str]  # masked, each with its reason
    accepted: list[Batch] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)  # non-empty: a partial delivery
    receipts: list[Receipt] = field(default_factory=list)
    resent_task_ids: list[int] = field(default_factory=list)
    resent_userids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # receipts or resends that failed
    notes: list[str] = field(default_factory=list)  # what the counts cannot show, e.g. departments

    @property
    def partial(self) -> bool:
        return bool(self.refused)

    def reached(self) -> int | None:
        """How many users the receipts show holding the message; None when the receipts can't tell
        (departments outside `full` mode, receipts off or unfinished)."""
        if not self.receipts or not all(r.complete for r in self.receipts):
            return None
        counts = self.counts()
        return counts["read"] + counts["unread"]

    def duplicate_only(self) -> bool:
        """Nobody got it, and DingTalk dropped it as duplicate content for at least one person."""
        return self.reached() == 0 and self.counts()[f"forbidden_{DUPLICATE}"] > 0

    def counts(self) -> dict[str, int]:
        """Each user's final status once: a resend's receipt replaces the failure it retried."""
        status: dict[str, str] = {}
        for receipt in self.receipts:  # first sends, then resends
            status.update(dict.fromkeys(receipt.invalid, "invalid"))
            status.update(dict.fromkeys(receipt.failed, "failed"))
            status.update(dict.fromkeys(receipt.read, "read"))
            status.update(dict.fromkeys(receipt.unread, "unread"))
            status.update({u: f"forbidden_{code}" for u, code in receipt.forbidden.items()})
        counts = dict.fromkeys(("invalid", "forbidden", "failed", "read", "unread"), 0)
        counts.update({f"forbidden_{code}": 0 for code in FORBIDDEN_CODES})
        for value in status.values():
            counts[value] = counts.get(value, 0) + 1
            if value.startswith("forbidden_"):
                counts["forbidden"] += 1
        counts["resent"] = len(self.resent_userids)
        return counts


def receipt_from(task_id: int, send_result: dict[str, Any]) -> Receipt:
    codes = {
        str(item.get("userid")): str(item.get("code"))
        for item in send_result.get("forbidden_list") or []
        if isinstance(item, dict) and item.get("userid")
    }
    forbidden_users = _strings(send_result.get("forbidden_user_id_list"))
    forbidden = {u: codes.get(u, "unknown") for u in forbidden_users}
    forbidden.update({u: c for u, c in codes.items() if u not in forbidden})
    return Receipt(
        task_id=task_id,
        invalid=_strings(send_result.get("invalid_user_id_list")),
        forbidden=forbidden,
        failed=_strings(send_result.get("failed_user_id_list")),
        read=_strings(send_result.get("read_user_id_list")),
        unread=_strings(send_result.get("unread_user_id_list")),
        invalid_dept_ids=[int(d) for d in send_result.get("invalid_dept_id_list") or []],
    )


def mask_mobile(mobile: str) -> str:
    """138****0000: enough to recognise a number, not enough to dial it."""
    if len(mobile) < 8:
        return "****"
    return f"{mobile[:3]}****{mobile[-4:]}"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):  # some answers give a comma-joined string
        return [v for v in value.split(",") if v]
    return [str(v) for v in value or []]
