"""The benchmark's pure parts: which missed targets fail `--check`, the JSON verdict, the window count.

The run itself is not a test: `.ci/run` calls `python -m bench --quick --check` after the suite, so
its wall times are not measured while the tests load the machine.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import clistart, report
from bench.common import Outcome, Row, max_in_window
from bench.run import _run_one, exit_code

CLI_SAMPLES = {"validate": [], "list": [], "import pandas": [], "python -c pass": []}
META = {"latency_ms": 50, "cpus": 2, "python": "3.11"}
RATIO = "dispatcher validate: wall time"
ABSOLUTE = "dispatcher validate: wall time in absolute seconds (reported, never fails --check)"


def cli_rows(validate: float, pandas: float) -> list[Row]:
    medians = {"validate": validate, "list": 0.4, "import pandas": pandas, "python -c pass": 0.02}
    return clistart._outcome(medians, CLI_SAMPLES, pandas=[]).rows


def by_figure(rows: list[Row], figure: str) -> Row:
    [row] = [r for r in rows if r.figure == figure]
    return row


def test_a_slow_validate_on_a_loaded_machine_is_reported_but_passes_the_check() -> None:
    rows = cli_rows(validate=0.9, pandas=1.5)  # everything three times slower than on a quiet machine

    assert by_figure(rows, ABSOLUTE).verdict == "MISS"
    assert by_figure(rows, RATIO).verdict == "PASS"  # 0.6× import pandas
    assert exit_code(rows, check=True) == 0
    assert "PASS: every target met (1 reported-only target(s) missed)" == report.summary(rows)


def test_validate_slower_than_importing_pandas_fails_the_check_even_under_half_a_second() -> None:
    rows = cli_rows(validate=0.3, pandas=0.2)

    assert by_figure(rows, RATIO).verdict == "FAIL"
    assert by_figure(rows, ABSOLUTE).verdict == "PASS"
    assert exit_code(rows, check=True) == 1
    assert exit_code(rows, check=False) == 0  # without --check the run only reports
    assert report.summary(rows).startswith("FAIL: 1 target(s) failed")


def test_validate_importing_pandas_fails_the_check() -> None:
    medians = {"validate": 0.1, "list": 0.4, "import pandas": 0.3, "python -c pass": 0.02}
    rows = clistart._outcome(medians, CLI_SAMPLES, pandas=["pandas"]).rows

    assert by_figure(rows, "dispatcher validate imports pandas").verdict == "FAIL"
    assert exit_code(rows, check=True) == 1


def test_a_crashed_scenario_is_a_failing_row_and_the_json_says_so(tmp_path: Path) -> None:
    def crash() -> Outcome:
        raise RuntimeError("sandbox did not start")

    crashed = _run_one("rush", crash)
    fine = Outcome("cli", cli_rows(validate=0.9, pandas=1.5))
    json_path, md_path = report.write(tmp_path, [crashed, fine], {"mode": "quick", "finished": "now"} | META)
    doc = json.loads(json_path.read_text(encoding="utf-8"))

    assert [r.verdict for r in crashed.rows] == ["FAIL"]
    assert exit_code(crashed.rows + fine.rows, check=True) == 1
    assert doc["passed"] is False
    assert {t["figure"]: (t["passed"], t["gates"]) for t in doc["targets"]}[ABSOLUTE] == (False, False)
    assert "| MISS |" in md_path.read_text(encoding="utf-8")


def test_window_maximum_counts_only_events_less_than_a_window_apart() -> None:
    events = [(0.0, 5), (0.5, 5), (1.0, 5), (1.2, 1), (3.0, 2)]
    assert max_in_window(events, 1.0) == 11  # 0.5, 1.0 and 1.2; the one at 0.0 is a full second before 1.0
    assert max_in_window(events, 60.0) == 18
    assert max_in_window([], 1.0) == 0
