"""A rich report's messages, delivered in a fixed order: the text or card, then the image, then the file.

Each message is a unit of the run's ledger (the `unit` field of its batches: "" for the main
message, "part:image", "part:file"). A retry sends each unit only to whoever its accepted batches
have not reached yet, and the run is `sent` only when every unit was accepted by everyone.
Receipts are read for the main message only: each receipt call spends the monthly quota.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dispatcher.dingtalk.media import INVALID_MEDIA_ID
from dispatcher.dingtalk.message import file_msg, image_msg
from dispatcher.errors import DeliveryError

if TYPE_CHECKING:
    from dispatcher.dingtalk.client import DeliveryResult, DingTalkClient
    from dispatcher.run.delivery import Outcome, Recipients
    from dispatcher.run.rich import RichParts
    from dispatcher.store.ledger import Run

MAIN, IMAGE, FILE = "", "part:image", "part:file"
MediaId = Callable[[str, str, bytes, str], str]  # (kind, file name, content, scope) -> media_id
Media = tuple[str, str, bytes, str]


@dataclass(frozen=True)
class Part:
    unit: str
    msg: dict[str, Any]
    media: Media | None = None  # (kind, file name, content, scope) its media_id stands for


def build_parts(
    main: dict[str, Any], rich: RichParts | None, media_id: MediaId, scope: str = ""
) -> list[Part]:
    """The run's messages in sending order; `media_id` uploads (or, for a preview, names) each file.

    `scope` is the run's fire time: DingTalk drops the same image or file message sent to a person
    twice in a day, so each fire time gets media_ids of its own (dispatcher.dingtalk.media)."""
    from dispatcher.run.rich import CHART_NAME

    if rich is None:
        return [Part(MAIN, main)]
    chart = ("image", CHART_NAME, rich.chart, scope) if rich.chart is not None else None
    attached = rich.file_to_send
    data = ("file", attached.name, attached.data, scope) if attached is not None else None
    image = media_id(*chart) if chart else None
    file = media_id(*data) if data else None
    in_card = image is not None and main["msgtype"] == "oa"
    parts = [Part(MAIN, with_image(main, image), chart) if image and in_card else Part(MAIN, main)]
    if image and not in_card:
        parts.append(Part(IMAGE, image_msg(image), chart))
    if file:
        parts.append(Part(FILE, file_msg(file), data))
    return parts


def failed_parts(rich: RichParts | None) -> tuple[tuple[str, str], ...]:
    """(unit, why) of each part that could not be built, so is not sent."""
    if rich is None or rich.attach_error is None:
        return ()
    return ((FILE, rich.attach_error),)


def scope_of(fire_time: datetime) -> str:
    """The media cache's scope for a run: its fire time, the same instant in any zone."""
    return fire_time.astimezone(UTC).isoformat()


def media_id_of(msg: dict[str, Any]) -> str | None:
    """The media_id an image, file or OA message carries."""
    kind = msg.get("msgtype")
    if kind == "oa":
        found = msg["oa"]["body"].get("image")
    else:
        found = msg[kind].get("media_id") if kind in ("image", "file") else None
    return None if found is None else str(found)


def with_image(msg: dict[str, Any], media_id: str) -> dict[str, Any]:
    oa = msg["oa"]
    return {**msg, "oa": {**oa, "body": {**oa["body"], "image": media_id}}}


