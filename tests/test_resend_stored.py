"""`resend` of what the state store holds (issue 22 §8 and §12): a full-size report still fits once
its "（重发于 …）" marker is added, every msgtype the project sends gets the marker, and a stored
message the project could not have written (another msgtype, another shape, too large, not JSON) is
refused before anything is sent. Real sandbox over HTTP, real SQLite state store, tampered by SQL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dispatcher.cli.main import main
from dispatcher.dingtalk.message import MAX_MSG_BYTES, msg_bytes
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.db import DEFAULT_STATE_PATH
from tests.feature_kit import data, run_at, services, texts, write_project

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
FIRE = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
RESEND = ["resend", "daily", "--fire-time", "2026-11-01T08:00"]
ROWS = "CREATE TABLE t (name TEXT, amount INTEGER);" + "".join(
    f"INSERT INTO t VALUES ('门店{i:02d}', {i * 1000});" for i in range(40)
)


def _report(template: str, msgtype: str = "markdown", extra: str = "") -> str:
    return (
        "daily:\n"
        "  title: 日报\n"
        '  schedule: "0 8 * * *"\n'
        "  source: data\n"
        '  sql: "SELECT name, amount FROM t ORDER BY amount"\n'
        f"  msgtype: {msgtype}\n"
        f"  template: {json.dumps(template, ensure_ascii=False)}\n"
        "  to: [ops]\n"
        "  retries: 0\n" + extra
    )


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as box:
        box.set_options(failing_userids=["user005"])  # its first message fails: resend has work
        yield box


def _sent_run(folder: Path, sandbox: Sandbox, reports: str) -> Path:
    path = write_project(folder, sandbox, reports)
    data(folder, ROWS)
    with services(path, sandbox) as svc:
        assert run_at(svc, "daily", FIRE) == "sent"
    assert len(texts(sandbox, "user004")) == 1 and texts(sandbox, "user005") == []
    return path


def _full_size_project(folder: Path, sandbox: Sandbox, msgtype: str) -> Path:
    """A report whose message is exactly DingTalk's 2048 bytes, every row shown."""
    lines = "{% for r in rows %}- {{ r.name }}: {{ r.amount }}\n{% endfor %}"
    extra = "  action_url: https://example.com/report\n" if msgtype == "action_card" else ""
    path = write_project(folder, sandbox, _report(lines + "x", msgtype, extra))
    data(folder, ROWS)
    size = _preview_bytes(path)
    path = write_project(folder, sandbox, _report(lines + "x" * (1 + MAX_MSG_BYTES - size), msgtype, extra))
    assert _preview_bytes(path) == MAX_MSG_BYTES
    with services(path, sandbox) as svc:
        assert run_at(svc, "daily", FIRE) == "sent"
    return path


def _preview_bytes(path: Path) -> int:
    from dispatcher.cli.preview import preview_dict
    from dispatcher.config.check import load_config
    from dispatcher.run.prepare import build_sources, prepare

    config = load_config(path)
    sources = build_sources(config)
    try:
        prepared = prepare(config, sources, config.reports["daily"], FIRE)
    finally:
        sources.dispose()
    out = preview_dict(prepared)
    assert out["rows_shown"] == 40
    return int(out["msg_bytes"])


def _received(sandbox: Sandbox, userid: str) -> list[dict[str, Any]]:
    return [m["msg"] for m in sorted(sandbox.messages(userid), key=lambda m: int(m["id"]))]


@pytest.mark.parametrize("msgtype", ["markdown", "text", "action_card"])
def test_resend_of_a_full_size_report_fits_the_marker_within_2048_bytes(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], msgtype: str
) -> None:
    path = _full_size_project(tmp_path / "p", sandbox, msgtype)
    [original] = _received(sandbox, "user004")
    assert msg_bytes(original) == MAX_MSG_BYTES
    assert main(["-c", str(path), *RESEND]) == 0, capsys.readouterr().err
    [again] = _received(sandbox, "user005")
    assert msg_bytes(again) <= MAX_MSG_BYTES
    text = texts(sandbox, "user005")[0]
    assert "（重发于 " in text.splitlines()[-1]
    assert "数据截至 2026-11-01 08:00" in text, "the footer stays"
    assert "重发时省略" in text, "the reader is told that lines were left out"
    first = texts(sandbox, "user004")[0].splitlines()
    assert text.splitlines()[:5] == first[:5], "the same message, shortened from the end"


