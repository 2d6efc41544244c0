"""Run the daemon in this process on a fake clock: each pass of its loop, then the clock jumps ahead.

The same parts as `dispatcher run` (open_app, Daemon, its worker pool), against a real sandbox and
a real SQLite ledger; only "now" is replaced. The fake clock advances by the loop's own sleep, and
only once the worker pool is idle, so seconds of schedule take milliseconds and nothing races.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatcher import clock, logs
from dispatcher.app import open_app
from dispatcher.config.check import load_config
from dispatcher.daemon.health import HealthState
from dispatcher.daemon.loop import Daemon
from dispatcher.run.metrics import Metrics
from dispatcher.sandbox import Sandbox
from tests.daemon_harness import DEADLINE, LogLine


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.instant = start

    def now(self) -> datetime:
        return self.instant

    def advance(self, seconds: float) -> None:
        self.instant += timedelta(seconds=seconds)


def even_second_now() -> datetime:
    """The real time, rounded down to an even second: a 2 s schedule's fire time."""
    now = datetime.now(UTC).replace(microsecond=0)
    return now - timedelta(seconds=now.second % 2)


class Events(logging.Handler):
    """The daemon's events as LogLines, stamped with the fake clock."""

    def __init__(self, fake: FakeClock) -> None:
        super().__init__(logging.DEBUG)
        self.fake = fake
        self.lines: list[LogLine] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = logs._fields(record)
        self.lines.append(LogLine(self.fake.now(), record.levelname, record.getMessage(), fields))

    def events(self, name: str, **fields: Any) -> list[LogLine]:
        return [
            e for e in self.lines if e.event == name and all(e.fields.get(k) == v for k, v in fields.items())
        ]


def text(events: Events) -> str:
    """Every event as one text line, as the daemon's stderr would show it."""
    return "\n".join(f"{e.event} {e.fields}" for e in events.lines)


class Stepper:
    """One in-process daemon; `run_for`/`run_until` drive it on the fake clock."""

    def __init__(self, daemon: Daemon, fake: FakeClock, events: Events) -> None:
        self.daemon, self.fake, self.events = daemon, fake, events

    def step(self) -> None:
        sleep = self.daemon.step()
        self.settle()
        self.fake.advance(max(sleep, 0.001))

    def settle(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while not self.daemon.runs.idle():
            assert time.monotonic() < deadline, "the worker pool did not go idle"
            time.sleep(0.005)

    def run_for(self, seconds: float) -> None:
        until = self.fake.now() + timedelta(seconds=seconds)
        while self.fake.now() < until:
            self.step()

    def run_until(self, check: Callable[[], object], what: str, limit: float = 120.0) -> None:
        """Step until `check()` holds, at most `limit` seconds of fake time."""
        until = self.fake.now() + timedelta(seconds=limit)
        while not check():
            assert self.fake.now() < until, f"timed out (fake clock) waiting for {what}"
            self.step()


@contextmanager
def inprocess_daemon(
    config: Path,
    sandbox: Sandbox,
    state_url: str,
    fake: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    name: str = "inprocess",
) -> Iterator[Stepper]:
    """A daemon built as `dispatcher run` builds it, stopped and closed on exit."""
    opts = sandbox.options
    for key, value in {"DINGTALK_API_BASE": sandbox.url, "DINGTALK_APP_KEY": opts.app_key,
                       "DINGTALK_APP_SECRET": opts.app_secret, "DINGTALK_AGENT_ID": str(opts.agent_id),
                       "DISPATCHER_STATE_URL": state_url}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(clock, "now", fake.now)
    events = Events(fake)
    logs.log.addHandler(events)
    previous_level = logs.log.level
    logs.log.setLevel(logging.DEBUG)
    try:
        with ExitStack() as stack:
            app = stack.enter_context(open_app(load_config(config), metrics=Metrics(), owner=name))
            daemon = Daemon(app, config, HealthState(started_at=time.time()))
            daemon.announce()
            stepper = Stepper(daemon, fake, events)
            yield stepper
            daemon.stop.set()
            stepper.settle()
            daemon.runs.close()
    finally:
        logs.log.removeHandler(events)
        logs.log.setLevel(previous_level)