def deliver_parts(
    client: DingTalkClient,
    parts: list[Part],
    recipients: Recipients,
    receipts: str | None = None,
    receipt_wait: float | None = None,
    *,
    run: Run | None = None,
    failed: tuple[tuple[str, str], ...] = (),
) -> tuple[DeliveryResult, Outcome]:
    """Send every part to every recipient its unit has not reached; the main message's result and the
    outcome over all units. A refusal before anything went out propagates, as for a plain report.
    `failed` are (unit, why) of parts that could not be built: not sent, counted as refused."""
    prior = run.batches.get("accepted", []) if run else []
    sent: list[tuple[str, DeliveryResult]] = []
    refused: list[dict[str, Any]] = []
    for i, part in enumerate(parts):
        users, depts = _reached(prior, part.unit)
        try:
            result = client.send(
                part.msg, userids=list(recipients.userids), mobiles=list(recipients.mobiles),
                dept_ids=list(recipients.dept_ids), skip_userids=users, skip_dept_ids=depts,
                receipts=receipts if part.unit == MAIN else "off", receipt_wait=receipt_wait,
            )  # fmt: skip
        except DeliveryError as exc:
            if exc.errcode == INVALID_MEDIA_ID and part.media is not None:
                client.forget_media(*part.media)  # expired at DingTalk: the retry uploads it again
            if not prior and not any(r.accepted for _, r in sent):
                raise
            refused += [_not_sent(p.unit, recipients, prior, exc.errcode, exc.message) for p in parts[i:]]
            break
        sent.append((part.unit, result))
        if result.refused and part.unit != MAIN:  # the main message's refusals: outcome_of reads them
            refused += [{**_refused(r), "unit": part.unit} for r in result.refused]
        if result.refused:
            why = "not sent: the message before it was refused"
            refused += [_not_sent(p.unit, recipients, prior, None, why) for p in parts[i + 1 :]]
            break
    for unit, why in failed:
        missing = _not_sent(unit, recipients, prior, None, why)
        if missing["recipients"] or missing["dept_ids"]:
            refused.append(missing)
    return _outcome(run, sent, refused)


def _reached(accepted: list[dict[str, Any]], unit: str) -> tuple[set[str], set[int]]:
    mine = [b for b in accepted if str(b.get("unit") or "") == unit]
    users = {str(u) for b in mine for u in b.get("userids", [])}
    return users, {int(d) for b in mine for d in b.get("dept_ids", [])}


def _not_sent(
    unit: str, recipients: Recipients, prior: list[dict[str, Any]], errcode: int | None, message: str
) -> dict[str, Any]:
    users, depts = _reached(prior, unit)
    left = [d for d in recipients.dept_ids if d not in depts]
    count = max(0, len(recipients.userids) + len(recipients.mobiles) - len(users))
    return {"errcode": errcode, "message": message, "recipients": count, "dept_ids": left, "unit": unit}


def _outcome(
    run: Run | None, sent: list[tuple[str, DeliveryResult]], refused: list[dict[str, Any]]
) -> tuple[DeliveryResult, Outcome]:
    """The main unit judged as a plain report is (sent, partial, suppressed), then the parts added."""
    from dispatcher.dingtalk.results import DeliveryResult
    from dispatcher.run.delivery import outcome_of

    prior = run.batches.get("accepted", []) if run else []
    main_prior = [b for b in prior if not b.get("unit")]
    main_run = replace(run, batches={"accepted": main_prior, "refused": []}) if run else None
    main = next((r for u, r in sent if u == MAIN), None) or DeliveryResult([], 0, 0, [], [])
    base = outcome_of(main_run, main)
    parts_prior = [b for b in prior if b.get("unit")]
    new_parts = [{**_accepted(b), "unit": unit} for unit, r in sent if unit != MAIN for b in r.accepted]
    accepted = [*base.batches["accepted"], *parts_prior, *new_parts]
    all_refused = [*base.batches["refused"], *refused]
    outcome = replace(
        base, batches={"accepted": accepted, "refused": all_refused},
        task_ids=[int(b["task_id"]) for b in accepted],
    )  # fmt: skip
    if refused and outcome.state != "partial":
        missing = sum(int(r["recipients"]) for r in refused)
        units = ", ".join(dict.fromkeys(r["unit"] or "message" for r in refused))
        reason = f"partial delivery ({units} not sent to {missing}): {refused[0]['message']}"
        outcome = replace(outcome, state="partial", refused=missing, reason=reason)
    return main, outcome


def _refused(refusal: Any) -> dict[str, Any]:
    return {"errcode": refusal.errcode, "message": refusal.message, "recipients": len(refusal.userids),
            "dept_ids": list(refusal.dept_ids)}  # fmt: skip


def _accepted(batch: Any) -> dict[str, Any]:
    return {"task_id": batch.task_id, "recipients": len(batch.userids), "userids": list(batch.userids),
            "dept_ids": list(batch.dept_ids)}  # fmt: skip
