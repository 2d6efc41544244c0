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


# -- issue 14's scenarios: their pure parts --


def test_the_generated_5000_report_config_stays_under_the_config_size_limit(tmp_path: Path) -> None:
    from bench.generate import GROUPS, SOURCES, build
    from dispatcher.config.check import load_config
    from dispatcher.config.yamlfile import MAX_FILE_BYTES

    made = build(tmp_path, 5000, minute=17)
    config = load_config(made.path, env={"DINGTALK_APP_KEY": "k", "DINGTALK_APP_SECRET": "s",
                                         "DINGTALK_AGENT_ID": "1"})  # fmt: skip

    assert made.path.stat().st_size < MAX_FILE_BYTES
    assert (len(config.reports), len(config.sources), len(config.recipients)) == (5000, SOURCES, GROUPS)
    kinds = {"cron" if isinstance(r.schedule, str) else "every" for r in config.reports.values()}
    assert kinds == {"cron", "every"}
    assert all(r.schedule.startswith("17 ") for r in config.reports.values() if isinstance(r.schedule, str))


def test_rss_slope_is_per_ten_minutes_after_warm_up_and_ignores_an_earlier_incarnation() -> None:
    from bench.soak import _slope

    flat = [(t, 100.0, 1) for t in range(0, 3600, 10)]
    growing = [(t, 100.0 + t / 600, 2) for t in range(0, 3600, 10)]  # 1 MB per 10 minutes

    assert _slope(flat, warm_after=600, warm_up=300) == 0
    assert abs((_slope(flat[:10] + growing, warm_after=600, warm_up=300) or 0) - 1.0) < 1e-9
    assert _slope(growing[:2], warm_after=0, warm_up=0) is None  # too few samples to judge


def test_a_replica_restarted_late_in_the_window_is_judged_after_its_own_warm_up() -> None:
    from bench.soak import _slope

    before = [(t, 120.0, 1) for t in range(0, 1500, 10)]
    # Restarted at 1,500 s: 70 MB rising to 120 MB over its first 3 minutes, then flat.
    after = [(t, 70.0 + min(50.0, (t - 1500) / 180 * 50), 2) for t in range(1500, 3600, 10)]
    assert _slope(before + after, warm_after=300, warm_up=300) == 0


def test_the_soak_expects_every_report_at_every_fire_time_of_the_window() -> None:
    from datetime import UTC, datetime, timedelta

    from bench.soak import QUICK_LOAD, REPORTS, _expected

    first = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
    expected = _expected({"first_fire": first, "last_fire": first + timedelta(seconds=60)}, QUICK_LOAD)

    assert len(expected) == REPORTS * 5  # 15 s apart: 0, 15, 30, 45 and 60 s
    assert ("s00", first + timedelta(seconds=45)) in expected


def test_burst_lag_percentiles_and_an_empty_burst() -> None:
    from bench.burst import _dist

    lags = [0.1 * i for i in range(1, 101)]
    assert _dist(lags) == {"p50": lags[50], "p99": lags[98], "max": lags[-1], "n": 100}
    assert _dist([])["p99"] is None


def test_the_budget_check_fails_a_forecast_more_than_five_percent_off() -> None:
    from bench.budget import MODES, _outcome

    monthly = {m: {"forecast": 1000, "reports": 5003, "seconds": 1.0} for m in MODES}
    week = {
        m: {"predicted": 1000, "counted": 1000, "by_endpoint": {}, "reports": 23, "runs": {}} for m in MODES
    }
    week["full"]["counted"] = 940  # 6% under the forecast
    rows = _outcome(5000, 250, 7, monthly, week).rows

    verdicts = [r.verdict for r in rows if r.passed is not None]
    assert verdicts == ["PASS", "PASS", "FAIL"]
    assert exit_code(rows, check=True) == 1


def many_sample(reports: int, seconds_: float) -> dict[str, object]:
    """Scenario 7's measurements at one size, every wall time `seconds_`."""
    times = {"validate": [seconds_], "list": [seconds_], "scheduled": seconds_, "reload": seconds_}
    cpu = {"validate_cpu": [seconds_], "list_cpu": [seconds_], "startup_cpu_seconds": 1.0}
    rest = {"peak_rss_mb": 100.0, "cpu_per_minute": 0.1, "window_seconds": 60.0, "reload_step_seconds": 0.1}
    counts = {"next_fires_moved": 0, "runs_started": 0, "api_calls": 0, "reports": reports}
    return times | cpu | rest | counts | {"reload_validated": 1}


def test_many_reports_a_reload_that_validates_more_than_the_changed_report_fails() -> None:
    from bench.many import _outcome

    figure = "reports the one-report reload validated again (the others reused from the last load)"
    good = _outcome({500: many_sample(500, 0.2), 5000: many_sample(5000, 1.0)}).rows
    assert by_figure(good, figure).verdict == "PASS"
    bad = _outcome({500: many_sample(500, 0.2), 5000: many_sample(5000, 1.0) | {"reload_validated": 5000}})
    assert by_figure(bad.rows, figure).verdict == "FAIL" and exit_code(bad.rows, check=True) == 1


def test_many_reports_the_team_config_gates_the_issue_28_cpu_at_rest() -> None:
    from bench.many import TEAM_CPU_LIMIT_PER_MINUTE, TEAM_LIMITS, _outcome

    busy = {5000: many_sample(5000, 1.6) | {"cpu_per_minute": 0.6}}
    uniform = _outcome(busy, "uniform config").rows
    team = _outcome(busy, "team config", TEAM_LIMITS, TEAM_CPU_LIMIT_PER_MINUTE).rows
    figure = "CPU seconds per minute at rest (5,000 reports, 60.0 s window)"
    assert by_figure(uniform, figure).verdict == "PASS" and by_figure(team, figure).verdict == "FAIL"
    # The wall times are reported only: a MISS (1.6 s against 1.5 s) never fails --check.
    quiet = {5000: busy[5000] | {"cpu_per_minute": 0.4}}
    rows = _outcome(quiet, "team config", TEAM_LIMITS, TEAM_CPU_LIMIT_PER_MINUTE).rows
    assert by_figure(
        rows, "dispatcher list: wall time (5,000 reports; reported, never fails --check)"
    ).verdict == ("MISS")
    assert exit_code(rows, check=True) == 0


def test_many_reports_growth_worse_than_linear_fails() -> None:
    from bench.many import _outcome

    def sample(reports: int, seconds_: float) -> dict[str, object]:
        times = {"validate": [seconds_], "list": [seconds_], "scheduled": seconds_, "reload": seconds_}
        cpu = {"validate_cpu": [seconds_], "list_cpu": [seconds_], "startup_cpu_seconds": 1.0}
        rest = {
            "peak_rss_mb": 100.0,
            "cpu_per_minute": 0.1,
            "window_seconds": 60.0,
            "reload_step_seconds": 0.1,
        }
        return (
            times
            | cpu
            | rest
            | {"next_fires_moved": 0, "runs_started": 0, "api_calls": 0, "reports": reports}
            | {"reload_validated": 1}
        )

    linear = _outcome({500: sample(500, 0.2), 5000: sample(5000, 1.0)}).rows
    worse = _outcome({500: sample(500, 0.1), 5000: sample(5000, 1.2)}).rows  # 12× for 10× reports

    assert (
        by_figure(linear, "growth 500 -> 5,000 reports, worst of the four wall times above").verdict == "PASS"
    )
    assert (
        by_figure(worse, "growth 500 -> 5,000 reports, worst of the four wall times above").verdict == "FAIL"
    )


def test_a_full_run_keeps_the_hour_long_soak_section_and_a_soak_run_replaces_it(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("old table\n", encoding="utf-8")
    results.write_text(report.soak_section(results, "soak 1\n"), encoding="utf-8")
    results.write_text(report.soak_section(results, "soak 2\n"), encoding="utf-8")
    text = report.with_soak("new table\n", results)

    assert text.startswith("new table\n") and "old table" not in text
    assert text.count(report.SOAK_HEADING) == 1 and text.endswith("soak 2\n")


def test_a_full_run_and_a_soak_run_keep_every_dated_section(tmp_path: Path) -> None:
    """RESULTS.md's sections of each round, written by hand, outlive the runs that rewrite it."""
    results = tmp_path / "RESULTS.md"
    dated = "\n## Issue 28 (2026-12-06)\n\nbefore / after\n\n## Issue 14 (2026-11-30)\n\nfigures\n"
    results.write_text("old table\n" + dated, encoding="utf-8")
    results.write_text(report.with_soak("new table\n", results), encoding="utf-8")
    assert results.read_text(encoding="utf-8") == "new table\n" + dated
    results.write_text(report.soak_section(results, "soak 1\n"), encoding="utf-8")
    results.write_text(report.soak_section(results, "soak 2\n"), encoding="utf-8")
    results.write_text(report.with_soak("newer table\n", results), encoding="utf-8")
    text = results.read_text(encoding="utf-8")
    assert text.startswith("newer table\n" + dated.rstrip("\n")) and text.endswith("soak 2\n")
    assert text.count(report.SOAK_HEADING) == 1 and "soak 1" not in text and text.count("## Issue") == 2


def test_the_team_generator_writes_a_valid_config_with_every_shape(tmp_path: Path) -> None:
    from bench import generate_team
    from dispatcher.config.check import check_config

    made = generate_team.build(tmp_path, 400, minute=7, busy_hour=3)
    env = {"DINGTALK_APP_KEY": "k", "DINGTALK_APP_SECRET": "s", "DINGTALK_AGENT_ID": "1"}
    config, problems = check_config(made.path, env)
    assert problems == [] and config is not None and len(config.reports) == 400
    reports = list(config.reports.values())
    assert {r.msgtype for r in reports} >= {"markdown", "text"}
    assert any(r.alert for r in reports) and any(r.chart for r in reports) and any(r.labels for r in reports)
    assert (
        any(r.template for r in reports) and any(r.query for r in reports) and any(r.params for r in reports)
    )
    assert "title: 报表 00001\n" in made.path.read_text(encoding="utf-8")  # what scenario 7's reload edits
