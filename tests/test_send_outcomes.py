"""What `dispatcher send` and a daemon run say when a message reached fewer people than meant
(issue 9 trips 2, 4, 5 and 9), against a real sandbox over HTTP and a real SQLite state store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.cli.main import main
from dispatcher.config.check import load_config
from dispatcher.run.delivery import credentials_from, make_client
from dispatcher.run.metrics import Metrics
from dispatcher.run.prepare import build_sources, fire_time_at
from dispatcher.run.runner import execute
from dispatcher.run.services import Services
from dispatcher.sandbox import Sandbox
from dispatcher.store.db import StateStore, state_url
from dispatcher.store.ledger import Ledger
from dispatcher.store.userids import UseridCache
from tests import test_send as send_tests
from tests.conftest import run_cli

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
sandbox, creds = send_tests.sandbox, send_tests.creds  # the fixtures
AT, send = send_tests.AT, send_tests.send

NO_CREDENTIALS = {"DINGTALK_API_BASE": "", "TEST_DT_KEY": "", "TEST_DT_SECRET": "", "TEST_DT_AGENT": ""}


def dry_run(project: Path) -> tuple[int, str]:
    result = run_cli(
        "send", "daily", "-c", str(project / "reports.yaml"), "--at", AT, "--dry-run", env=NO_CREDENTIALS
    )
    return result.returncode, result.stdout + result.stderr


def test_dry_run_without_credentials_lists_mobiles_the_cache_does_not_know(project: Path) -> None:
    code, out = dry_run(project)
    assert code == 0, out
    assert "userids    manager4974, 0147282552401293909" in out
    assert "unresolved 138****0000: not in the userid cache; resolved at send time" in out
    assert "13800000000" not in out
    assert "nothing was sent" in out and "华东" in out
    assert not (project / ".dispatcher").exists(), "a dry run creates no state store"


def test_dry_run_without_credentials_resolves_from_the_userid_cache(project: Path) -> None:
    store = StateStore(state_url(project, None))
    UseridCache(store).put_userids("dingsandboxkey", {"13800000000": "manager4974"})
    store.close()
    code, out = dry_run(project)
    assert code == 0, out
    assert "userids    manager4974, 0147282552401293909" in out
    assert "unresolved" not in out


def test_send_to_an_unknown_userid_exits_1_saying_nobody_received_it(project, sandbox, creds, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out = send(project, capsys, "--to", "nosuchuser")
    assert code == 1, out
    assert "nobody received the message: 1 invalid recipient" in out
    assert sandbox.messages() == []


def test_send_to_only_unknown_mobiles_exits_1(project, sandbox, creds, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out = send(project, capsys, "--to", "13911112222")
    assert code == 1, out
    assert "no recipient left to send to: 139****2222" in out
    assert sandbox.calls("asyncsend_v2") == []


def test_one_recipient_is_written_in_the_singular(project, sandbox, creds, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out = send(project, capsys, "--to", "oncall01")
    assert code == 0, out
    [task] = sandbox.tasks()
    assert f"sent       1 recipient in 1 call; task id {task['task_id']}" in out
    assert "recipients" not in out.replace("recipient groups", "")


def test_a_second_manual_send_of_the_same_content_is_suppressed_and_exits_1(
    project, sandbox, creds, capsys
) -> None:  # type: ignore[no-untyped-def]
    assert send(project, capsys)[0] == 0
    code, out = send(project, capsys)
    assert code == 1, out
    assert "forbidden 2 (143106:2)" in out
    assert "duplicate content (143106), so nobody received it" in out


@pytest.fixture
def services(project: Path, sandbox: Sandbox, creds: dict[str, str]) -> Iterator[Services]:
    config = load_config(project / "reports.yaml")
    store = StateStore(state_url(config.base_dir, config.state))
    client = make_client(config, credentials_from(config), store, base_url=sandbox.url)
    sources = build_sources(config)
    try:
        yield Services(config, sources, client, Ledger(store), Metrics(), "daemon-1")
    finally:
        client.close()
        sources.dispose()
        store.close()


def test_the_daemons_run_after_a_manual_send_of_the_same_fire_time_is_suppressed(
    project, sandbox, services: Services, capsys, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    assert send(project, capsys)[0] == 0
    report = services.config.reports["daily"]
    from datetime import datetime

    fire = fire_time_at(services.config, report, datetime.fromisoformat(AT))
    run = services.ledger.claim("daily", fire, services.owner)
    assert run is not None, "a manual send must not take the daemon's claim"
    with caplog.at_level(logging.INFO, logger="dispatcher"):
        assert execute(services, report, run) == "suppressed"

    assert len(sandbox.messages()) == 2  # only the manual send's
    scheduled, manual = services.ledger.history("daily")
    assert (scheduled.trigger, scheduled.state) == ("schedule", "suppressed")
    assert (manual.trigger, manual.state) == ("manual", "sent")
    assert scheduled.receipts["forbidden_143106"] == 2 and scheduled.receipts["unread"] == 0
    assert "duplicate content (143106)" in (scheduled.error or "")
    [event] = [r for r in caplog.records if r.getMessage() == "run.suppressed"]
    assert event.levelno == logging.WARNING
    metrics = services.metrics.registry.get_sample_value(
        "dispatcher_runs_total", {"report": "daily", "state": "suppressed"}
    )
    assert metrics == 1.0

    assert main(["history", "daily", "-c", str(project / "reports.yaml")]) == 0
    out = capsys.readouterr().out
    assert "suppressed  schedule" in out and "sent        manual" in out
