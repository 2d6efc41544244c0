"""What every scenario shares: result rows, child processes measured one by one, /proc readers."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LATENCY = 0.05  # seconds per sandbox call: the stand-in for the real network
SANDBOX_KEY, SANDBOX_SECRET, SANDBOX_AGENT = "dingsandboxkey", "sandbox-secret", 100000001
FLOOR_ENDPOINTS = ("gettoken", "getbymobile", "asyncsend_v2")
RECEIPT_ENDPOINTS = ("getsendprogress", "getsendresult")
T = TypeVar("T")


@dataclass
class Row:
    """One line of the results table. `passed` is None for a figure without a target.

    `gates` is False for a target in absolute seconds: a loaded machine stretches every wall time,
    so such a target is reported (MISS) but never fails `--check`; ratios against a side measured
    in the same run, counts and memory do.
    """

    scenario: str
    figure: str
    dispatcher: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    passed: bool | None = None
    gates: bool = True

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return ""
        return "PASS" if self.passed else ("FAIL" if self.gates else "MISS")

    @property
    def failed(self) -> bool:
        """A missed target that fails `--check`."""
        return self.passed is False and self.gates


@dataclass
class Outcome:
    """A scenario's rows for the table and its raw numbers for the JSON file."""

    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


# -- numbers --


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def mb(value: float) -> str:
    return f"{value:.0f} MB"


def max_in_window(events: Sequence[tuple[float, int]], window: float) -> int:
    """The largest total weight of events in any half-open span (t - window, t]."""
    ordered = sorted(events)
    best = total = start = 0
    for at, weight in ordered:
        total += weight
        while ordered[start][0] <= at - window:
            total -= ordered[start][1]
            start += 1
        best = max(best, total)
    return best


def call_time(call: dict[str, Any]) -> float:
    """A sandbox call's wall-clock time (it logs ISO-8601 instants) as a Unix timestamp."""
    return datetime.fromisoformat(call["at"]).timestamp()


def count_calls(calls: Iterable[dict[str, Any]], endpoints: Iterable[str]) -> int:
    wanted = set(endpoints)
    return sum(1 for c in calls if c["endpoint"] in wanted)


# -- child processes --


@dataclass
class ChildRun:
    returncode: int
    seconds: float  # wall time from spawn to exit
    peak_rss_mb: float  # this child's own high-water mark (wait4), not its siblings'
    cpu_seconds: float
    stdout: str
    stderr: str


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without DingTalk or dispatcher settings that would leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DINGTALK_", "DISPATCHER_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """Set `env` in this process for an in-process daemon or app, and put the old values back."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def sandbox_env(url: str, **extra: str) -> dict[str, str]:
    return clean_env(
        DINGTALK_API_BASE=url,
        DINGTALK_APP_KEY=SANDBOX_KEY,
        DINGTALK_APP_SECRET=SANDBOX_SECRET,
        DINGTALK_AGENT_ID=str(SANDBOX_AGENT),
        **extra,
    )


def run_child(
    cmd: Sequence[str], *, env: dict[str, str], cwd: Path | None = None, timeout: float = 600
) -> ChildRun:
    """Run one process to completion; its own peak RSS and CPU come from wait4's rusage."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env, cwd=cwd)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            returncode=proc.returncode,
            seconds=elapsed,
            peak_rss_mb=usage.ru_maxrss / 1024,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


def dispatcher_cmd(*args: str) -> list[str]:
    """`dispatcher ARGS` as a user runs it: the installed console script, else `python -m`."""
    script = Path(PYTHON).parent / "dispatcher"
    return [str(script), *args] if script.exists() else [PYTHON, "-m", "dispatcher", *args]


def checked(run: ChildRun, what: str) -> ChildRun:
    if run.returncode != 0:
        tail = "\n".join(run.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{what} exited with {run.returncode}:\n{tail}")
    return run


# -- a running process, seen through /proc --


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak so far) of a live process, in MB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process, all its threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(check: Callable[[], T], what: str, timeout: float, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
