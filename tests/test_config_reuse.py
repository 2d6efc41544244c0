"""The daemon's load reuses the reports its previous load validated cleanly (issue 28), and
only those: a changed report, a changed section they depend on, a changed variable, a query file
gone, a problem or a warning: each is checked afresh, with its own file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from dispatcher.config.check import check_config
from dispatcher.config.reuse import VALIDATED
from tests.conftest import BASE_CONFIG

MORE = """\
  weekly:
    title: 每周销售
    schedule: "0 9 * * 1"
    source: shop
    query: daily.sql
    params: {day: "{{ last_week_end }}"}
    to: [leads]
  hourly:
    title: ${HOURLY_TITLE:-每小时}
    schedule: {every: 1h}
    source: shop
    sql: SELECT 1 AS n
    to: [admins]
"""
ROBOT = "robots:\n  g: {webhook: 'https://oapi.dingtalk.com/robot/send?access_token=abc'}\n"


@pytest.fixture
def config(project: Path) -> Path:
    VALIDATED.clear()
    path = project / "reports.yaml"
    path.write_text(BASE_CONFIG + MORE, encoding="utf-8")
    return path


def load(path: Path, env: dict[str, str] | None = None, warnings: list | None = None):
    cfg, problems = check_config(path, env or {}, warnings, reuse=True)
    assert problems == [] and cfg is not None, problems
    return cfg


def line_of(path: Path, text: str) -> int:
    return path.read_text(encoding="utf-8").splitlines().index(text) + 1


def test_an_unchanged_report_is_reused_and_a_changed_one_is_validated_again(config: Path) -> None:
    first = load(config)
    config.write_text(config.read_text(encoding="utf-8").replace("title: 每周销售", "title: 周报"))
    second = load(config)
    assert second.reports["daily"] is first.reports["daily"]
    assert second.reports["hourly"] is first.reports["hourly"]
    assert second.reports["weekly"] is not first.reports["weekly"]
    assert second.reports["weekly"].title == "周报"
    VALIDATED.clear()
    fresh = load(config)
    assert fresh.reports == second.reports and fresh.reports["daily"] is not second.reports["daily"]


def test_a_reused_report_is_frozen(config: Path) -> None:
    load(config)
    report = load(config).reports["daily"]
    with pytest.raises(ValidationError):
        report.title = "改了"  # type: ignore[misc]


def test_a_removed_group_is_reported_for_every_report_that_names_it_with_its_line(config: Path) -> None:
    load(config)
    text = config.read_text(encoding="utf-8").replace("  admins: {userids: [oncall01]}\n", "")
    config.write_text("# a comment that moves every line down\n" + text, encoding="utf-8")
    cfg, problems = check_config(config, {}, reuse=True)
    assert cfg is None
    where = line_of(config, "    to: [admins]")
    assert [(p.key, p.line) for p in problems] == [("reports.hourly.to.0", where)]
    assert "unknown recipient group 'admins'" in problems[0].message


def test_a_renamed_source_and_a_new_robot_keyword_re_check_the_reports(config: Path) -> None:
    load(config)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("  shop: sqlite", "  store: sqlite"), encoding="utf-8")
    _, problems = check_config(config, {}, reuse=True)
    assert sorted(p.key for p in problems) == [f"reports.{r}.source" for r in ("daily", "hourly", "weekly")]
    robots = ROBOT.replace("}", ", keyword: 日报}")
    config.write_text(robots + text.replace("    to: [admins]\n", "    to: [admins]\n    robots: [g]\n"))
    _, problems = check_config(config, {}, reuse=True)
    assert [p.key for p in problems] == ["reports.hourly.robots.0"] and "日报" in problems[0].message


def test_a_changed_default_or_variable_gives_new_models(config: Path) -> None:
    first = load(config, {"HOURLY_TITLE": "甲"})
    assert first.reports["hourly"].title == "甲"
    second = load(config, {"HOURLY_TITLE": "乙"})
    assert second.reports["hourly"].title == "乙" and second.reports["daily"] is first.reports["daily"]
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("timezone: Asia/Shanghai", "timezone: Asia/Tokyo"), encoding="utf-8")
    third = load(config, {"HOURLY_TITLE": "乙"})
    assert third.reports["daily"] is not second.reports["daily"] and third.reports == second.reports


def test_a_query_file_removed_after_a_clean_load_is_reported(config: Path) -> None:
    load(config)
    (config.parent / "queries" / "daily.sql").unlink()
    cfg, problems = check_config(config, {}, reuse=True)
    assert cfg is None
    assert [(p.key, p.line) for p in problems] == [
        ("reports.daily.query", line_of(config, "    query: daily.sql")),
        ("reports.weekly.query", line_of(config, "    query: daily.sql") + 8),
    ]
    assert all("does not exist" in p.message for p in problems)


def test_a_report_with_a_warning_warns_on_every_load(config: Path) -> None:
    text = config.read_text(encoding="utf-8")
    extra = "    robots: [g]\n    chart: {x: d, y: [n]}\n"
    config.write_text(ROBOT + text.replace("    on_empty: send\n", extra), encoding="utf-8")
    for _ in range(3):
        warnings: list = []
        load(config, warnings=warnings)
        assert [w.key for w in warnings] == ["reports.daily.chart"]


def test_a_report_with_a_problem_is_never_kept_and_a_fixed_one_loads(config: Path) -> None:
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('schedule: "0 9 * * 1"', 'schedule: "0 9 * *"'), encoding="utf-8")
    for _ in range(2):
        cfg, problems = check_config(config, {}, reuse=True)
        assert cfg is None and [(p.key, p.line) for p in problems] == [
            ("reports.weekly.schedule", line_of(config, '    schedule: "0 9 * *"'))
        ]
    config.write_text(text, encoding="utf-8")
    assert load(config).reports["weekly"].schedule == "0 9 * * 1"


def test_every_model_gets_its_own_empty_lists() -> None:
    from dispatcher.config.model import RecipientGroup, Report

    a, b = (Report(title="t", schedule="0 9 * * *", source="s", sql="x") for _ in range(2))
    assert a.mention.userids == [] and a.mention.userids is not b.mention.userids
    assert RecipientGroup().dept_ids is not RecipientGroup().dept_ids


def test_a_one_off_load_neither_keeps_nor_reuses_reports(config: Path) -> None:
    """`validate`, `list` and the other commands load once: holding 5,000 reports until the
    process exits only slowed their exit."""
    first, _ = check_config(config, {})
    second, _ = check_config(config, {})
    assert first is not None and second is not None
    assert second.reports["daily"] is not first.reports["daily"] and second.reports == first.reports
    assert load(config).reports["daily"] is not first.reports["daily"]
    assert VALIDATED.get(next(iter(VALIDATED._kept))) is not None  # the daemon's load kept its own
