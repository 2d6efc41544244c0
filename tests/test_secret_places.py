"""Credential variables stay where they belong (issue 22 §3, validate's half): `${VAR}` of the app
secret, a robot's webhook or a robot's secret is refused anywhere but `dingtalk.app_secret`,
`robots.<name>.webhook` and `robots.<name>.secret`, with file:line and exit 1, and so is a copy of
a secret's value. The value itself is never printed. Query files are not interpolated at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.cli.main import main

APP_SECRET = "app-secret-3f9a1c7e5b"
ROBOT_TOKEN = "robot-token-8d2e6a4c1f"
ROBOT_SECRET = "SECrobot-9b7d5f3e1a"
ENV = {
    "DINGTALK_APP_SECRET": APP_SECRET,
    "SALES_ROBOT_TOKEN": ROBOT_TOKEN,
    "SALES_ROBOT_SECRET": ROBOT_SECRET,
}

BASE = """\
timezone: Asia/Shanghai
sources:
  data: sqlite:///data.db
dingtalk:
  app_key: dingkey
  app_secret: ${DINGTALK_APP_SECRET}
  agent_id: 100000001
recipients:
  ops: {userids: [user004]}
robots:
  sales:
    webhook: https://oapi.dingtalk.com/robot/send?access_token=${SALES_ROBOT_TOKEN}
    secret: ${SALES_ROBOT_SECRET}
    keyword: 日报
reports:
  daily:
    title: 日报
    schedule: "0 8 * * *"
    source: data
    sql: "SELECT 1 AS n"
    to: [ops]
    robots: [sales]
