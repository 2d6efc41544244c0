"""The sandbox as one workspace (issue 26, items 1-3): `--sandbox` commands deliver to the sandbox
the user already runs, sandbox runs keep their ledger in the project's `.dispatcher/sandbox.db`
(read with `history/list/quota --sandbox`, never mixed with production's), and `dispatcher sandbox`
prints everything a client needs.

Real processes and servers: `dispatcher sandbox` and `dispatcher run --sandbox` as subprocesses on
ports of their own (the "default port" is DISPATCHER_SANDBOX_PORT, set per test by conftest), real
SQLite files, and the CLI in-process or as a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from dispatcher import clock
from dispatcher.cli.main import main
from dispatcher.sandbox.options import SandboxOptions
from tests.conftest import REPO, quick_receipts, run_cli
from tests.daemon_harness import DEADLINE, Daemons, project, report, wait_until
from tests.feature_kit import Answer, Scripted, serving

AT = "2026-11-28T10:00+08:00"
REAL_KEY, REAL_SECRET = "dingREALKEY000", "REAL-secret-never-sent-0123456789"  # stand for real ones
FAKE = SandboxOptions()


class RunningSandbox:
    """`dispatcher sandbox` in a subprocess: its printed banner, and its hooks over HTTP."""

    def __init__(self, proc: subprocess.Popen[str], out: Path) -> None:
        self.proc, self.out = proc, out
        self.url = ""

    def banner(self) -> str:
        return self.out.read_text(encoding="utf-8")

    def get(self, name: str, **params: str) -> Any:
        return requests.get(f"{self.url}/_sandbox/{name}", params=params, timeout=10).json()


@contextmanager
def sandbox_process(folder: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[RunningSandbox]:
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "sandbox.out"
    with out.open("w", encoding="utf-8") as sink:
        command = [sys.executable, "-m", "dispatcher", "sandbox", *args]
        proc = subprocess.Popen(command, cwd=REPO, text=True, env={**os.environ, **(env or {})},
                                stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip
    box = RunningSandbox(proc, out)
    try:
        first = wait_until(lambda: re.search(r"listening on (http://\S+)", box.banner()), "the banner", 60)
        box.url = first[1]
        wait_until(lambda: "deliver here" in box.banner(), "the whole banner", 30)
        yield box
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def default_port() -> int:
    return int(os.environ["DISPATCHER_SANDBOX_PORT"])  # this test's own, set by conftest


@pytest.fixture
def running(tmp_path: Path, default_port: int) -> Iterator[RunningSandbox]:
    """A sandbox on this test's default port, started as a user starts one: without --port."""
    with sandbox_process(tmp_path / "sandbox") as box:
        assert box.url == f"http://127.0.0.1:{default_port}"
        yield box


