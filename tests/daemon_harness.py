"""Run `dispatcher run` as a real subprocess against a real sandbox and a real SQLite ledger.

Shared by the tests/test_daemon_*.py files. Every daemon writes its stdout and stderr to files in
the test's folder (a pipe nobody reads would block it); `Daemons.close()` kills whatever is left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
import yaml

from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.db import StateStore
from dispatcher.store.ledger import Ledger, Run

REPO = Path(__file__).resolve().parent.parent
ZONE = ZoneInfo("Asia/Shanghai")
APP_SECRET = "sandbox-secret"  # the sandbox's default; must never show up in a daemon's output
DEADLINE = (
    120.0  # generous: two shared cores, often loaded, several Python processes importing pandas at once
)
ALERT_TITLE = "报表运行失败"
_FOOTER = re.compile(r"数据截至 (\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})?)")  # seconds: sub-minute schedules
_TEXT_LINE = re.compile(r"^(\S+) +([A-Z]+) +(\S+)(.*)$")
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')

T = TypeVar("T")


# -- waiting --


def wait_until(check: Callable[[], T | None], what: str, timeout: float = DEADLINE, every: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


# -- files the daemon reads --


def make_source(path: Path, rows: int = 3) -> Path:
    """A small real SQLite database with one table `t`."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(rows)])
    conn.commit()
    conn.close()
    return path


def report(title: str, every: str = "2s", to: str = "team", **keys: Any) -> dict[str, Any]:
    """An interval report counting the rows of `t`; `keys` override or add report keys.

    `catchup: all` by default: on a loaded machine the daemon's loop may wake past a fire time's
    on-time slack (1 s for a 2 s schedule), and `last` would then record it as missed. Tests that
    count consecutive fire times prove that none is lost or sent twice, not that the machine had a
    core free at each second; the tests of `last` and `none` say so themselves.
    """
    base: dict[str, Any] = {
        "title": title,
        "schedule": {"every": every},
        "source": "src",
        "sql": "SELECT COUNT(*) AS n FROM t",
        "to": [to],
        "on_empty": "send",
        "catchup": "all",
    }
    return {**base, **keys}


def config_text(
    reports: dict[str, dict[str, Any]],
    daemon: dict[str, Any] | None = None,
    sources: dict[str, str] | None = None,
) -> str:
    doc: dict[str, Any] = {
        "timezone": "Asia/Shanghai",
        "sources": {"src": "sqlite:///src.db", **(sources or {})},
        "dingtalk": {
            "app_key": "${DINGTALK_APP_KEY}",
            "app_secret": "${DINGTALK_APP_SECRET}",
            "agent_id": "${DINGTALK_AGENT_ID}",
            "receipt_wait": "0.1s",  # the sandbox's tasks finish at once: no need for the default 5 s
        },
        "recipients": {"team": {"userids": ["manager4974"]}, "admins": {"userids": ["oncall01"]}},
        "reports": reports,
    }
    if daemon:
        doc["daemon"] = daemon
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


def replace_file(path: Path, text: str) -> Path:
    """Write `text` atomically, as an operator's editor or deploy tool would."""
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)
    return path


def project(folder: Path, reports: dict[str, dict[str, Any]], **config: Any) -> Path:
    """A config folder with src.db and reports.yaml; returns the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "src.db").exists():
        make_source(folder / "src.db")
    return replace_file(folder / "reports.yaml", config_text(reports, **config))


# -- the daemon's log --


@dataclass(frozen=True)
class LogLine:
    ts: datetime
    level: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)


def parse_line(line: str) -> LogLine | None:
    """One stderr line in either --log-format; None for anything that is not an event line."""
    if line.startswith("{"):
        data = json.loads(line)
        fields = {k: v for k, v in data.items() if k not in ("ts", "level", "event")}
        return LogLine(datetime.fromisoformat(data["ts"]), data["level"].upper(), data["event"], fields)
    match = _TEXT_LINE.match(line)
    if match is None:
        return None
    try:
        ts = datetime.fromisoformat(match[1])
    except ValueError:
        return None
    fields = {k: _value(v) for k, v in _FIELD.findall(match[4])}
    return LogLine(ts, match[2], match[3], fields)


def _value(text: str) -> Any:
    """A text-format field: JSON when it reads as JSON (quoted strings, numbers, lists), else as is."""
    try:
        return json.loads(text)
    except ValueError:
        return text


# -- the process --


class DaemonProcess:
    """One `python -m dispatcher run` subprocess with its output in files."""

    def __init__(self, folder: Path, name: str, config: Path, env: dict[str, str], args: tuple[str, ...]):
        self.name = name
        self.config = config
        self.env = env
        self.args = args
        self.stdout_path = folder / f"{name}.stdout"
        self.stderr_path = folder / f"{name}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> DaemonProcess:
        command = [sys.executable, "-m", "dispatcher", "run", "-c", str(self.config), *self.args]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                command, cwd=self.config.parent, env=self.env, stdout=out, stderr=err
            )
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def lines(self) -> list[LogLine]:
        parsed = (parse_line(line) for line in self.stderr().splitlines())
        return [line for line in parsed if line is not None]

    def events(self, name: str, **fields: Any) -> list[LogLine]:
        return [
            line
            for line in self.lines()
            if line.event == name and all(line.fields.get(k) == v for k, v in fields.items())
        ]

    def wait_for(self, name: str, count: int = 1, timeout: float = DEADLINE, **fields: Any) -> LogLine:
        """The `count`-th `name` event with these fields; fails early if the daemon dies."""

        def found() -> LogLine | None:
            hits = self.events(name, **fields)
            if len(hits) >= count:
                return hits[count - 1]
            if not self.alive():
                raise AssertionError(f"{self.name} exited before logging {name}:\n{self.stderr()[-3000:]}")
            return None

        return wait_until(found, f"{self.name} to log {name} x{count} {fields or ''}", timeout)

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=10)


class Daemons:
    """Starts daemons wired to one sandbox and one state file; `close()` kills every one left."""

    def __init__(self, folder: Path, sandbox: Sandbox, state_url: str) -> None:
        self.folder = folder
        self.sandbox = sandbox
        self.state_url = state_url
        self.started: list[DaemonProcess] = []

    def env(self, **extra: str) -> dict[str, str]:
        mine = ("DINGTALK_", "DISPATCHER_", "SHOP_DB_URL")
        env = {k: v for k, v in os.environ.items() if not k.startswith(mine)}
        env |= {
            "DINGTALK_API_BASE": self.sandbox.url,
            "DINGTALK_APP_KEY": self.sandbox.options.app_key,
            "DINGTALK_APP_SECRET": self.sandbox.options.app_secret,
            "DINGTALK_AGENT_ID": str(self.sandbox.options.agent_id),
            "DISPATCHER_STATE_URL": self.state_url,
        }
        return env | extra

    def start(
        self, config: Path, *args: str, name: str | None = None, env: dict[str, str] | None = None
    ) -> DaemonProcess:
        name = name or f"daemon{len(self.started) + 1}"
        daemon = DaemonProcess(self.folder, name, config, env or self.env(), args)
        self.started.append(daemon)
        return daemon.start()

    def close(self) -> None:
        for daemon in self.started:
            daemon.kill()


# -- the ledger --


@contextmanager
def open_ledger(state_url: str) -> Iterator[Ledger]:
    store = StateStore(state_url)
    try:
        yield Ledger(store)
    finally:
        store.close()


def runs(state_url: str, report_id: str | None = None) -> list[Run]:
    """Every ledger row (of one report), oldest fire time first."""
    with open_ledger(state_url) as ledger:
        return list(reversed(ledger.history(report_id, limit=100_000)))


def fire_times(rows: list[Run], state: str) -> list[datetime]:
    return sorted(r.fire_time for r in rows if r.state == state)


def count_state(state_url: str, report_id: str, state: str) -> int:
    return len(fire_times(runs(state_url, report_id), state))


def sent_since(state_url: str, since: datetime, report_id: str | None = None) -> bool:
    """Whether a run with a fire time at or after `since` has been sent."""
    return any(t >= since for t in fire_times(runs(state_url, report_id), "sent"))


# -- what reached the sandbox --


def footer_time(msg: dict[str, Any]) -> datetime | None:
    """The fire time a message says it is for, from its `数据截至 …` footer."""
    body = msg.get("markdown", {}).get("text") or msg.get("text", {}).get("content") or ""
    match = _FOOTER.search(body)
    return None if match is None else datetime.fromisoformat(match[1]).replace(tzinfo=ZONE)


def task_fire_times(sandbox: Sandbox, title: str) -> list[datetime]:
    """The fire time of every asyncsend_v2 task of the report titled `title`, in send order."""
    found = []
    for task in sandbox.tasks():
        msg = task["msg"]
        if msg.get("markdown", {}).get("title") == title:
            fire = footer_time(msg)
            assert fire is not None, f"a task of {title!r} has no footer: {msg}"
            found.append(fire)
    return found


def alerts_to(sandbox: Sandbox, userid: str = "oncall01") -> list[dict[str, Any]]:
    return [m for m in sandbox.messages(userid) if ALERT_TITLE in m["msg"]["markdown"]["title"]]


def assert_consecutive(times: list[datetime], step: float) -> None:
    """Sorted, distinct, `step` seconds apart, and aligned to `step` from local midnight."""
    assert times, "no fire times"
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert gaps == [step] * len(gaps), f"fire times are not consecutive: {times}"
    for t in times:
        local = t.astimezone(ZONE)
        since_midnight = local - local.replace(hour=0, minute=0, second=0, microsecond=0)
        assert since_midnight.total_seconds() % step == 0, f"{local} is not aligned to {step}s"


# -- fixtures (import them into a test module to use them) --


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(), port=0) as running:
        yield running


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'state.db'}"


@pytest.fixture
def daemons(tmp_path: Path, sandbox: Sandbox, state_url: str) -> Iterator[Daemons]:
    started = Daemons(tmp_path, sandbox, state_url)
    try:
        yield started
    finally:
        started.close()
