"""The benchmark's quick mode runs, writes its JSON and table, and meets every target (CI's guard)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.common import max_in_window

REPO = Path(__file__).resolve().parent.parent
TARGETS = {
    "1 fan-out": 2,  # calls = floor, first and second run
    "2 rush hour": 5,  # time vs pacing floor, calls = floor, calls/s, recipients/min, runs sent
    "3 big result": 4,  # time and memory vs pandas.read_sql; capped rows and capped bytes (SQLite)
    "4 daemon at rest": 3,  # RSS, CPU per minute, nothing ran
    "5 CLI start": 2,  # validate time, validate does not import pandas
    "6 receipts": 3,  # quota calls per send batch: off = 1, result <= 2, full <= 4
}


def test_quick_benchmark_writes_every_target_and_all_pass(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    doc = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    table = (tmp_path / "latest.md").read_text(encoding="utf-8")

    assert doc["mode"] == "quick"
    failed = [f"{t['figure']}: {t['dispatcher']} ({t['target']})" for t in doc["targets"] if not t["passed"]]
    assert failed == [], result.stdout[-3000:] + result.stderr[-3000:]
    counted = {name: sum(r["passed"] is not None for r in s["rows"]) for name, s in doc["scenarios"].items()}
    assert counted == TARGETS
    assert result.returncode == 0
    assert table.count("| PASS |") == sum(TARGETS.values())
    assert "PASS: every target met" in result.stdout


def test_window_maximum_counts_only_events_less_than_a_window_apart() -> None:
    events = [(0.0, 5), (0.5, 5), (1.0, 5), (1.2, 1), (3.0, 2)]
    assert max_in_window(events, 1.0) == 11  # 0.5, 1.0 and 1.2; the one at 0.0 is a full second before 1.0
    assert max_in_window(events, 60.0) == 18
    assert max_in_window([], 1.0) == 0