@pytest.fixture
def real_creds(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credentials that stand for real ones: a --sandbox command must never send them anywhere."""
    creds = {"TEST_DT_KEY": REAL_KEY, "TEST_DT_SECRET": REAL_SECRET, "TEST_DT_AGENT": "4242"}
    for name, value in creds.items():
        monkeypatch.setenv(name, value)
    return creds


# -- item 1: deliver to the sandbox that is running --------------------------------------------------


def test_send_delivers_to_the_running_sandbox_with_its_fake_credentials(project, running, real_creds):
    config = str(quick_receipts(project / "reports.yaml"))
    result = run_cli("send", "daily", "-c", config, "--at", AT, "--sandbox")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"using the sandbox at {running.url}" in result.stderr
    assert f"sandbox    {running.url}/ (the running sandbox" in result.stdout
    assert "delivered to" in result.stdout and "manager4974" in result.stdout
    assert {m["userid"] for m in running.get("messages")} >= {"manager4974", "0147282552401293909"}
    # the sandbox's fake key opened it (a wrong secret would have been refused), never the real one
    assert {c["query"]["appkey"] for c in running.get("calls", endpoint="gettoken")} == {FAKE.app_key}
    assert REAL_SECRET not in result.stdout + result.stderr and REAL_KEY not in str(running.get("calls"))
    again = run_cli("send", "daily", "-c", config, "--at", "2026-11-29T10:00+08:00", "--sandbox")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("manager4974") == 1, "the inbox line names this send's recipients only"
    assert len(running.get("tasks")) == 2, "both sends are in the one inbox the user has open"


def test_without_a_running_sandbox_send_starts_one_and_says_its_inbox_closes(project, default_port):
    config = str(quick_receipts(project / "reports.yaml"))
    result = run_cli("send", "daily", "-c", config, "--at", AT, "--sandbox")
    assert result.returncode == 0, result.stdout + result.stderr
    where = f"http://127.0.0.1:{default_port}"
    started = f"no sandbox running at {where}; started one for this command at http://127.0.0.1:"
    assert started in result.stderr
    assert "its inbox closes when the command ends" in result.stderr
    assert "(in this process; it stops when the command exits)" in result.stdout


@pytest.fixture
def other_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """JSON on every path, even: but not a dispatcher sandbox's answer."""
    for server in serving(Scripted(done=b'{"ok": true}')):
        monkeypatch.setenv("DISPATCHER_SANDBOX_PORT", str(server.server_address[1]))
        yield server.url


def test_another_server_on_the_port_is_not_taken_for_a_sandbox(project, other_server, capsys):
    config = str(quick_receipts(project / "reports.yaml"))
    assert main(["send", "daily", "-c", config, "--at", AT, "--sandbox"]) == 0
    err = capsys.readouterr().err
    assert f"something answers at {other_server}, but it is not a dispatcher sandbox; started one" in err
    assert main(["send", "daily", "-c", config, "--at", AT, "--sandbox-url", other_server]) == 1
    assert "not a dispatcher sandbox" in capsys.readouterr().err
    assert main(["send", "daily", "-c", config, "--sandbox-url", "http://example.com:8765"]) == 1
    assert "not a local sandbox address" in capsys.readouterr().err


ROBOT = """\
robots:
  sales-group:
    webhook: https://oapi.dingtalk.com/robot/send?access_token=REALTOKEN0123456789abcdef
    secret: SECrealsigningsecret0123456789
"""


def test_robots_are_registered_with_the_running_sandbox_under_fake_tokens(project, running, real_creds):
    config = project / "reports.yaml"
    config.write_text(config.read_text(encoding="utf-8") + ROBOT, encoding="utf-8")
    result = run_cli("send", "daily", "-c", str(config), "--at", AT, "--robot", "sales-group",
                     "--sandbox-url", running.url)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "robot      sales-group: posted" in result.stdout
    [message] = running.get("robot_messages", robot="sales-group")
    assert "每日销售" in message["title"]
    seen = result.stdout + result.stderr + running.banner() + str(running.get("robot_messages"))
    assert "REALTOKEN" not in seen and "SECreal" not in seen, "the real webhook stays home"


@pytest.fixture
def after_the_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backfill runs only fire times that have come: "now" is after them, whatever today is."""
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 11, 30, 12, 0, tzinfo=UTC))


def test_backfill_and_resend_use_the_running_sandbox_and_its_ledger(project, running, after_the_day, capsys):
    config = str(quick_receipts(project / "reports.yaml"))
    day = ["--from", "2026-11-28", "--to", "2026-11-28"]
    assert main(["backfill", "daily", "-c", config, *day, "--sandbox"]) == 0
    captured = capsys.readouterr()
    assert f"using the sandbox at {running.url}" in captured.err
    assert len(running.get("tasks")) == 1
    assert not (project / ".dispatcher" / "state.db").exists(), "production's store is untouched"
    assert main(["history", "-c", config, "--sandbox"]) == 0
    assert re.search(r"2026-11-28T09:00:00\+08:00\s+daily\s+sent", capsys.readouterr().out)
    resend = ["resend", "daily", "-c", config, "--fire-time", "2026-11-28T09:00", "--only", "unread"]
    assert main([*resend, "--sandbox"]) == 0
    captured = capsys.readouterr()
    assert f"using the sandbox at {running.url}" in captured.err and "manager4974" in captured.out
    assert len(running.get("tasks")) == 2
    assert not (project / ".dispatcher" / "state.db").exists(), "production's store is untouched"


def test_doctor_send_test_goes_to_the_running_sandbox(project, running, real_creds, capsys):
    config = str(project / "reports.yaml")
    code = main(["doctor", "-c", config, "--send-test", "--sandbox"])
    out, err = capsys.readouterr()
    assert f"using the sandbox at {running.url}" in err
    assert re.search(r"OK\s+test message\s+sent to admins", out), out
    assert code == 0, out
    assert [m["userid"] for m in running.get("messages")] == ["oncall01"]
    assert {c["query"]["appkey"] for c in running.get("calls", endpoint="gettoken")} == {FAKE.app_key}
    assert "sandbox.db" in out and REAL_SECRET not in out + err


# -- item 2: the sandbox's ledger in the project -----------------------------------------------------


def _sandbox_env(daemons: Daemons) -> dict[str, str]:
    """A user's shell: real-looking credentials and a production state URL, which --sandbox ignores."""
    env = {k: v for k, v in daemons.env().items() if not k.startswith("DINGTALK_")}
    return env | {"DINGTALK_APP_KEY": REAL_KEY, "DINGTALK_APP_SECRET": REAL_SECRET, "DINGTALK_AGENT_ID": "42"}


def _inbox(daemon: Any) -> str:
    line = wait_until(lambda: daemon.stdout().splitlines()[:1], "the sandbox address on stdout", DEADLINE)
    found = re.fullmatch(r"sandbox inbox: (http://127\.0\.0\.1:\d+)/", line[0])
    assert found, line
    return found[1]


def test_run_sandbox_ledger_is_seen_by_history_and_list_and_shared_with_send(daemons, tmp_path):
    config = project(tmp_path / "p", {"tick": report("心跳"), "guard": report("告警", every="3s", alert={})})
    env = _sandbox_env(daemons)
    daemon = daemons.start(config, "--sandbox", "--sandbox-port", "0", env=env)
    inbox = _inbox(daemon)
    sandbox_db = tmp_path / "p" / ".dispatcher" / "sandbox.db"
    history = ["history", "-c", str(config), "--sandbox"]
    wait_until(lambda: "sent" in run_cli(*history, "tick", env=env).stdout, "a sandbox run in history")
    assert sandbox_db.exists()
    listed = wait_until(lambda: _firing(run_cli("list", "-c", str(config), "--sandbox", env=env).stdout),
                        "the alert firing in list --sandbox")  # fmt: skip
    assert "firing since" in listed
    # a send while the daemon writes the same SQLite file: both land, nothing is locked out
    sent = run_cli("send", "tick", "-c", str(config), "--sandbox-url", inbox, "--at", AT, env=env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"using the sandbox at {inbox}" in sent.stderr
    rows = run_cli(*history, "tick", "--limit", "100", env=env).stdout
    assert re.search(r"tick\s+sent\s+manual", rows) and re.search(r"tick\s+sent\s+schedule", rows), rows
    # production's history stays empty: sandbox runs are never mixed in
    plain = run_cli("history", "-c", str(config), env=env)
    assert plain.returncode == 0 and plain.stdout.strip() == "no runs yet", plain.stdout
    assert "firing" not in run_cli("list", "-c", str(config), env=env).stdout
    assert "Traceback" not in daemon.stderr() and "database is locked" not in daemon.stderr()


def test_run_sandbox_delivers_to_the_dispatcher_sandbox_already_on_its_port(daemons, running, tmp_path):
    config = project(tmp_path / "p", {"tick": report("心跳")})
    env = _sandbox_env(daemons) | {"DISPATCHER_SANDBOX_PORT": os.environ["DISPATCHER_SANDBOX_PORT"]}
    daemon = daemons.start(config, "--sandbox", env=env)  # no --sandbox-port: the default, where it runs
    assert _inbox(daemon) == running.url
    assert f"using the sandbox already running at {running.url}/" in daemon.stdout()
    wait_until(lambda: running.get("messages"), "the daemon's report in the running sandbox's inbox")
    assert {c["query"]["appkey"] for c in running.get("calls", endpoint="gettoken")} == {FAKE.app_key}
    assert "cannot listen" not in daemon.stderr() and "Traceback" not in daemon.stderr()


def _firing(out: str) -> str | None:
    return out if re.search(r"guard .*firing since", out) else None


def test_two_run_sandbox_daemons_share_the_sandbox_ledger_without_sending_twice(daemons, tmp_path):
    config = project(tmp_path / "p", {"tick": report("心跳")})
    env = _sandbox_env(daemons)
    first = daemons.start(config, "--sandbox", "--sandbox-port", "0", env=env)
    second = daemons.start(config, "--sandbox", "--sandbox-port", "0", env=env)
    _inbox(first), _inbox(second)
    history = ["history", "tick", "-c", str(config), "--sandbox", "--json", "--limit", "1000"]

    def sent() -> list[dict[str, Any]] | None:
        rows = [r for r in _json(run_cli(*history, env=env).stdout) if r["state"] == "sent"]
        return rows if len(rows) >= 6 else None

    rows = wait_until(sent, "six sandbox runs")
    assert len({r["fire_time"] for r in rows}) == len(rows), "each fire time sent once across both"
    for daemon in (first, second):
        assert "Traceback" not in daemon.stderr() and "database is locked" not in daemon.stderr()


def _json(text: str) -> list[dict[str, Any]]:
    import json

    return json.loads(text) if text.strip().startswith("[") else []


def test_dispatcher_sandbox_state_url_moves_the_sandbox_store_but_never_onto_production(
    project, tmp_path, monkeypatch, capsys
):
    config = str(quick_receipts(project / "reports.yaml"))
    production, elsewhere = tmp_path / "prod" / "state.db", tmp_path / "box" / "sandbox.db"
    monkeypatch.setenv("DISPATCHER_STATE_URL", f"sqlite:///{production}")
    monkeypatch.setenv("DISPATCHER_SANDBOX_STATE_URL", f"sqlite:///{elsewhere}")
    assert main(["send", "daily", "-c", config, "--at", AT, "--sandbox"]) == 0
    assert elsewhere.exists() and not production.exists()
    assert not (project / ".dispatcher").exists()
    monkeypatch.delenv("DISPATCHER_SANDBOX_STATE_URL")
    capsys.readouterr()
    assert main(["history", "-c", config, "--sandbox"]) == 0, "the default: beside reports.yaml"
    assert (project / ".dispatcher" / "sandbox.db").exists() and not production.exists()
    assert "no runs yet in the sandbox" in capsys.readouterr().out
    monkeypatch.setenv("DISPATCHER_SANDBOX_STATE_URL", f"sqlite:///{production}")
    assert main(["history", "-c", config, "--sandbox"]) == 1
    err = capsys.readouterr().err
    assert "DISPATCHER_SANDBOX_STATE_URL names production's state store" in err and "Traceback" not in err
    assert not production.exists()


def test_quota_and_list_read_the_sandbox_store_and_init_ignores_it(project, tmp_path, capsys):
    config = str(project / "reports.yaml")
    assert main(["quota", "-c", config, "--sandbox"]) == 0
    assert (project / ".dispatcher" / "sandbox.db").exists()
    assert not (project / ".dispatcher" / "state.db").exists()
    assert main(["list", "-c", config, "--sandbox"]) == 0
    assert main(["init", str(tmp_path / "fresh")]) == 0
    assert ".dispatcher/" in (tmp_path / "fresh" / ".gitignore").read_text(encoding="utf-8").splitlines()


# -- item 3: `dispatcher sandbox` tells a client everything ------------------------------------------


def test_sandbox_prints_what_a_client_needs_and_a_client_works_from_it(project, tmp_path):
    with sandbox_process(tmp_path / "sb", "--port", "0") as box:
        banner = box.banner()
        exports = dict(re.findall(r"export (DINGTALK_\w+)=(\S+)", banner))
        assert exports == {
            "DINGTALK_API_BASE": box.url,
            "DINGTALK_APP_KEY": FAKE.app_key,
            "DINGTALK_APP_SECRET": FAKE.app_secret,
            "DINGTALK_AGENT_ID": str(FAKE.agent_id),
        }
        for label in (f"inbox:      {box.url}/", f"API base:   {box.url}", f"AgentID:    {FAKE.agent_id}",
                      f"AppKey:     {FAKE.app_key}", f"AppSecret:  {FAKE.app_secret}",
                      f"POST {box.url}/_sandbox/robots"):  # fmt: skip
            assert label in banner, banner
        env = {
            "TEST_DT_KEY": exports["DINGTALK_APP_KEY"],
            "TEST_DT_SECRET": exports["DINGTALK_APP_SECRET"],
            "TEST_DT_AGENT": exports["DINGTALK_AGENT_ID"],
            "DINGTALK_API_BASE": exports["DINGTALK_API_BASE"],
        }
        config = str(quick_receipts(project / "reports.yaml"))
        sent = run_cli("send", "daily", "-c", config, "--at", AT, env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert FAKE.app_secret not in sent.stdout + sent.stderr, "the client still masks the secret it uses"
        robot = [{"name": "g", "token": "tok123"}]
        assert requests.post(f"{box.url}/_sandbox/robots", json=robot, timeout=10).json() == {"ok": True}
        assert box.get("about")["app_secret"] == FAKE.app_secret


def test_a_sandbox_secret_equal_to_the_real_one_is_never_printed(tmp_path):
    secret = "the-real-app-secret-0123456789"
    env = {"DISPATCHER_SANDBOX_APP_SECRET": secret, "DINGTALK_APP_SECRET": secret}
    with sandbox_process(tmp_path / "sb", "--port", "0", env=env) as box:
        assert secret not in box.banner()
        assert "AppSecret:  (hidden" in box.banner()


def test_the_probe_reads_at_most_64_kib_of_what_answers_on_the_port() -> None:
    from dispatcher.sandbox.attach import ABOUT_LIMIT, about, probe
    from dispatcher.sandbox.options import SandboxOptions

    body = about(SandboxOptions(), "http://127.0.0.1:1")
    for server in serving(Scripted(done=json.dumps(body).encode())):
        assert not isinstance(probe(server.url), str), "a real /about body is a sandbox"
    padded = json.dumps({**body, "padding": "x" * ABOUT_LIMIT}).encode()
    for server in serving(Scripted(done=padded)):
        assert probe(server.url) == f"something answers at {server.url}, but it is not a dispatcher sandbox"


def test_the_probe_gives_up_on_a_body_that_trickles_in_past_its_deadline() -> None:
    """Each byte within the request's read timeout, the whole far beyond it: the probe stops waiting."""
    from dispatcher.sandbox.attach import PROBE_SECONDS, about, probe
    from dispatcher.sandbox.options import SandboxOptions

    body = json.dumps(about(SandboxOptions(), "http://127.0.0.1:1")).encode()
    trickle = 10 * PROBE_SECONDS / len(body)  # the whole body would take ten probe deadlines
    for server in serving(Scripted()):
        server.answers.append(Answer(200, body, trickle=trickle))
        assert probe(server.url) == f"something answers at {server.url}, but it is not a dispatcher sandbox"
        with server.lock:
            assert server.trickled < len(body), "the probe hung up before the body was sent"