def test_resend_of_an_oa_card_carries_the_marker_in_its_content(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = "  oa: {url: https://example.com/report, form: {门店: '{{ row.name }}'}}\n"
    _sent_run(tmp_path / "p", sandbox, _report("", "oa", extra).replace('  template: ""\n', ""))
    assert main(["-c", str(tmp_path / "p" / "reports.yaml"), *RESEND]) == 0, capsys.readouterr().err
    [original] = _received(sandbox, "user004")
    [again] = _received(sandbox, "user005")
    assert again["oa"]["body"]["content"].startswith(original["oa"]["body"]["content"])
    assert "（重发于 " in again["oa"]["body"]["content"]
    assert again["oa"]["body"]["form"] == original["oa"]["body"]["form"]


def _tamper(folder: Path, msg: str) -> None:
    conn = sqlite3.connect(folder / DEFAULT_STATE_PATH)
    try:
        assert conn.execute("UPDATE dispatcher_run_messages SET msg = ?", (msg,)).rowcount == 1
        conn.commit()
    finally:
        conn.close()


MARKDOWN = {"msgtype": "markdown", "markdown": {"title": "日报", "text": "正文"}}
HEAD = {"bgcolor": "FF1E88E5", "text": "t"}
TAMPERED = {
    "a link card": (
        {
            "msgtype": "link",
            "link": {"title": "t", "text": "t", "messageUrl": "https://evil.example", "picUrl": ""},
        },
        "msgtype 'link'",
    ),  # fmt: skip
    "an image": ({"msgtype": "image", "image": {"media_id": "@lADOx"}}, "msgtype 'image'"),
    "a file": ({"msgtype": "file", "file": {"media_id": "@lADOx"}}, "msgtype 'file'"),
    "a voice": ({"msgtype": "voice", "voice": {"media_id": "@x", "duration": "10"}}, "msgtype 'voice'"),
    "no msgtype": ({"markdown": MARKDOWN["markdown"]}, "msgtype"),
    "an extra key": ({**MARKDOWN, "markdown": {**MARKDOWN["markdown"], "btn": "x"}}, "markdown.btn"),
    "a second body": ({**MARKDOWN, "text": {"content": "x"}}, "'text'"),
    "a number as text": ({"msgtype": "markdown", "markdown": {"title": "t", "text": 5}}, "markdown.text"),
    "a missing title": ({"msgtype": "markdown", "markdown": {"text": "t"}}, "markdown.title"),
    "a javascript button": (
        {
            "msgtype": "action_card",
            "action_card": {
                "title": "t",
                "markdown": "m",
                "single_title": "看",
                "single_url": "javascript:alert(1)",
            },
        },
        "single_url",
    ),  # fmt: skip
    "an oa card with a script link": (
        {
            "msgtype": "oa",
            "oa": {
                "message_url": "javascript:alert(1)",
                "head": {"bgcolor": "FF1E88E5", "text": "t"},
                "body": {"title": "t", "content": "c"},
            },
        },
        "oa.message_url",
    ),  # fmt: skip
    "an oa card with an extra field": (
        {
            "msgtype": "oa",
            "oa": {
                "message_url": "https://example.com",
                "head": {"bgcolor": "FF1E88E5", "text": "t"},
                "body": {"title": "t", "content": "c", "author": "x"},
            },
        },
        "oa.body.author",
    ),  # fmt: skip
    "too large": ({"msgtype": "text", "text": {"content": "字" * 700}}, "bytes"),
    "a list": ([MARKDOWN], "not a JSON object"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_stored_message_is_refused_and_nothing_is_sent(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    folder = tmp_path / "p"
    path = _sent_run(folder, sandbox, _report("{{ n_rows }} 行"))
    stored, named = TAMPERED[case]
    _tamper(folder, json.dumps(stored, ensure_ascii=False))
    calls = len(sandbox.calls("asyncsend_v2"))
    assert main(["-c", str(path), *RESEND]) == 1
    err = capsys.readouterr().err
    assert "error: " in err and named in err and "internal error" not in err, err
    assert "was not resent" in err, err
    assert len(sandbox.calls("asyncsend_v2")) == calls, "nothing may be sent"
    assert texts(sandbox, "user005") == []


def test_a_stored_message_that_is_not_json_is_refused_and_nothing_is_sent(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    path = _sent_run(folder, sandbox, _report("{{ n_rows }} 行"))
    _tamper(folder, "{not json")
    calls = len(sandbox.calls("asyncsend_v2"))
    assert main(["-c", str(path), *RESEND]) == 1
    err = capsys.readouterr().err
    assert "not JSON" in err and "internal error" not in err, err
    assert len(sandbox.calls("asyncsend_v2")) == calls


def test_an_untampered_small_message_is_resent_whole_with_the_marker(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _sent_run(tmp_path / "p", sandbox, _report("{{ n_rows }} 行"))
    assert main(["-c", str(path), *RESEND]) == 0, capsys.readouterr().err
    [original] = texts(sandbox, "user004")
    [again] = texts(sandbox, "user005")
    assert again.startswith(original + "\n\n（重发于 ") and "重发时省略" not in again
