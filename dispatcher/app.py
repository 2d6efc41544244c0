"""The composition root: the one place that builds an app's parts, and closes them.

`open_app(config, sandbox=...)` builds the state store, the ledger, the DingTalk client (or a
started in-process sandbox and a client for it), the sources and the metrics, and owns what would
otherwise be process globals: the token and pacer `Registry` and the `Secrets` to mask. Two apps
in one process therefore share nothing (tests build two side by side). Every command and the
daemon get their parts here; nothing else constructs a client, a store or sources.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dispatcher import redact
from dispatcher.config.model import Config
from dispatcher.dingtalk.transport import Registry
from dispatcher.run.delivery import app_credentials, make_client, sandbox_credentials
from dispatcher.run.metrics import Metrics
from dispatcher.run.prepare import build_sources
from dispatcher.run.services import Services
from dispatcher.sources.query import Sources
from dispatcher.store.db import StateStore, sandbox_state_url, state_url
from dispatcher.store.ledger import Ledger
from dispatcher.store.pacewindows import PaceWindows

if TYPE_CHECKING:
    from dispatcher.dingtalk.client import DingTalkClient
    from dispatcher.dingtalk.transport import Credentials
    from dispatcher.robot.client import Robot
    from dispatcher.run.robots import RobotSender
    from dispatcher.sandbox import Sandbox
    from dispatcher.store.apicalls import ApiCounter


@dataclass
class App:
    """One app's parts; `sandbox` is set when deliveries go to a sandbox (in-process or running:
    `sandbox_note` says which, for the command to tell the user)."""

    config: Config
    store: StateStore
    ledger: Ledger
    client: DingTalkClient
    sources: Sources
    metrics: Metrics
    registry: Registry
    owner: str
    sandbox: Sandbox | None = None
    api_calls: ApiCounter | None = None
    robots: RobotSender | None = None
    _services: Services | None = field(default=None, repr=False)
    sandbox_note: str = ""

    @property
    def secrets(self) -> redact.Secrets:
        return self.registry.secrets

    def services(self) -> Services:
        """What every run needs, built once: runs share source concurrency slots."""
        if self._services is None:
            self._services = Services(self.config, self.sources, self.client, self.ledger, self.metrics,
                                      self.owner, self.robots)  # fmt: skip
        return self._services

    def swap_sources(self, config: Config) -> None:
        """A reload changed `sources`: build the new ones, dispose of the old."""
        retired, self.sources = self.sources, build_sources(config)
        self.services().sources = self.sources
        retired.dispose()


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def open_app(
    config: Config,
    *,
    sandbox: bool = False,
    sandbox_port: int = 0,
    metrics: Metrics | None = None,
    owner: str | None = None,
    find_sandbox: bool = False,
    sandbox_url: str | None = None,
) -> Iterator[App]:
    """Build an app for `config`; everything it opened is closed on exit, in reverse order.

    Never falls back to the sandbox by itself: a production typo must not swallow reports.
    A sandbox app keeps its state in the project's `.dispatcher/sandbox.db`, never in production's
    store. `find_sandbox`: deliver to the sandbox running at `sandbox_url` (default: the default
    port) when there is one, else start one here (dispatcher.sandbox.attach).
    """
    metrics = metrics if metrics is not None else Metrics()
    registry = Registry()
    with ExitStack() as stack:
        stack.callback(redact.release, registry.secrets)
        redact.install(registry.secrets)
        box, note = _sandbox(stack, sandbox_port, find_sandbox, sandbox_url) if sandbox else (None, "")
        creds = sandbox_credentials(box) if box is not None else app_credentials(config)  # fail fast
        store = StateStore(_state_url(config, sandbox))
        stack.callback(store.close)
        registry.share_pacing(PaceWindows(store))  # DingTalk's limits count per app, not per replica
        client, counter = _client(config, stack, store, box, creds, metrics, registry)
        sources = build_sources(config)
        robots = _robots(config, stack, store, box, registry, counter, metrics)
        app = App(config, store, Ledger(store), client, sources, metrics, registry,
                  owner or default_owner(), box, counter, robots, sandbox_note=note)  # fmt: skip
        stack.callback(lambda: app.sources.dispose())
        yield app


def _state_url(config: Config, sandbox: bool) -> str:
    """A sandbox app keeps its runs in the sandbox's store, whatever DISPATCHER_STATE_URL says."""
    if sandbox:
        return sandbox_state_url(config.base_dir, config.state)
    return state_url(config.base_dir, config.state)


