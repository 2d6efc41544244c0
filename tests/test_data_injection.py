"""Data cannot inject markdown (issue 22, items 1, 10, 11): whatever its type, however deep, on every path.

A value from the database is untrusted. Bytes, arrays, JSON, mappings and number-like objects reach the
message as text, never as a link or an image; bidi controls and zero-width characters never reach it;
invalid UTF-8 in a SQLite text column shows as U+FFFD and is counted in the run. Real SQLite files,
the real PostgreSQL and MariaDB, and the sandbox over HTTP for both channels.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import unicodedata
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from dispatcher.config.check import load_config
from dispatcher.dingtalk import markdown
from dispatcher.dingtalk.markdown import escape, to_html
from dispatcher.errors import RenderError
from dispatcher.render import RenderOptions, render
from dispatcher.render.format import md
from dispatcher.run.prepare import build_sources, prepare
from dispatcher.sandbox import Sandbox
from dispatcher.sources.query import Sources, SourceSpec, run_query
from tests.feature_kit import data, run_at, services, texts, write_project
from tests.test_robots import FIRE, box, run_once, write_config
from tests.test_robots import services as robot_services

__all__ = ["box"]  # the fixture, shared with test_robots

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI)
LINK = "[click](http://evil.example/x)"
PIXEL = "![x](http://evil.example/p.png)"
BIDI = "\u202e\u2066\u200f\u061c"
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"


class Sneaky(int):
    """A number whose text is markup: what a driver's or an adapter's own type could do."""

    def __str__(self) -> str:
        return LINK

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return LINK


class SneakyDecimal(Decimal):
    def __str__(self) -> str:
        return PIXEL

    __repr__ = __str__


class Opaque:
    """An object a driver returns that is no number, text or container (a range, a geometry…)."""

    def __str__(self) -> str:
        return f"{LINK} {PIXEL}"


def assert_inert(markdown: str) -> None:
    """No link, no image, and no bracket that could open one, as the phone's markdown reads it."""
    html = to_html(markdown)
    assert "<a " not in html and "<img" not in html, markdown
    assert "](" not in markdown and "[" not in markdown, markdown
    assert not any(ch in markdown for ch in BIDI + ZERO_WIDTH), ascii(markdown)


def options(template: str | None = None, **kw: Any) -> RenderOptions:
    return RenderOptions(title="日报", fire_time=AT, template=template, **kw)


def sqlite_source(path: Path, script: str) -> Sources:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()
    return Sources({"db": SourceSpec("db", f"sqlite:///{path}")})


def query(sources: Sources, sql: str) -> pd.DataFrame:
    try:
        return run_query(sources, "db", sql, {}, max_rows=100, timeout=30).frame
    finally:
        sources.dispose()


# -- item 1: every type a database gives, through a template ------------------------------------------

# Every way a template can print a value: directly, in a loop, joined, through a string operation,
# a filter that formats, an HTML filter, JSON.
PRINTS = [
    "{{ row.v }}",
    "{% for r in rows %}{{ r.v }}{% endfor %}",
    "{{ row.v ~ '' }}",
    "{{ row.v | string }}",
    "{{ '%s' % (row.v,) }}",
    "{{ '{}'.format(row.v) }}",
    "{{ row.v | e }}",
    "{{ row.v | safe }}",
    "{{ row.v | tojson }}",
    "{{ row.v | number }}",
    "{{ df.v.tolist() }}",
    "{% for r in df.itertuples() %}{{ r.v }}{% endfor %}",
    "{% macro show(x) %}{{ x }}{% endmacro %}{{ show(row.v) }}",
    "{% set shown %}{{ row.v }}{% endset %}{{ shown }}",
]
# Deeper: into lists and mappings, keys included.
DEEP = [
    "{% for x in row.v %}{{ x }} {% endfor %}",
    "{{ row.v | join(' ') }}",
    "{% for x in row.v %}{% for y in x %}{{ y }}{% endfor %}{% endfor %}",
    "{{ row.v | list | first }}",
]
MAPPINGS = [
    "{% for k, x in row.v.items() %}{{ k }} {{ x }} {% endfor %}",
    "{% for k in row.v %}{{ k | e }} {{ k ~ '' }} {{ row.v[k] }}{% endfor %}",
    "{{ row.v.values() | list }}",
    "{{ row.v | dictsort }}",
]
CELLS = {
    "bytes": (LINK + " " + PIXEL).encode(),
    "list": [LINK, [PIXEL, {"k": LINK}]],
    "tuple": (LINK, PIXEL),
    "dict": {LINK: {"deep": [PIXEL]}, "plain": LINK},
    "number-like": Sneaky(5),
    "decimal-like": SneakyDecimal("1.5"),
    "opaque object": Opaque(),
}


