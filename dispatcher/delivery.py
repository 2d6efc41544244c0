"""From a report's recipient groups and the config's credentials to a DingTalk client call."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dispatcher.config import MOBILE, Config, normalize_mobile
from dispatcher.errors import ConfigError, CredentialsError, Problem

if TYPE_CHECKING:
    from dispatcher.dingtalk.client import Credentials, DeliveryResult, DingTalkClient
    from dispatcher.state import StateStore

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
            hint="set them (see README, 'DingTalk set-up'), or add --sandbox to deliver to a local sandbox",
        )
    assert dt.app_key is not None and dt.app_secret is not None and dt.agent_id is not None
    return Credentials(app_key=dt.app_key, app_secret=dt.app_secret, agent_id=dt.agent_id)


def make_client(
    config: Config,
    credentials: Credentials,
    state: StateStore | None,
    *,
    base_url: str | None = None,
    on_call: Any = None,
) -> DingTalkClient:
    from dispatcher.dingtalk.client import DingTalkClient, Pacing

    pacing = Pacing(
        calls_per_second=config.dingtalk.calls_per_second,
        recipients_per_minute=config.dingtalk.recipients_per_minute,
    )
    return DingTalkClient(
        credentials,
        base_url=base_url or config.dingtalk.api_base,
        userid_cache=state,
        pacing=pacing,
        on_call=on_call,
        receipts=config.dingtalk.receipts,
        receipt_wait=config.dingtalk.receipt_wait,
    )


def deliver(
    client: DingTalkClient,
    msg: dict[str, Any],
    recipients: Recipients,
    receipts: str | None = None,
    receipt_wait: float | None = None,
) -> DeliveryResult:
    """`receipts`: a report's own receipts mode; None keeps the config's `dingtalk.receipts`."""
    return client.send(
        msg,
        userids=list(recipients.userids),
        mobiles=list(recipients.mobiles),
        dept_ids=list(recipients.dept_ids),
        receipts=receipts,
        receipt_wait=receipt_wait,
    )


@dataclass
class Target:
    """Where a delivery goes: DingTalk (or DINGTALK_API_BASE), or an in-process sandbox."""

    client: DingTalkClient
    sandbox: Any = None  # dispatcher.sandbox.Sandbox when --sandbox
    api_calls: Any = None  # dispatcher.apicalls.ApiCounter, except for an in-process sandbox


@contextmanager
def open_target(
    config: Config,
    *,
    sandbox: bool,
    sandbox_port: int = 0,
    on_call: Any = None,
    state: StateStore | None = None,
) -> Iterator[Target]:
    """A client for real credentials, or a started sandbox and a client for it.

    Never falls back to the sandbox by itself: a production typo must not swallow reports.
    """
    with ExitStack() as stack:
        box = _start_sandbox(sandbox_port) if sandbox else None
        if box is not None:
            stack.callback(box.stop)
        creds = _sandbox_credentials(box) if box is not None else credentials_from(config)
        if state is None:
            from dispatcher.state import StateStore, state_url

            state = StateStore(state_url(config.base_dir, config.state))
            stack.callback(state.close)
        counter = _api_counter(config, state) if box is None else None  # a sandbox costs no quota
        if counter is not None:
            on_call = counter.hook(on_call)
        client = make_client(config, creds, state, base_url=box.url if box else None, on_call=on_call)
        stack.callback(client.close)
        if counter is not None:
            from dispatcher.quota import quota_alert

            counter.on_warn = lambda month, used, quota: quota_alert(client, config, month, used, quota)
        yield Target(client, box, counter)


def _api_counter(config: Config, state: StateStore) -> Any:
    from dispatcher.apicalls import ApiCounter
    from dispatcher.schedule import to_zone

    return ApiCounter(state, to_zone(config.timezone), config.dingtalk.monthly_quota)


def _start_sandbox(port: int) -> Any:
    import os

    from dispatcher.sandbox import Sandbox
    from dispatcher.sandbox.options import options_from_env

    # The same DISPATCHER_SANDBOX_* faults as `dispatcher sandbox`, for in-process sandboxes too.
    return Sandbox(options_from_env(dict(os.environ)), port=port).start()


def _sandbox_credentials(box: Any) -> Credentials:
    from dispatcher.dingtalk.client import Credentials

    opts = box.options
    return Credentials(app_key=opts.app_key, app_secret=opts.app_secret, agent_id=opts.agent_id)
