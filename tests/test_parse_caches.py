"""Each distinct template text is compiled once and each distinct schedule parsed once per process
(issue 28), and what the caches hand out is equal for equal text and shared by no one mutably."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import pandas as pd
import pytest

from dispatcher.config.check import check_config
from dispatcher.config.params import render_value
from dispatcher.errors import RenderError, ScheduleError
from dispatcher.render import RenderOptions, render
from dispatcher.render.templates import compile_template
from dispatcher.schedule import cron, parse_schedule
from dispatcher.schedule.cron import parse_cron
from dispatcher.templating.bounded import params_template, syntax_problem
from tests.conftest import BASE_CONFIG

REPORT = """\
  r{n}:
    title: 报表 {n}
    schedule: "{schedule}"
    source: shop
    query: daily.sql
    params: {{day: "{{{{ yesterday }}}}", since: "{{{{ today | add_days(-{days}) }}}}"}}
    period: "{{{{ last_week_start }}}} ~ {{{{ last_week_end }}}}"
    to: [leads]
    template: "### {{{{ title }}}} {{{{ day }}}}"
"""


def many_reports(project: Path, count: int, schedule: str = "0 9 * * *", days: int = 7) -> Path:
    text = BASE_CONFIG + "".join(REPORT.format(n=n, schedule=schedule, days=days) for n in range(count))
    path = project / "reports.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def compiles(monkeypatch) -> list[str]:
    """Every Jinja compile from now on (the caches emptied first, so the count starts at zero)."""
    params_template.cache_clear()
    syntax_problem.cache_clear()
    compile_template.cache_clear()
    seen: list[str] = []
    real = jinja2.Environment.compile

    def counted(self, source, *args, **kwargs):
        seen.append(source if isinstance(source, str) else "<ast>")
        return real(self, source, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counted)
    return seen


def test_validate_compiles_each_distinct_params_text_once_however_many_reports_share_it(project, compiles):
    config, problems = check_config(many_reports(project, 40))
    assert problems == [] and config is not None and len(config.reports) == 41
    # Distinct texts: {{ yesterday }}, {{ today | add_days(-7) }}, the period line.
    assert len(compiles) <= 3, compiles


def test_a_bad_params_value_shared_by_two_reports_is_reported_for_each(project):
    path = many_reports(project, 2)
    path.write_text(path.read_text(encoding="utf-8").replace("{{ yesterday }}", "{{ yesterdy }}"))
    _, problems = check_config(path)
    where = sorted(p.key for p in problems)
    assert where == ["reports.daily.params.day", "reports.r0.params.day", "reports.r1.params.day"]
    assert len({p.message for p in problems}) == 1 and "yesterdy" in problems[0].message


def test_a_missing_query_file_shared_by_two_reports_is_reported_for_each(project):
    (project / "queries" / "daily.sql").unlink()
    _, problems = check_config(many_reports(project, 2))
    assert sorted(p.key for p in problems) == [f"reports.{r}.query" for r in ("daily", "r0", "r1")]


def test_a_template_syntax_error_shared_by_two_reports_is_reported_for_each(project):
    path = many_reports(project, 2)
    path.write_text(path.read_text(encoding="utf-8").replace("{{ title }}}", "{{ title }"))
    path.write_text(path.read_text(encoding="utf-8").replace('"### {{ title }', '"### {{ title'))
    _, problems = check_config(path)
    assert sorted(p.key for p in problems) == ["reports.r0.template", "reports.r1.template"]


def test_cached_params_templates_render_each_reports_own_values():
    for day in ("2026-11-01", "2026-11-02", "2026-11-01"):
        assert render_value("{{ today | add_days(-1) }}", {"today": day}, "x") == (
            "2026-10-31" if day == "2026-11-01" else "2026-11-01"
        )
    assert params_template("{{ today }}") is params_template("{{ today }}")


def test_a_shared_report_template_keeps_nothing_from_one_report_to_the_next():
    """Two reports, one template text, different params and titles: each message is its own; a
    `{% set %}` or a namespace changed by one render is new in the next."""
    template = (
        "{% set ns = namespace(total=0) %}{% for r in rows %}{% set ns.total = ns.total + r.sales %}"
        "{% endfor %}### {{ title }} {{ day }} 合计 {{ ns.total }}\n"
    )
    df = pd.DataFrame({"region": ["华东", "华南"], "sales": [10, 20]})
    fire = datetime(2026, 11, 30, 9, tzinfo=ZoneInfo("Asia/Shanghai"))

    def opts(title: str, day: str) -> RenderOptions:
        return RenderOptions(title=title, fire_time=fire, template=template, macros={"day": day})

    first = render(df, opts("甲", "2026-11-01"))
    second = render(df.head(1), opts("乙", "2026-11-02"))
    again = render(df, opts("甲", "2026-11-01"))
    assert "### 甲 2026-11-01 合计 30" in first.markdown
    assert "### 乙 2026-11-02 合计 10" in second.markdown
    assert again.markdown == first.markdown
    assert compile_template(template, "¥") is compile_template(template, "¥")
    assert compile_template(template, "¥") is not compile_template(template, "$")


def test_a_template_that_fails_to_compile_fails_every_time():
    for _ in range(2):
        with pytest.raises(RenderError, match="syntax error"):
            compile_template("{{ x ", "¥")


def test_every_distinct_cron_line_is_parsed_once_even_past_the_parsers_own_lru_size():
    """1,500 distinct lines (more than parse_cron's 1,024-entry LRU): a second pass over every
    report, as `list` and the daemon make, finds each parsed schedule again."""
    lines = [f"{m} {h} {d} * *" for d in (1, 2, 3) for h in range(24) for m in range(0, 60, 3)][:1500]
    first = [parse_schedule(line) for line in lines]
    assert [parse_schedule(line) for line in lines] == first
    assert all(parse_schedule(line) is schedule for line, schedule in zip(lines, first, strict=True))


def test_cached_schedules_equal_fresh_parses_for_equal_text():
    for line in ("0 9 * * 1-5", "*/10 3 * * *", "30 8 1,15 jan,apr,jul,oct *", "0 9-17/4 * * mon-fri"):
        fresh = parse_cron.__wrapped__(line)
        assert parse_schedule(line) == fresh
        assert parse_schedule(line).min_period_seconds == fresh.min_period_seconds
    assert parse_schedule({"every": "1h"}) == parse_schedule({"every": 3600})
    assert parse_schedule({"every": "1h"}) is parse_schedule({"every": "1h"})


def test_a_bad_schedule_fails_every_time_and_is_not_kept():
    for _ in range(2):
        with pytest.raises(ScheduleError, match="5-field"):
            parse_schedule("0 9 * *")
    with pytest.raises(ScheduleError):
        parse_schedule({"every": "1h", "at": "x"})


def _walked_day_gap(days, months, weekdays, either) -> int:
    """The fewest days between two matching days, found by walking every day of 2000-2028 (the
    way _min_day_gap worked before it used bit masks): the reference."""
    gap, previous, day = 366 * 8, None, date(2000, 1, 1)
    while day.year < 2029:
        if cron._matches_day(day, days, months, weekdays, either):
            if previous is not None:
                gap = min(gap, (day - previous).days)
            previous = day
        day += timedelta(days=1)
    return gap


def test_the_masked_day_gap_equals_the_day_by_day_walk():
    fixed = ["0 0 29 2 *", "0 0 31 * *", "0 0 1 * 1", "0 0 * * 1-5", "0 0 13 * 5", "0 0 30 1,3 *",
             "0 0 1-7 * mon", "0 0 * dec sat,sun", "0 0 28 2 *", "0 0 1 1 *", "0 0 * */3 *"]  # fmt: skip
    rng = random.Random(28)
    drawn = [
        f"0 0 {rng.choice(['*', '1', '1,15', '28-31', '29', '*/10'])} "
        f"{rng.choice(['*', '2', 'jan,apr,jul,oct', '1-6', '*/5'])} "
        f"{rng.choice(['*', '0', '1-5', '6,0', '3'])}"
        for _ in range(150)
    ]
    for line in fixed + drawn:
        s = parse_cron.__wrapped__(line)
        pattern = (s.days, s.months, s.weekdays, s.days_or_weekdays)
        assert cron._min_day_gap.__wrapped__(*pattern) == _walked_day_gap(*pattern), line


def test_the_daemons_next_fire_times_per_schedule_and_zone_equal_each_reports_own(project):
    from dispatcher.daemon.status import next_fires

    path = many_reports(project, 4)
    tokyo = REPORT.format(n=9, schedule="0 9 * * *", days=1).replace(
        "    to:", "    timezone: Asia/Tokyo\n    to:"
    )
    path.write_text(path.read_text(encoding="utf-8") + tokyo, encoding="utf-8")
    config, problems = check_config(path)
    assert problems == [] and config is not None
    now = datetime(2026, 3, 1, 8, 30, tzinfo=ZoneInfo("UTC"))
    fires = {report.id: fire for report, fire in next_fires(config, now)}
    for report in config.reports.values():
        zone = config.report_zone(report)
        assert fires[report.id] == report.parsed_schedule().next_fire_time(now, zone).astimezone(zone)
    assert fires["r9"] != fires["r0"] and len(fires) == 6