def _templates(kind: str) -> list[str]:
    if kind in ("list", "tuple"):
        return PRINTS + DEEP
    if kind == "dict":
        return PRINTS + MAPPINGS
    return PRINTS


@pytest.mark.parametrize(
    ("kind", "template"), [(k, t) for k in CELLS for t in _templates(k)], ids=lambda x: str(x)[:40]
)
def test_a_template_prints_no_markup_from_any_type_of_cell(kind: str, template: str) -> None:
    df = pd.DataFrame({"v": pd.Series([CELLS[kind]], dtype=object)})
    try:
        out = render(df, options(template)).markdown
    except RenderError:  # a template a type does not support (tojson of an object) may fail
        return
    assert_inert(out)


@pytest.mark.parametrize("kind", list(CELLS))
def test_the_default_rendering_prints_no_markup_from_any_type_of_cell(kind: str) -> None:
    for df in (
        pd.DataFrame({"v": pd.Series([CELLS[kind]], dtype=object)}),  # one row: a KPI line
        pd.DataFrame({"v": pd.Series([CELLS[kind], CELLS[kind]], dtype=object), "n": [1, 2]}),
    ):
        assert_inert(render(df, options()).markdown)


def test_template_expressions_print_text_while_the_templates_own_markdown_stays() -> None:
    df = pd.DataFrame({"name": ["王芳"], "meta": [{LINK: 1}]})
    template = (
        "### {{ title }}\n"
        "{% macro bold(x) %}**{{ x }}**{% endmacro %}"
        "- {{ bold(row.name) }} [详情](https://example.com/d)\n"
        "- {{ columns | join('/') }} {{ '**' ~ row.name ~ '**' }} {{ row.meta.keys() | list }}"
    )
    out = render(df, options(template)).markdown
    html = to_html(out)
    assert "<strong>王芳</strong>" in html, "a macro's markdown is the template's own"
    assert html.count("<a ") == 1 and 'href="https://example.com/d"' in html, "the template's own link"
    assert "＊＊王芳＊＊" in out, "markup built inside an expression prints as text"
    assert "［click］(http://evil.example/x)" in out


def test_bytes_print_as_their_text_and_invalid_bytes_as_replacement_characters() -> None:
    df = pd.DataFrame({"v": [b"\xe5\x8d\x8e\xe4\xb8\x9c \xff\xfe end"]})
    assert render(df, options("{{ row.v }}")).markdown.startswith("华东 \ufffd\ufffd end\n")
    assert "华东 \ufffd\ufffd end" in render(df, options()).markdown


def test_a_sqlite_blob_cannot_inject_through_a_template_or_the_default_rendering(tmp_path: Path) -> None:
    payload = (LINK + " " + PIXEL).encode().hex()
    sources = sqlite_source(
        tmp_path / "blob.db",
        f"CREATE TABLE t (name TEXT, payload BLOB);INSERT INTO t VALUES ('a', x'{payload}'), ('b', x'ff5b');",
    )
    df = query(sources, "SELECT name, payload FROM t ORDER BY name")
    assert isinstance(df["payload"][0], bytes)
    for template in ("{% for r in rows %}- {{ r.name }} {{ r.payload }}\n{% endfor %}", None):
        out = render(df, options(template)).markdown
        assert_inert(out)
        assert "［click］(http://evil.example/x)" in out and "\ufffd［" in out


def test_postgres_text_arrays_and_jsonb_cannot_inject_at_any_depth(postgres_url: str) -> None:
    sources = Sources({"db": SourceSpec("db", postgres_url)})
    df = query(
        sources,
        f"SELECT ARRAY['{LINK}', '{PIXEL}']::text[] AS tags, "
        f"""'{{"k": "{LINK}", "{LINK}": ["{PIXEL}", {{"deep": "{LINK}"}}]}}'::jsonb AS meta""",
    )
    assert isinstance(df["tags"][0], list) and isinstance(df["meta"][0], dict)
    for template in [
        "{{ row.tags }} {{ row.meta }}",
        "{% for t in row.tags %}- {{ t }}\n{% endfor %}",
        "{% for k, v in row.meta.items() %}- {{ k }}: {{ v }}\n{% endfor %}",
        "{{ row.meta.k }} {{ row.meta | tojson }} {{ row.tags | join(', ') }}",
        None,
    ]:
        assert_inert(render(df, options(template)).markdown)


def test_mariadb_json_cannot_inject(mysql_url: str) -> None:
    sources = Sources({"db": SourceSpec("db", mysql_url)})
    df = query(sources, f"SELECT JSON_OBJECT('k', '{LINK}', 'a', JSON_ARRAY('{PIXEL}')) AS meta")
    for template in ("{{ row.meta }}", "{% for r in rows %}{{ r.meta }}{% endfor %}", None):
        assert_inert(render(df, options(template)).markdown)


