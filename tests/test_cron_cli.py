"""Seeing the future (issue 26 item 9): `dispatcher cron EXPR` and `dispatcher list ID --next N`.

"Now" is injected (`--at`, or a replaced `clock.now` in process); nothing depends on today's date.
Europe/Berlin starts summer time on 2026-03-29 (02:00 -> 03:00) and ends it on 2026-10-25.
"""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatcher import clock
from dispatcher.cli.main import main
from tests.conftest import run_cli


def test_cron_explains_weekdays_and_crosses_berlins_spring_forward():
    result = run_cli("cron", "0 9 * * 1-5", "--tz", "Europe/Berlin", "--next", "3",
                     "--at", "2026-03-26T12:00:00+01:00")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "at 09:00 on Monday to Friday" in lines[0]
    assert lines[-3:] == [
        "  2026-03-27 09:00 Fri  UTC+01:00 CET",
        "  2026-03-30 09:00 Mon  UTC+02:00 CEST",
        "  2026-03-31 09:00 Tue  UTC+02:00 CEST",
    ], result.stdout
    assert "Europe/Berlin" in result.stdout


def test_cron_fires_a_skipped_wall_time_once_after_the_gap_as_the_daemon_does():
    result = run_cli("cron", "30 2 * * *", "--tz", "Europe/Berlin", "--next", "2", "--at", "2026-03-28T12:00")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == [
        "  2026-03-29 03:00 Sun  UTC+02:00 CEST",
        "  2026-03-30 02:30 Mon  UTC+02:00 CEST",
    ], result.stdout


def test_cron_counts_from_the_injected_now_by_default(monkeypatch, capsys):
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 11, 28, 0, 0, tzinfo=UTC))
    assert main(["cron", "*/15 9-17 * * mon-fri", "--tz", "Asia/Shanghai", "--next", "2"]) == 0
    out = capsys.readouterr().out
    assert "every 15 minutes during the hours 09 to 17, on Monday to Friday" in out
    # 2026-11-28 is a Saturday: the next fire is Monday 09:00.
    assert out.splitlines()[-2:] == [
        "  2026-11-30 09:00 Mon  UTC+08:00 CST",
        "  2026-11-30 09:15 Mon  UTC+08:00 CST",
    ]


@pytest.mark.parametrize(
    "expression,words",
    [
        ("0 0 13 * 5", "at 00:00 on day 13 of the month and on every Friday"),
        ("*/15 * * * *", "every 15 minutes, every day"),
        ("@daily", "at 00:00 every day"),
        ("0 8 * 1-3,12 sat,sun", "at 08:00 on Saturday and Sunday in January to March and December"),
    ],
)
def test_cron_words_name_the_days_hours_and_minutes(expression, words, capsys):
    assert main(["cron", expression, "--tz", "UTC", "--at", "2026-01-01T00:00:00+00:00"]) == 0
    assert words in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["cron", "0 9 * *"], "is not a 5-field cron expression"),
        (["cron", "0 25 * * *"], "hour field '25' is out of range 0-23"),
        (["cron", "0 9 * * 1", "--tz", "Asia/Shanghia"], "did you mean 'Asia/Shanghai'?"),
    ],
)
def test_a_bad_expression_or_zone_is_a_clear_error_with_exit_1(argv, message):
    result = run_cli(*argv)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")


@pytest.mark.parametrize("count", ["0", "-1", "x", "10001"])
def test_a_bad_next_count_is_a_usage_error(count):
    result = run_cli("cron", "0 9 * * *", "--next", count)
    assert result.returncode == 2 and "--next" in result.stderr and "Traceback" not in result.stderr


BERLIN_REPORT = """\
  weekly:
    title: Weekly
    schedule: "0 9 * * 1"
    timezone: Europe/Berlin
    source: shop
    query: daily.sql
    params: {day: "{{ yesterday }}"}
    to: [leads]
"""


def _with_berlin(project: Path) -> Path:
    config = project / "reports.yaml"
    config.write_text(config.read_text(encoding="utf-8") + BERLIN_REPORT, encoding="utf-8")
    return config


def test_list_next_prints_a_reports_fire_times_in_its_zone_across_the_fall_back(project):
    config = _with_berlin(project)
    result = run_cli("list", "weekly", "--next", "3", "--at", "2026-10-13T12:00:00+00:00", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "at 09:00 on Monday" in result.stdout and "Europe/Berlin" in result.stdout
    assert result.stdout.splitlines()[-3:] == [
        "  2026-10-19 09:00 Mon  UTC+02:00 CEST",
        "  2026-10-26 09:00 Mon  UTC+01:00 CET",
        "  2026-11-02 09:00 Mon  UTC+01:00 CET",
    ], result.stdout
    assert "daily" not in result.stdout.replace("daily.sql", "")


def test_list_next_json_and_injected_now(project, monkeypatch, capsys):
    config = _with_berlin(project)
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 11, 28, 2, 0, tzinfo=UTC))
    assert main(["list", "daily", "--next", "2", "--json", "-c", str(config)]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["id"] == "daily"
    assert row["next_fire_times"] == ["2026-11-29T09:00:00+08:00", "2026-11-30T09:00:00+08:00"]


def test_list_next_needs_a_report_and_a_known_one(project):
    config = str(project / "reports.yaml")
    result = run_cli("list", "--next", "3", "-c", config)
    assert result.returncode == 2 and "REPORT_ID" in result.stderr
    result = run_cli("list", "nope", "--next", "3", "-c", config)
    assert result.returncode == 1 and "no report named 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_readme_example_is_what_the_command_prints():
    from tests.docs_kit import section as docs_section

    section = docs_section("writing/schedules.md", "Schedules")
    block = section.split("  $ dispatcher cron", 1)[1].split("  ```", 1)[0]
    command, *expected = [line.removeprefix("  ") for line in block.splitlines()]
    result = run_cli("cron", *shlex.split(command))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected
