"""The last line of defence (issue 22 §3): a secret that arrives through data, which `validate` cannot
see, is refused in every message, part and channel, by preview, and by the state store. The
query returns the app secret (or a robot's) from a real SQLite table; the run goes to the sandbox
over HTTP; the state store is a real SQLite file, read back byte by byte afterwards."""

from __future__ import annotations

import json
import sqlite3
import unicodedata
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from dispatcher.cli.main import main
from dispatcher.errors import SecretLeakError
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.db import DEFAULT_STATE_PATH, StateStore
from dispatcher.store.run_messages import RunMessages
from tests.feature_kit import data, run_at, services, write_project

APP_SECRET = "ding_Secret_4f7a9c2e1b"  # underscores: escaped as ＿ in markdown, still found
ROBOT_TOKEN = "tok-leak-5f1c2d9e8a"
ROBOT_SECRET = "SECleak0ffee1234567890abc"
FIRE = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
ROWS = (
    "CREATE TABLE t (manager TEXT, name TEXT, amount INTEGER);"
    "INSERT INTO t VALUES ('user004', '静安店', 100), ('user005', '{secret}', 200);"
)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(app_secret=APP_SECRET)) as box:
        box.add_robot("grp", ROBOT_TOKEN, ROBOT_SECRET, None)
        yield box


def _report(**keys: str) -> str:
    base = {"title": "日报", "schedule": '"0 8 * * *"', "source": "data",
            "sql": '"SELECT manager, name, amount FROM t"', "to": "[ops]", "retries": "0"}  # fmt: skip
    lines = [f"  {k}: {v}" for k, v in (base | keys).items() if v]
    return "daily:\n" + "\n".join(lines) + "\n"


def _project(folder: Path, sandbox: Sandbox, report: str, secret: str = APP_SECRET) -> Path:
    path = write_project(folder, sandbox, report)
    text = path.read_text(encoding="utf-8").replace(
        "recipients:\n",
        f"robots:\n  grp:\n    webhook: {sandbox.url}/robot/send?access_token={ROBOT_TOKEN}\n"
        f"    secret: {ROBOT_SECRET}\nrecipients:\n",
    )
    path.write_text(text, encoding="utf-8")
    data(folder, ROWS.format(secret=secret))
    return path


def _leaked(text: str, secret: str = APP_SECRET) -> bool:
    """The value, raw or as escaping shows it (full-width look-alikes), anywhere in `text`."""
    return secret in text or secret in unicodedata.normalize("NFKC", text)


def _nothing_left(folder: Path, sandbox: Sandbox, secret: str = APP_SECRET) -> None:
    """No request to DingTalk or a robot, and no byte of the state store, holds the secret."""
    bodies = [json.dumps(c, ensure_ascii=False) for c in sandbox.calls("asyncsend_v2")]
    bodies += [json.dumps(m, ensure_ascii=False) for m in sandbox.robot_messages()]
    assert not any(_leaked(b, secret) for b in bodies), "a message carried the secret"
    assert [m["userid"] for m in sandbox.messages()] in ([], ["oncall01"]), "only the admins' alert"
    state = folder / DEFAULT_STATE_PATH
    for file in state.parent.glob(state.name + "*"):  # the database, its -wal and -shm
        raw = file.read_bytes()
        assert secret.encode() not in raw and unicodedata.normalize("NFKC", secret).encode() not in raw
    conn = sqlite3.connect(state)
    try:
        assert conn.execute("SELECT COUNT(*) FROM dispatcher_run_messages").fetchone() == (0,)
        [error] = conn.execute("SELECT error FROM dispatcher_runs").fetchone()
    finally:
        conn.close()
    assert "holds " in error and "refused" in error, error


@pytest.mark.parametrize(
    ("msgtype", "extra"),
    [("markdown", {}), ("text", {}), ("action_card", {"action_url": "https://example.com/r"}),
     ("oa", {"oa": "{url: 'https://example.com/r', form: {店: '{{ row.name }}'}}",
             "sql": '"SELECT name FROM t ORDER BY amount DESC"'})],
)  # fmt: skip
def test_a_secret_returned_by_the_query_is_refused_in_every_msgtype_and_nothing_is_stored(
    tmp_path: Path, sandbox: Sandbox, msgtype: str, extra: dict[str, str]
) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox, _report(msgtype=msgtype, **extra))
    with services(path, sandbox) as svc:
        assert run_at(svc, "daily", FIRE) == "failed"
    _nothing_left(folder, sandbox)


def test_preview_refuses_to_print_a_message_holding_the_secret(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _project(tmp_path / "p", sandbox, _report())
    for extra in ([], ["--json"]):
        assert main(["preview", "daily", "-c", str(path), "--at", "2026-11-01T09:00", *extra]) == 1
        out = capsys.readouterr()
        assert "holds the DingTalk app secret; it was refused" in out.err, out.err
        assert not _leaked(out.out + out.err)


def test_a_manual_send_is_refused_and_its_history_row_holds_no_secret(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox, _report())
    assert main(["send", "daily", "-c", str(path), "--at", "2026-11-01T09:00"]) == 1
    out = capsys.readouterr()
    assert "holds the DingTalk app secret" in out.err and not _leaked(out.out + out.err)
    assert sandbox.calls("asyncsend_v2") == []
    raw = (folder / DEFAULT_STATE_PATH).read_bytes()
    assert APP_SECRET.encode() not in raw


def test_a_split_report_sends_no_slice_when_one_holds_the_secret(tmp_path: Path, sandbox: Sandbox) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox, _report(to="", split_by="{column: manager}"))
    with services(path, sandbox) as svc:
        assert run_at(svc, "daily", FIRE) == "failed"
    _nothing_left(folder, sandbox)