# -- item 1, end to end: the work notification and the group robot ------------------------------------

E2E_TEMPLATE = "### {{ title }}\\n{% for r in rows %}- {{ r.name }} {{ r.payload }}\\n{% endfor %}"


def _both_channels(path: Path, box: Sandbox) -> tuple[dict[str, Any], dict[str, Any]]:
    text = path.read_text(encoding="utf-8") + f'    template: "{E2E_TEMPLATE}"\n'
    path.write_text(text, encoding="utf-8")
    with robot_services(path, box) as svc:
        assert run_once(svc) == "sent"
    [notice] = box.calls("asyncsend_v2")
    [posted] = box.robot_messages("sales-group")
    return notice["body"]["msg"], posted["body"]


def _assert_delivered_as_text(msg: dict[str, Any], body: dict[str, Any], shown: str) -> None:
    for sent in (msg, body):
        assert set(sent) >= {"msgtype", "markdown"} and sent["msgtype"] == "markdown"
        assert sent["markdown"]["title"] == "销售日报"
        text = sent["markdown"]["text"]
        assert text.startswith(f"### 销售日报\n- 甲 {shown}\n\n"), text
        assert_inert(text.split("\n\n@")[0])  # the robot's @mentions end its text


def test_a_sqlite_blob_reaches_work_notifications_and_robots_as_text(tmp_path: Path, box: Sandbox) -> None:
    path = write_config(tmp_path / "p", box.url, sql="SELECT name, payload FROM t")
    payload = (LINK + " " + PIXEL + BIDI).encode().hex()
    data_script = f"CREATE TABLE t (name TEXT, payload BLOB); INSERT INTO t VALUES ('甲', x'{payload}');"
    conn = sqlite3.connect(path.parent / "shop.db")
    conn.executescript(data_script)
    conn.close()
    msg, body = _both_channels(path, box)
    _assert_delivered_as_text(msg, body, "［click］(http://evil.example/x) !［x］(http://evil.example/p.png)")


def test_postgres_jsonb_reaches_work_notifications_and_robots_as_text(
    tmp_path: Path, box: Sandbox, postgres_url: str
) -> None:
    sql = f"SELECT '甲' AS name, jsonb_build_object('a', '{LINK}') AS payload"
    path = write_config(tmp_path / "p", box.url, sql=sql)
    path.write_text(path.read_text(encoding="utf-8").replace("sqlite:///shop.db", postgres_url), "utf-8")
    msg, body = _both_channels(path, box)
    _assert_delivered_as_text(msg, body, "a: ［click］(http://evil.example/x)")


# -- item 1, neighbours: split_by slices, split_value, period, alerts --------------------------------

SLICES = """\
store:
  title: 门店日报
  schedule: "0 8 * * *"
  source: data
  sql: "SELECT manager, payload FROM t"
  period: "{{ split_value | default('全部') }}"
  split_by: {column: manager, kind: userid}
  to: [ops]
"""


@pytest.mark.parametrize(
    "template",
    [
        None,
        "### {{ title }} {{ split_value | default('') }}\n{% for r in rows %}- {{ r.payload }}\n{% endfor %}",
    ],
)
def test_each_slice_of_a_split_report_and_its_split_value_print_as_text(
    tmp_path: Path, box: Sandbox, template: str | None
) -> None:
    reports = SLICES + (f"  template: {json.dumps(template)}\n" if template else "")
    path = write_project(tmp_path / "p", box, reports)
    data(tmp_path / "p", "CREATE TABLE t (manager TEXT, payload BLOB);")
    conn = sqlite3.connect(tmp_path / "p" / "data.db")
    conn.execute("INSERT INTO t VALUES (?, ?)", ("[u](http://evil.example/u)", (PIXEL + BIDI).encode()))
    conn.commit()
    conn.close()
    config = load_config(path)
    sources = build_sources(config)
    try:
        prepared = prepare(config, sources, config.reports["store"], AT)
    finally:
        sources.dispose()
    assert prepared.slicing is not None and prepared.rendered is not None
    [one] = prepared.slicing.slices
    assert one.key == "[u](http://evil.example/u)"
    for rendered in (one.rendered, prepared.rendered):
        assert_inert(rendered.markdown.split("\n", 1)[1] if template is None else rendered.markdown)
    assert "［u］(http://evil.example/u)" in one.rendered.markdown


