"""From a report's recipient groups and the config's credentials to a DingTalk client call."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dispatcher.config.model import MOBILE, Config, normalize_mobile
from dispatcher.errors import ConfigError, CredentialsError, Problem

if TYPE_CHECKING:
    from dispatcher.dingtalk.client import Credentials, DeliveryResult, DingTalkClient
    from dispatcher.dingtalk.results import Batch, Refusal
    from dispatcher.dingtalk.transport import Registry
    from dispatcher.store.db import StateStore
    from dispatcher.store.ledger import Run, RunState

ENV_NAMES = {
    "app_key": "DINGTALK_APP_KEY",
    "app_secret": "DINGTALK_APP_SECRET",
    "agent_id": "DINGTALK_AGENT_ID",
}


@dataclass(frozen=True)
class Recipients:
    userids: tuple[str, ...] = ()
    mobiles: tuple[str, ...] = ()
    dept_ids: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.userids) + len(self.mobiles) + len(self.dept_ids)


def _unique(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(items))


def recipients_for(config: Config, groups: Sequence[str]) -> Recipients:
    """Union of the named groups, de-duplicated in order."""
    chosen = [config.recipients[name] for name in groups]
    return Recipients(
        userids=_unique(u for g in chosen for u in g.userids),
        mobiles=_unique(m for g in chosen for m in g.mobiles),
        dept_ids=_unique(d for g in chosen for d in g.dept_ids),
    )


def recipients_from_cli(values: Sequence[str]) -> Recipients:
    """`--to` values: an 11-digit mobile is a mobile, anything else a userid."""
    userids: list[str] = []
    mobiles: list[str] = []
    for raw in values:
        for value in filter(None, (v.strip() for v in raw.split(","))):
            mobile = normalize_mobile(value)
            if MOBILE.match(mobile):
                mobiles.append(mobile)
            else:
                userids.append(value)
    if not userids and not mobiles:
        raise ConfigError([Problem("command line", None, "--to", "give at least one userid or mobile")])
    return Recipients(userids=_unique(userids), mobiles=_unique(mobiles))


def credentials_from(config: Config) -> Credentials:
    """The app's credentials, or a CredentialsError naming every missing variable."""
    from dispatcher.dingtalk.client import Credentials

    dt = config.dingtalk
    values = {"app_key": dt.app_key, "app_secret": dt.app_secret, "agent_id": dt.agent_id}
    missing = sorted({*dt.missing_vars, *(ENV_NAMES[k] for k, v in values.items() if v in (None, ""))})
    if missing:
        raise CredentialsError(
            f"DingTalk credentials are missing: {', '.join(missing)} not set",
            hint="set them (see docs/delivering/dingtalk.md), or add --sandbox to deliver to a local sandbox",
        )
    assert dt.app_key is not None and dt.app_secret is not None and dt.agent_id is not None
    return Credentials(app_key=dt.app_key, app_secret=dt.app_secret, agent_id=dt.agent_id)


def app_credentials(config: Config) -> Credentials:
    """`credentials_from`, except for a config that never sends a work notification: every report
    goes to group robots only and there is no `admins` group to alert. A robot needs no DingTalk
    app, so such a config runs without one; its client holds empty credentials it never uses."""
    from dispatcher.dingtalk.client import Credentials

    try:
        return credentials_from(config)
    except CredentialsError:
        if needs_app(config):
            raise
        return Credentials(app_key="", app_secret="", agent_id=0)


def needs_app(config: Config) -> bool:
    """Whether anything may go out as a work notification: a report's `to`, or the admins' alerts."""
    from dispatcher.config.model import ALERT_GROUP

    return ALERT_GROUP in config.recipients or any(r.to for r in config.reports.values())


def make_client(
    config: Config,
    credentials: Credentials,
    state: StateStore | None,
    *,
    base_url: str | None = None,
    on_call: Any = None,
    registry: Registry | None = None,
) -> DingTalkClient:
    from datetime import timedelta

    from dispatcher.dingtalk.client import DingTalkClient, Pacing
    from dispatcher.store.media import MediaCache
    from dispatcher.store.userids import UseridCache

    pacing = Pacing(
        calls_per_second=config.dingtalk.calls_per_second,
        recipients_per_minute=config.dingtalk.recipients_per_minute,
    )
    media_age = timedelta(seconds=config.dingtalk.media_cache)
    return DingTalkClient(
        credentials,
        base_url=base_url or config.dingtalk.api_base,
        userid_cache=None if state is None else UseridCache(state),
        pacing=pacing,
        on_call=on_call,
        receipts=config.dingtalk.receipts,
        receipt_wait=config.dingtalk.receipt_wait,
        registry=registry,
        media_cache=None if state is None else MediaCache(state, keep=media_age),
        media_max_age=media_age,
    )