def _sandbox(stack: ExitStack, port: int, find: bool, url: str | None) -> tuple[Sandbox, str]:
    """An in-process sandbox on `port`; with `find`, the one running at `url` (or the default port)."""
    from dispatcher.sandbox import attach

    if find:
        found = attach.find_or_start(url, lambda: _in_process(0))
        box, note = found.box, found.note
    else:
        box, note = _on_port(port)
    stack.callback(box.stop)  # a running sandbox's stop() leaves it running: it is the user's
    return box, note


def _on_port(port: int) -> tuple[Sandbox, str]:
    """`run --sandbox`: a sandbox of its own on `port`, or the `dispatcher sandbox` already there, so
    the inbox the user has open is the one the daemon delivers to."""
    from dispatcher.sandbox import attach

    running = attach.probe(f"http://127.0.0.1:{port}") if port else None
    if isinstance(running, attach.RunningSandbox):
        box: Any = running  # the parts of a Sandbox that an app uses, over HTTP
        return box, f"using the sandbox already running at {running.url}/"
    return _in_process(port), ""


def _in_process(port: int) -> Sandbox:
    from dispatcher.sandbox import Sandbox
    from dispatcher.sandbox.options import options_from_env

    # The same DISPATCHER_SANDBOX_* faults as `dispatcher sandbox`, for in-process sandboxes too.
    return Sandbox(options_from_env(dict(os.environ)), port=port).start()


def _client(
    config: Config,
    stack: ExitStack,
    store: StateStore,
    box: Sandbox | None,
    creds: Credentials,
    metrics: Metrics,
    registry: Registry,
) -> tuple[DingTalkClient, ApiCounter | None]:
    counter = _api_counter(config, store) if box is None else None  # a sandbox costs no quota
    on_call = counter.hook(metrics.api_call) if counter is not None else metrics.api_call
    client = make_client(config, creds, store, base_url=box.url if box else None, on_call=on_call,
                         registry=registry)  # fmt: skip
    stack.callback(client.close)
    if counter is not None:
        from dispatcher.run.quota_alerts import quota_alert

        counter.on_warn = lambda month, used, quota: quota_alert(client, config, month, used, quota)
        metrics.watch_api_calls(counter)
    return client, counter


def _robots(
    config: Config,
    stack: ExitStack,
    store: StateStore,
    box: Sandbox | None,
    registry: Registry,
    counter: ApiCounter | None,
    metrics: Metrics,
) -> RobotSender | None:
    """The group robots; a sandbox app registers each with the sandbox and sends them there."""
    if not config.robots:
        return None
    from dispatcher.robot.client import RobotClient, RobotPacer
    from dispatcher.robot.webhook import access_token
    from dispatcher.run.robots import RobotSender, robots_from
    from dispatcher.store.robotsends import RobotSends

    robots = robots_from(config, sandbox=box is not None)
    remote = bool(getattr(box, "remote", False))
    if remote:  # another process: it never learns the real webhooks and secrets
        robots = {name: _stand_in(robot) for name, robot in robots.items()}
    if box is not None:
        for robot in robots.values():
            box.add_robot(robot.name, access_token(robot.webhook), robot.secret, robot.keyword)
    on_call = counter.hook(metrics.api_call) if counter is not None else metrics.api_call
    client = RobotClient(RobotPacer(RobotSends(store)), secrets=registry.secrets,
                         base_url=box.url if box is not None else None, on_call=on_call)  # fmt: skip
    stack.callback(client.close)
    for robot in robots.values():
        client.remember(robot)
    return RobotSender(client, robots, stand_ins=remote)


def _stand_in(robot: Robot) -> Robot:
    from dispatcher.robot.client import Robot
    from dispatcher.run.robots import SANDBOX_WEBHOOK

    secret = f"SECsandbox{robot.name}" if robot.secret else None  # still signed, with a fake secret
    return Robot(robot.name, SANDBOX_WEBHOOK.format(name=robot.name), secret, robot.keyword)


def _api_counter(config: Config, store: StateStore) -> ApiCounter:
    from dispatcher.schedule import to_zone
    from dispatcher.store.apicalls import ApiCounter

    return ApiCounter(store, to_zone(config.timezone), config.dingtalk.monthly_quota)


@contextmanager
def open_store(config: Config, *, create: bool = True, sandbox: bool = False) -> Iterator[StateStore | None]:
    """Only the state store (`sandbox`: the sandbox's), for commands that read history (see
    store.db.open_state)."""
    from dispatcher.store.db import open_state

    with open_state(config.base_dir, config.state, create=create, sandbox=sandbox) as store:
        yield store


@contextmanager
def open_sources(config: Config) -> Iterator[Sources]:
    """Only the sources, for commands that query without delivering (preview, dry runs)."""
    sources = build_sources(config)
    try:
        yield sources
    finally:
        sources.dispose()