"""
END = "    robots: [sales]\n"  # the report's last line: a place added after it belongs to the report
APP, TOK, SEC = "${DINGTALK_APP_SECRET}", "${SALES_ROBOT_TOKEN}", "${SALES_ROBOT_SECRET}"

# place -> (text replaced in BASE, its replacement, key path validate names)
PLACES: dict[str, tuple[str, str, str]] = {
    "title": ("    title: 日报\n", f'    title: "日报 {APP}"\n', "reports.daily.title"),
    "template": (END, END + f'    template: "日报 {{{{ n_rows }}}} {SEC}"\n', "reports.daily.template"),
    "sql": ('    sql: "SELECT 1 AS n"\n', f"    sql: \"SELECT '{TOK}' AS n\"\n", "reports.daily.sql"),
    "params": (END, END + f"    params: {{k: '{APP}'}}\n", "reports.daily.params.k"),
    "period": (END, END + "    period: '${DINGTALK_APP_SECRET:-x}'\n", "reports.daily.period"),
    "labels": (END, END + f"    labels: {{n: '{SEC}'}}\n", "reports.daily.labels.n"),
    "action_url": (END, END + f"    msgtype: action_card\n    action_url: 'https://example.com/?t={TOK}'\n",
                   "reports.daily.action_url"),
    "oa form": (END, END + f"    msgtype: oa\n    oa: {{url: 'https://example.com', form: {{k: '{APP}'}}}}\n",
                "reports.daily.oa.form.k"),
    "chart params": (END, END + f"    chart: {{x: n, y: n, params: {{p: '{SEC}'}}}}\n",
                     "reports.daily.chart.params.p"),
    "attach name": (END, END + f"    attach: {{format: csv, name: 'd-{APP}.zip'}}\n",
                    "reports.daily.attach.name"),
    "recovery template": (END, END + f"    alert: {{recovery: true, recovery_template: 'ok {TOK}'}}\n",
                          "reports.daily.alert.recovery_template"),
    "mention": (END, END + f"    mention: {{userids: ['{SEC}']}}\n", "reports.daily.mention.userids.0"),
    "recipients": ("  ops: {userids: [user004]}\n", f"  ops: {{userids: [user004, '{APP}']}}\n",
                   "recipients.ops.userids.1"),
    "sources": ("  data: sqlite:///data.db\n", f"  data: sqlite:///{APP}.db\n", "sources.data"),
    "state": ("timezone: Asia/Shanghai\n", f"timezone: Asia/Shanghai\nstate: sqlite:///{TOK}.db\n", "state"),
    "robot keyword": ("    keyword: 日报\n", f"    keyword: 日报{SEC}\n", "robots.sales.keyword"),
    "app key": ("  app_key: dingkey\n", f"  app_key: {APP}\n", "dingtalk.app_key"),
    "api base": ("  agent_id: 100000001\n", f"  agent_id: 100000001\n  api_base: https://x.example/{TOK}\n",
                 "dingtalk.api_base"),
}  # fmt: skip


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.db").touch()
    path = folder / "reports.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _line_of(text: str, needle: str, skip: list[str] = ()) -> int:  # type: ignore[assignment]
    """The first line holding `needle`, other than the lines `skip` lists."""
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line and line not in skip)


def test_credential_variables_in_their_own_fields_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "-c", str(_write(tmp_path, BASE))]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("place", list(PLACES))
def test_a_credential_variable_anywhere_else_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], place: str
) -> None:
    old, new, key = PLACES[place]
    assert old in BASE
    text = BASE.replace(old, new, 1)
    path = _write(tmp_path, text)
    assert main(["validate", "-c", str(path)]) == 1
    out = capsys.readouterr()
    variable = new[new.index("${") + 2 :].split("}")[0].split(":-")[0]
    line = _line_of(text, "${" + variable, skip=BASE.splitlines())
    assert f"reports.yaml:{line}: {key}: ${{{variable}}} is a credential" in out.err, out.err
    assert "only in dingtalk.app_secret, robots.<name>.webhook and robots.<name>.secret" in out.err
    for value in ENV.values():
        assert value not in out.err and value not in out.out


def test_each_problem_is_listed_once_per_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = BASE.replace("    title: 日报\n", '    title: "${DINGTALK_APP_SECRET}"\n').replace(
        END, END + "    labels: {n: '${SALES_ROBOT_SECRET}'}\n"
    )
    assert main(["validate", "-c", str(_write(tmp_path, text))]) == 1
    err = capsys.readouterr().err
    assert err.count("is a credential") == 2, err


def test_the_app_secret_variable_is_a_credential_even_where_the_config_names_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MY_APP_SECRET", "another-secret-123456")
    text = BASE.replace("${DINGTALK_APP_SECRET}", "${MY_APP_SECRET}").replace(
        "    title: 日报\n", '    title: "日报 ${DINGTALK_APP_SECRET}"\n'
    )
    assert main(["validate", "-c", str(_write(tmp_path, text))]) == 1
    assert "reports.daily.title: ${DINGTALK_APP_SECRET} is a credential" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "named"),
    [(APP_SECRET, "dingtalk.app_secret"), (ROBOT_TOKEN, "robots.sales.webhook"),
     (ROBOT_SECRET, "robots.sales.secret")],
)  # fmt: skip
def test_a_copy_of_a_secret_value_is_refused_without_printing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, named: str
) -> None:
    text = BASE.replace("    title: 日报\n", f'    title: "日报 {value}"\n')
    assert main(["validate", "-c", str(_write(tmp_path, text))]) == 1
    out = capsys.readouterr()
    line = _line_of(text, "title: ")
    assert f"reports.yaml:{line}: reports.daily.title: holds the value of {named}" in out.err, out.err
    assert value not in out.err and value not in out.out


def test_a_refused_config_stops_every_command_that_loads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = BASE.replace("    title: 日报\n", '    title: "日报 ${DINGTALK_APP_SECRET}"\n')
    path = _write(tmp_path, text)
    for command in (["preview", "daily"], ["send", "daily", "--sandbox"], ["list"]):
        assert main([*command, "-c", str(path)]) == 1, command
        out = capsys.readouterr()
        assert "is a credential" in out.err and APP_SECRET not in out.out + out.err


def test_query_files_are_not_interpolated_so_a_variable_there_stays_literal_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = BASE.replace('    sql: "SELECT 1 AS n"\n', "    query: q.sql\n").replace(
        "    robots: [sales]\n", ""
    )
    path = _write(tmp_path, text)
    (tmp_path / "queries").mkdir()
    (tmp_path / "queries" / "q.sql").write_text("SELECT '${DINGTALK_APP_SECRET}' AS n", encoding="utf-8")
    assert main(["validate", "-c", str(path)]) == 0
    assert main(["preview", "daily", "-c", str(path), "--at", "2026-11-28T09:00"]) == 0
    out = capsys.readouterr().out
    assert "${DINGTALK" in out and APP_SECRET not in out  # the literal text, its _ escaped for the phone