def test_an_alert_carries_the_failed_runs_error_as_text(
    tmp_path: Path, box: Sandbox, postgres_url: str
) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (name TEXT)")
        conn.exec_driver_sql("INSERT INTO t VALUES (%s)", (LINK + BIDI + ZERO_WIDTH,))
    engine.dispose()
    reports = """\
    daily:
      title: 日报
      schedule: "0 9 * * *"
      source: data
      sql: "SELECT CAST(name AS INTEGER) AS n FROM t"
      to: [ops]
      retries: 0
    """
    path = write_project(tmp_path / "p", box, reports)
    path.write_text(path.read_text(encoding="utf-8").replace("sqlite:///data.db", postgres_url), "utf-8")
    with services(path, box) as svc:
        assert run_at(svc, "daily", FIRE) == "failed"
    [alert] = texts(box, "oncall01")
    assert "invalid input syntax" in alert and "［click］(http://evil.example/x)" in alert
    assert_inert(alert)


# -- item 10: bidi controls and zero-width characters --------------------------------------------------


def test_the_invisible_characters_are_every_unicode_format_character() -> None:
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    expected = {ch for ch in everything if unicodedata.category(ch) == "Cf"}
    assert set(markdown.INVISIBLE.findall(everything)) == expected, (
        f"update INVISIBLE to Unicode {unicodedata.unidata_version}"
    )


def test_bidi_controls_and_zero_width_characters_never_reach_a_message() -> None:
    name = f"张{BIDI}伟{ZERO_WIDTH} 123"
    assert escape(name) == "张伟 123" and md(name) == "张伟 123"
    df = pd.DataFrame({"name": [name, "李娜"], "tags": [[name], [name]], "n": [1, 2]})
    for template in (None, "{{ row.name }} {{ row.tags }} {% for r in rows %}{{ r.tags[0] }}{% endfor %}"):
        for msgtype in ("markdown", "text"):
            rendered = render(df, options(template, msgtype=msgtype))
            assert not any(ch in json.dumps(rendered.msg, ensure_ascii=False) for ch in BIDI + ZERO_WIDTH)
            assert "张伟 123" in rendered.markdown


def test_bidi_controls_from_a_postgres_text_column_are_stripped(postgres_url: str) -> None:
    sources = Sources({"db": SourceSpec("db", postgres_url)})
    df = query(sources, "SELECT 'abc' || chr(8238) || '12.50' || chr(8203) AS name")
    for template in ("{{ row.name }}", None):
        out = render(df, options(template)).markdown
        assert "abc12.50" in out and "\u202e" not in out and "\u200b" not in out


# -- item 11: invalid UTF-8 in a SQLite text column ---------------------------------------------------

BAD_TEXT = (
    "CREATE TABLE t (name TEXT, n INTEGER); INSERT INTO t VALUES (CAST(x'41ff42' AS TEXT), 1), ('ok', 2);"
)


def test_invalid_utf8_in_a_sqlite_text_column_shows_as_replacement_characters_and_is_counted(
    tmp_path: Path,
) -> None:
    sources = sqlite_source(tmp_path / "bad.db", BAD_TEXT)
    try:
        result = run_query(sources, "db", "SELECT name, n FROM t ORDER BY n", {}, max_rows=10, timeout=5)
        assert result.frame["name"].tolist() == ["A\ufffdB", "ok"]
        assert result.invalid_text == 1
        clean = run_query(sources, "db", "SELECT 'x' AS name", {}, max_rows=10, timeout=5)
        assert clean.invalid_text == 0, "the count belongs to one query, not to the pooled connection"
    finally:
        sources.dispose()


def test_a_run_with_invalid_utf8_is_sent_and_counted_in_its_record_history_and_log(
    tmp_path: Path, box: Sandbox, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    from dispatcher.cli.main import main

    reports = """\
    daily:
      title: 日报
      schedule: "0 9 * * *"
      source: data
      sql: "SELECT name, n FROM t ORDER BY n"
      to: [ops]
    """
    path = write_project(tmp_path / "p", box, reports)
    data(tmp_path / "p", BAD_TEXT)
    caplog.set_level(logging.INFO, logger="dispatcher")
    with services(path, box) as svc:
        assert run_at(svc, "daily", FIRE) == "sent"
        [run] = svc.ledger.history("daily", limit=1)
    [received] = texts(box, "user004")
    assert "- **A\ufffdB** · n 1" in received
    note = "1 value with invalid UTF-8 shown as �"
    assert note in (run.error or "")
    [event] = [r for r in caplog.records if r.getMessage() == "run.sent"]
    assert event.event_fields["invalid_text"] == 1  # type: ignore[attr-defined]
    capsys.readouterr()
    assert main(["history", "daily", "-c", str(path)]) == 0
    assert "invalid UTF-8" in capsys.readouterr().out
