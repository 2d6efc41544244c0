"""`dispatcher send` says what it is doing while it does it: a live line on a terminal (a real pty),
one line per stage on a pipe; the receipt wait counts down. A real sandbox over HTTP, a real SQLite
database, the real CLI in a subprocess. The tests poll the output; none measures time."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dispatcher.sandbox import Sandbox, SandboxOptions
from tests.conftest import REPO

AT = "2026-11-28T10:00+08:00"
WAIT = "5s"  # receipt_wait: long enough for the countdown to tick on screen
DEADLINE = 180.0
STAGES = ["query", "render", "message", "send", "waiting", "sent", "receipts"]


@pytest.fixture
def sandbox():
    with Sandbox(SandboxOptions()) as box:
        yield box


def _setup(project: Path, sandbox: Sandbox) -> tuple[list[str], dict[str, str]]:
    config = project / "reports.yaml"
    text = config.read_text(encoding="utf-8")
    agent = "  agent_id: ${TEST_DT_AGENT:-}\n"
    config.write_text(text.replace(agent, f"{agent}  receipt_wait: {WAIT}\n"), encoding="utf-8")
    opts = sandbox.options
    env = {**os.environ, "TEST_DT_KEY": opts.app_key, "TEST_DT_SECRET": opts.app_secret,
           "TEST_DT_AGENT": str(opts.agent_id), "DINGTALK_API_BASE": sandbox.url}  # fmt: skip
    args = [sys.executable, "-m", "dispatcher", "send", "daily", "-c", str(config), "--at", AT]
    return args, env


def _read_all(fd: int, proc: subprocess.Popen[bytes]) -> bytes:
    """Everything the child writes to the pty, until it exits and the pty is drained."""
    out, deadline = b"", time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
        raise AssertionError(f"send did not finish: {out!r}")
    return out


def test_on_a_terminal_send_shows_a_live_line_that_counts_down_the_receipt_wait(project, sandbox):
    args, env = _setup(project, sandbox)
    main, child = pty.openpty()
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdin=child, stdout=child, stderr=child)
    os.close(child)
    try:
        screen = _read_all(main, proc).decode("utf-8", "replace")
    finally:
        os.close(main)
        proc.wait(timeout=DEADLINE)
    assert proc.returncode == 0, screen
    # A live line is text between two erases: the next stage (or the clear) replaces it.
    live = re.findall(r"\r\x1b\[K([^\r\n]+)(?=\r\x1b\[K)", screen)
    names = [line.split(" ", 1)[0] for line in live]
    assert list(dict.fromkeys(names)) == ["query", "render", "send", "waiting"], repr(screen)
    left = [int(s) for s in re.findall(r"for receipts, (\d+)s left", screen)]
    assert len(set(left)) >= 2 and left == sorted(left, reverse=True), left  # it counts down
    assert "\r\x1b[Ksent " in screen, "the result starts on a cleared line"
    assert "unread 2" in screen


def test_on_a_pipe_send_prints_one_line_per_stage_in_order(project, sandbox):
    args, env = _setup(project, sandbox)
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\r" not in proc.stdout and "\x1b" not in proc.stdout
    lines = proc.stdout.splitlines()
    firsts = [line.split(" ", 1)[0] for line in lines]
    order = [firsts.index(stage) for stage in STAGES]
    assert order == sorted(order), lines
    [waiting] = [line for line in lines if line.startswith("waiting ")]
    assert re.fullmatch(r"waiting +for receipts, [1-5]s left", waiting), waiting