def deliver(
    client: DingTalkClient,
    msg: dict[str, Any],
    recipients: Recipients,
    receipts: str | None = None,
    receipt_wait: float | None = None,
    *,
    skip: Run | None = None,
) -> DeliveryResult:
    """Send to `recipients`, except whoever an earlier attempt of the run `skip` already reached.

    `receipts`: a report's own receipts mode; None keeps the config's `dingtalk.receipts`.
    """
    return client.send(
        msg,
        userids=list(recipients.userids),
        mobiles=list(recipients.mobiles),
        dept_ids=list(recipients.dept_ids),
        skip_userids=skip.accepted_userids if skip else (),
        skip_dept_ids=skip.accepted_dept_ids if skip else (),
        receipts=receipts,
        receipt_wait=receipt_wait,
    )


@dataclass(frozen=True)
class Outcome:
    """What a run's deliveries add up to, over every attempt so far."""

    state: RunState  # sent | partial | suppressed
    recipients: int  # unique userids any accepted batch reached
    refused: int  # userids still not reached
    task_ids: list[int]
    batches: dict[str, list[dict[str, Any]]]
    counts: dict[str, int]
    reason: str | None = None
    notes: tuple[str, ...] = ()


def outcome_of(run: Run | None, result: DeliveryResult | None, *, error: str | None = None) -> Outcome:
    """Merge this attempt's `result` (None: it failed before sending, with `error`) into the run's batches."""
    from dispatcher.words import plural

    prior = run.batches.get("accepted", []) if run else []
    accepted = prior + [_accepted(b) for b in (result.accepted if result else [])]
    refused = (
        [_refused(r) for r in result.refused] if result else (run.batches.get("refused", []) if run else [])
    )
    reached = len({u for b in accepted for u in b.get("userids", [])})
    missing = sum(int(r["recipients"]) for r in refused)
    counts = result.counts() if result else dict(run.receipts if run else {})
    task_ids = [int(b["task_id"]) for b in accepted if b.get("task_id") is not None]  # units may have none
    batches = {"accepted": accepted, "refused": refused}
    sent = Outcome("sent", reached, missing, task_ids, batches, counts)
    if result is None or refused:
        codes = ", ".join(f"errcode {r['errcode']}" for r in refused if r["errcode"] is not None)
        why = error or "; ".join(str(r["message"]) for r in refused)
        # The code goes first: history's table cuts the error at 80 characters.
        reach = f"{plural(reached, 'recipient')} reached, {missing} not"
        reason = f"partial delivery ({codes or 'refused'}): {reach}: {why}"
        return replace(sent, state="partial", reason=reason)
    notes = (*result.unresolved_mobiles, *result.warnings, *result.notes)
    if result.duplicate_only() and not prior:
        return replace(sent, state="suppressed", reason=DUPLICATE_REASON, notes=(DUPLICATE_REASON, *notes))
    nobody = nobody_received(result)
    return replace(sent, notes=(*notes, nobody) if nobody else notes)


DUPLICATE_REASON = (
    "suppressed: DingTalk dropped it as duplicate content (143106), so nobody received it; "
    "the same message already went to these people today"
)


def nobody_received(result: DeliveryResult) -> str | None:
    """Why no recipient got the message, when the receipts show that; None when someone did (or unknown)."""
    from dispatcher.words import plural

    if result.reached() != 0:
        return None
    counts = result.counts()
    parts = [plural(counts[k], f"{k} recipient") for k in ("invalid", "forbidden", "failed") if counts[k]]
    codes = [
        f"{k.removeprefix('forbidden_')}: {v}" for k, v in counts.items() if k.startswith("forbidden_") and v
    ]
    detail = ", ".join(parts) + (f" ({', '.join(codes)})" if codes else "")
    return f"nobody received the message: {detail or 'no recipient in the receipts'}"


def _accepted(batch: Batch) -> dict[str, Any]:
    return {"task_id": batch.task_id, "recipients": len(batch.userids), "userids": list(batch.userids),
            "dept_ids": list(batch.dept_ids)}  # fmt: skip


def _refused(refusal: Refusal) -> dict[str, Any]:
    return {"errcode": refusal.errcode, "message": refusal.message, "recipients": len(refusal.userids),
            "dept_ids": list(refusal.dept_ids)}  # fmt: skip


def sandbox_credentials(box: Any) -> Credentials:
    from dispatcher.dingtalk.client import Credentials

    opts = box.options
    return Credentials(app_key=opts.app_key, app_secret=opts.app_secret, agent_id=opts.agent_id)
