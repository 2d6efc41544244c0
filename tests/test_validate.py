"""`dispatcher validate`: every problem at once, each with file:line and key path, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.cli.main import main
from tests.conftest import BASE_CONFIG, run_cli


def validate(path: Path, capsys) -> tuple[int, str]:
    code = main(["validate", "-c", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_valid_config_exits_0_with_a_one_line_summary(project, capsys):
    code, out = validate(project / "reports.yaml", capsys)
    assert code == 0, out
    assert out.strip().splitlines() == [
        f"{project / 'reports.yaml'}: OK: 1 report, 1 source, 2 recipient groups"
    ]


def replace(old: str, new: str) -> str:
    assert old in BASE_CONFIG, old
    return BASE_CONFIG.replace(old, new)


# (name, file text, expected fragment "reports.yaml:LINE: key.path: message part")
BROKEN = [
    (
        "cron_4_fields",
        replace('"0 9 * * *"', '"0 9 * *"'),
        "reports.yaml:16: reports.daily.schedule: '0 9 * *' is not a 5-field cron expression",
    ),
    (
        "typo_key",
        replace("    schedule:", "    scheudle:"),
        "reports.yaml:16: reports.daily.scheudle: unknown key 'scheudle'; did you mean 'schedule'?",
    ),
    (
        "cron_out_of_range",
        replace('"0 9 * * *"', '"61 9 * * *"'),
        "reports.yaml:16: reports.daily.schedule:",
    ),
    (
        "bad_interval",
        replace('"0 9 * * *"', "{every: 10x}"),
        "reports.yaml:16: reports.daily.schedule:",
    ),
    (
        "unknown_timezone",
        replace("timezone: Asia/Shanghai", "timezone: Asia/Shangai"),
        "reports.yaml:1: timezone: unknown timezone 'Asia/Shangai'",
    ),
    (
        "unknown_report_timezone",
        replace("    source: shop\n", "    source: shop\n    timezone: Mars/Base\n"),
        "reports.yaml:18: reports.daily.timezone:",
    ),
    (
        "missing_query_file",
        replace("query: daily.sql", "query: nope.sql"),
        "reports.yaml:18: reports.daily.query: query file queries/nope.sql does not exist",
    ),
    (
        "query_outside_dir",
        replace("query: daily.sql", "query: ../reports.yaml"),
        "reports.yaml:18: reports.daily.query: '../reports.yaml' must be a path inside queries/",
    ),
    (
        "absolute_query",
        replace("query: daily.sql", "query: /etc/passwd"),
        "reports.yaml:18: reports.daily.query: '/etc/passwd' must be a path inside queries/",
    ),
    (
        "both_query_and_sql",
        replace("    query: daily.sql\n", "    query: daily.sql\n    sql: SELECT 1\n"),
        "reports.yaml:14: reports.daily: give exactly one of 'query'",
    ),
    (
        "neither_query_nor_sql",
        replace("    query: daily.sql\n", ""),
        "reports.yaml:14: reports.daily: give exactly one of 'query'",
    ),
    (
        "unknown_source",
        replace("    source: shop", "    source: shopp"),
        "reports.yaml:17: reports.daily.source: unknown source 'shopp'; did you mean 'shop'?",
    ),
    (
        "unknown_group",
        replace("to: [leads]", "to: [leads, finance]"),
        "reports.yaml:20: reports.daily.to.1: unknown recipient group 'finance'",
    ),
    (
        "unknown_group_in_a_block_list",  # the item's own line, not the line of `to:`
        replace("to: [leads]", "to:\n      - leads\n      - finance"),
        "reports.yaml:22: reports.daily.to.1: unknown recipient group 'finance'",
    ),
    (
        "empty_recipients",
        replace("    to: [leads]", "    to: []"),
        "reports.yaml:20: reports.daily.to:",
    ),
    (
        "empty_group",
        replace("  admins: {userids: [oncall01]}", "  admins: {}"),
        "reports.yaml:12: recipients.admins: group has no userids, mobiles or dept_ids",
    ),
    (
        "unset_variable",
        replace("sqlite:///shop.db", "${DISPATCHER_TEST_UNSET_VAR}"),
        "reports.yaml:3: sources.shop: environment variable DISPATCHER_TEST_UNSET_VAR is not set",
    ),
    (
        "malformed_mobile",
        replace('"13800000000"', '"1380000"'),
        "reports.yaml:11: recipients.leads.mobiles: '1380000' is not an 11-digit mainland mobile number",
    ),
    (
        "unquoted_numeric_userid",
        replace('"0147282552401293909"', "147282552401293909"),
        "reports.yaml:10: recipients.leads.userids: userid 147282552401293909 must be quoted",
    ),
    (
        "bad_on_empty",
        replace("on_empty: send", "on_empty: maybe"),
        "reports.yaml:21: reports.daily.on_empty:",
    ),
    (
        "missing_title",
        replace("    title: 每日销售\n", ""),
        "reports.yaml:14: reports.daily: required key 'title' is missing",
    ),
    ("yaml_syntax", replace("    to: [leads]", "    to: [leads"), "YAML syntax error"),
    (
        "bad_timeout",
        replace("    on_empty: send", "    on_empty: send\n    query_timeout: soon"),
        "reports.yaml:22: reports.daily.query_timeout: 'soon' is not a duration",
    ),
    (
        "duplicate_key",
        replace("    source: shop\n", "    source: shop\n    source: shop\n"),
        "reports.yaml:18: reports.daily.source: duplicate key",
    ),
    ("top_level_list", "- just\n- a list\n", "the file must be a mapping"),
]


@pytest.mark.parametrize("name,text,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_file_is_reported_with_line_and_key(project, capsys, name, text, expected):
    path = project / "reports.yaml"
    path.write_text(text, encoding="utf-8")
    code, out = validate(path, capsys)
    assert code == 1, out
    assert expected in out, out
    assert "Traceback" not in out


def test_every_problem_is_printed_at_once(project, capsys):
    text = (
        replace('"0 9 * * *"', '"0 9 * *"')
        .replace("source: shop", "source: nope")
        .replace("timezone: Asia/Shanghai", "timezone: Nowhere/Land")
    )
    (project / "reports.yaml").write_text(text, encoding="utf-8")
    code, out = validate(project / "reports.yaml", capsys)
    assert code == 1
    assert "reports.daily.schedule" in out
    assert "reports.daily.source" in out
    assert "timezone: unknown timezone" in out
    assert "3 problems found" in out


def test_unset_dingtalk_variables_are_not_a_validate_error(project, capsys):
    text = replace("${TEST_DT_KEY:-}", "${DISPATCHER_TEST_SURELY_UNSET}")
    (project / "reports.yaml").write_text(text, encoding="utf-8")
    code, out = validate(project / "reports.yaml", capsys)
    assert code == 0, out


def test_env_default_and_value_are_interpolated(project, capsys, monkeypatch):
    text = replace("sqlite:///shop.db", "${DISPATCHER_TEST_SHOP:-sqlite:///shop.db}")
    (project / "reports.yaml").write_text(text, encoding="utf-8")
    from dispatcher.config.check import load_config

    assert load_config(project / "reports.yaml").sources["shop"] == "sqlite:///shop.db"
    monkeypatch.setenv("DISPATCHER_TEST_SHOP", "sqlite:///other.db")
    assert load_config(project / "reports.yaml").sources["shop"] == "sqlite:///other.db"


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01\x02\xff\xfe binary junk \x89PNG",
        b"\xff\xfe\xfd not utf-8",
        b"[" * 800,  # past the recursion limit; PyYAML's scanner takes quadratic time in a longer one
        b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
        b"!!python/object/apply:os.system ['echo pwned']\n",
        b"",
        b"reports: 5\n",
        b"reports:\n  x: [1, 2]\n",
    ],
    ids=[
        "binary",
        "not_utf8",
        "deep_nesting",
        "billion_laughs",
        "python_tag",
        "empty",
        "reports_scalar",
        "report_list",
    ],
)
def test_junk_never_gives_a_traceback(tmp_path, capsys, content):
    path = tmp_path / "reports.yaml"
    path.write_bytes(content)
    code, out = validate(path, capsys)
    assert "Traceback" not in out
    assert code in (0, 1)
    if content.strip():
        assert code == 1, out
    if content.startswith(b"[["):
        assert "nested too deeply" in out


def test_missing_config_file_exit_1_with_hint(tmp_path, capsys):
    code, out = validate(tmp_path / "nope.yaml", capsys)
    assert code == 1
    assert "config file not found" in out


def test_validate_through_the_entry_point_exit_codes(project):
    ok = run_cli("validate", "-c", str(project / "reports.yaml"))
    assert ok.returncode == 0, ok.stderr
    (project / "reports.yaml").write_text(replace('"0 9 * * *"', '"0 9 * *"'), encoding="utf-8")
    bad = run_cli("validate", "-c", str(project / "reports.yaml"))
    assert bad.returncode == 1
    assert "reports.yaml:16: reports.daily.schedule" in bad.stderr
    usage = run_cli("validate", "--bogus-flag")
    assert usage.returncode == 2


def test_shipped_reports_yaml_validates():
    result = run_cli("validate", "-c", "reports.yaml")
    assert result.returncode == 0, result.stderr


def test_typo_in_a_param_macro_is_caught_by_validate(project, capsys):
    (project / "reports.yaml").write_text(replace("{{ yesterday }}", "{{ yesterdy }}"), encoding="utf-8")
    code, out = validate(project / "reports.yaml", capsys)
    assert code == 1
    assert "reports.yaml:19: reports.daily.params.day:" in out and "yesterdy" in out


def test_template_syntax_error_is_caught_by_validate(project, capsys):
    text = replace("    on_empty: send\n", "    on_empty: send\n    template: |\n      ### {{ title }\n")
    (project / "reports.yaml").write_text(text, encoding="utf-8")
    code, out = validate(project / "reports.yaml", capsys)
    assert code == 1
    assert "reports.yaml:22: reports.daily.template: template line 1:" in out