@pytest.mark.parametrize(
    "extra",
    [{"attach": "{format: csv, name: d.zip}"}, {"attach": "{format: xlsx, name: d.xlsx}"},
     {"chart": "{x: name, y: amount, kind: bar}"}],
)  # fmt: skip
def test_a_secret_only_in_an_attachment_or_chart_is_refused(
    tmp_path: Path, sandbox: Sandbox, extra: dict[str, str]
) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox, _report(template='"{{ n_rows }} 行"', **extra))
    with services(path, sandbox) as svc:
        state = run_at(svc, "daily", FIRE)
    assert sandbox.calls("media_upload") == []
    if "chart" in extra:
        assert state == "failed"
        _nothing_left(folder, sandbox)
        return
    # A file that cannot be built never stops the message (the run is partial): the text, which
    # holds no secret, goes; the file holding it does not, and nothing stored holds it either.
    assert state == "partial"
    bodies = [json.dumps(c, ensure_ascii=False) for c in sandbox.calls("asyncsend_v2")]
    assert bodies and not any(_leaked(b) for b in bodies)
    state_file = folder / DEFAULT_STATE_PATH
    for file in state_file.parent.glob(state_file.name + "*"):
        assert APP_SECRET.encode() not in file.read_bytes()


@pytest.mark.parametrize("secret", [ROBOT_SECRET, ROBOT_TOKEN])
def test_a_robots_secret_in_the_data_never_reaches_the_group(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox, _report(to="", robots="[grp]"), secret=secret)
    assert main(["send", "daily", "-c", str(path), "--at", "2026-11-01T09:00"]) == 1
    out = capsys.readouterr()
    assert "robot 'grp'" in out.err and not _leaked(out.out + out.err, secret), out.err
    assert sandbox.robot_messages() == []
    assert secret.encode() not in (folder / DEFAULT_STATE_PATH).read_bytes()


def _client(path: Path, sandbox: Sandbox) -> Any:
    from dispatcher.config.check import load_config
    from dispatcher.dingtalk.client import Credentials
    from dispatcher.run.delivery import make_client

    opts = sandbox.options
    return make_client(load_config(path), Credentials(opts.app_key, opts.app_secret, opts.agent_id), None)


def test_the_client_refuses_a_message_or_file_holding_its_secret_or_its_access_token(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    path = _project(tmp_path / "p", sandbox, _report())
    with _client(path, sandbox) as client:
        token = client.token()
        for value in (APP_SECRET, token):
            msg = {"msgtype": "text", "text": {"content": f"看这个 {value}"}}
            with pytest.raises(SecretLeakError) as caught:
                client.send(msg, userids=["user004"])
            assert value not in str(caught.value)
        packed = BytesIO()
        with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("d.csv", f"name\n{'x' * 3_000_000}{APP_SECRET}\n")  # across read chunks
        with pytest.raises(SecretLeakError):
            client.media_id("file", "d.zip", packed.getvalue())
    assert sandbox.calls("asyncsend_v2") == [] and sandbox.calls("media_upload") == []


def test_the_state_store_refuses_to_record_a_message_holding_a_secret(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        msg = {"msgtype": "markdown", "markdown": {"title": "t", "text": "ding＿Secret＿4f7a9c2e1b"}}
        with pytest.raises(SecretLeakError):
            RunMessages(store).record(1, {"": msg}, secrets=[APP_SECRET])
        assert RunMessages(store).get(1) == {}
        RunMessages(store).record(
            1, {"": {"msgtype": "text", "text": {"content": "ok"}}}, secrets=[APP_SECRET]
        )
        assert list(RunMessages(store).get(1)) == [""]
    finally:
        store.close()


def test_a_resend_of_a_stored_message_that_holds_the_secret_sends_nothing(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox, _report(sql='"SELECT manager FROM t"'))
    sandbox.set_options(failing_userids=["user005"])
    with services(path, sandbox) as svc:
        assert run_at(svc, "daily", FIRE) == "sent"
    conn = sqlite3.connect(folder / DEFAULT_STATE_PATH)
    try:
        [(text,)] = conn.execute("SELECT msg FROM dispatcher_run_messages").fetchall()
        msg = json.loads(text)
        msg["markdown"]["text"] += f"\n\n{APP_SECRET}"
        conn.execute("UPDATE dispatcher_run_messages SET msg = ?", (json.dumps(msg, ensure_ascii=False),))
        conn.commit()
    finally:
        conn.close()
    calls = len(sandbox.calls("asyncsend_v2"))
    assert main(["resend", "daily", "-c", str(path), "--fire-time", "2026-11-01T08:00"]) == 1
    out = capsys.readouterr()
    assert "holds " in out.err and not _leaked(out.out + out.err), out.err
    assert len(sandbox.calls("asyncsend_v2")) == calls


def test_an_ordinary_run_beside_these_guards_still_sends(tmp_path: Path, sandbox: Sandbox) -> None:
    folder = tmp_path / "p"
    path = _project(folder, sandbox, _report(), secret="普通门店")
    with services(path, sandbox) as svc:
        assert run_at(svc, "daily", FIRE) == "sent"
    assert {m["userid"] for m in sandbox.messages()} == {"user004", "user005"}
