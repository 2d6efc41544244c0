"""`--clock-edge` (tests/clock_edge.py, run by .ci/edges) starts each test just before the instant,
in the test's process and in the processes it starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PROBE = """
import subprocess, sys
from datetime import UTC, datetime

EDGE = datetime(2027, 1, 31, 16, 0, tzinfo=UTC)  # midnight of 1 February in Shanghai, a Monday


def child_now():
    code = "import datetime; print(datetime.datetime.now(datetime.UTC).isoformat())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return datetime.fromisoformat(out.strip())


def check():
    here = datetime.now(UTC)
    assert 0 < (EDGE - here).total_seconds() <= 5, here
    assert abs((child_now() - here).total_seconds()) < 30, "a child process travels too"


def test_first():
    check()


def test_second_starts_before_the_edge_again():
    check()
"""


def test_every_test_starts_just_before_the_edge_and_so_do_its_subprocesses(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.clock_edge"]
    edge = ["--clock-edge", "2027-01-31T16:00:00+00:00", "--clock-edge-lead", "5"]
    result = subprocess.run([*pytest, *edge, "test_probe.py"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    today = subprocess.run([*pytest, "test_probe.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert "2 failed" in today.stdout, "the probe fails on today's clock: it checks the travel"
