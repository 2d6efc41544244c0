"""Outages around a running daemon: a source server going away, the state database missing or lost.

Databases are the real PostgreSQL and MariaDB (tests/services.py); an outage is a TcpProxy in front
of one, cut and restored. Cuts and restores land in the middle of a 2 s period, when no run is in
flight, so each fire time is on one side of the outage.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dispatcher import clock
from dispatcher.sandbox import Sandbox
from dispatcher.store.ledger import Run
from tests import daemon_harness, services
from tests.daemon_harness import (
    ALERT_TITLE,
    DaemonProcess,
    Daemons,
    alerts_to,
    assert_consecutive,
    fire_times,
    project,
    report,
    runs,
    task_fire_times,
    wait_until,
)
from tests.tcp_proxy import TcpProxy

sandbox, state_url, daemons = daemon_harness.sandbox, daemon_harness.state_url, daemon_harness.daemons
postgres_url, mysql_url = services.postgres_url, services.mysql_url

STEP = 2.0  # every report here fires every 2 s, on even Unix seconds (Shanghai is UTC+8)
REMOTE, LOCAL = "远程报表", "本地报表"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- helpers --


def mid_period() -> datetime:
    """Wait for the middle of a 2 s period, when no run of these fast reports is in flight."""
    wait_until(lambda: 0.8 <= time.time() % STEP <= 1.2, "the middle of a period", timeout=30, every=0.02)
    return clock.now()


def settled_mid_period(url: str, report_id: str) -> datetime:
    """A moment of a period whose fire time is sent already and whose next is not near: no run in
    flight. Usually the middle; on a loaded machine a run may take most of the period, so any
    moment up to 0.4 s before the next fire time will do."""

    def settled() -> bool:
        now = time.time()
        if not 0.8 <= now % STEP <= STEP - 0.4:
            return False
        fire = datetime.fromtimestamp(now - now % STEP, UTC)
        return fire in fire_times(runs(url, report_id), "sent") and time.time() % STEP <= STEP - 0.4

    wait_until(settled, f"a quiet moment of a period whose {report_id} run is done", every=0.02)
    return clock.now()


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_table(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1), (2), (3)")
    engine.dispose()


def through(url: str, port: int) -> str:
    """The same database URL (search_path option included) at another port of 127.0.0.1."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def sent_after(url: str, report_id: str, after: datetime) -> list[datetime]:
    return [t for t in fire_times(runs(url, report_id), "sent") if t > after]


def gave_up(rows: list[Run], after: datetime) -> list[Run]:
    """Failed runs whose one retry failed too: attempts are used up, no retry is due."""
    return [r for r in rows if r.state == "failed" and r.attempts == 2 and r.fire_time > after]


def stop(daemon: DaemonProcess) -> None:
    daemon.send(signal.SIGTERM)
    assert daemon.wait_exit(60) == 0, daemon.stderr()[-3000:]
    assert "Traceback" not in daemon.stderr(), daemon.stderr()[-3000:]


def two_reports() -> dict[str, dict[str, object]]:
    """A report on the remote source and one on the local SQLite file, both retried once after 1 s."""
    return {
        "remote": report(REMOTE, source="remote", retries=1, retry_delay="1s"),
        "local": report(LOCAL, retries=1, retry_delay="1s"),
    }


@pytest.fixture
def proxy() -> Iterator[list[TcpProxy]]:
    made: list[TcpProxy] = []
    yield made
    for each in made:
        each.close()


# -- a source's server goes away --


@pytest.mark.slow
@pytest.mark.parametrize("server", ["postgres_url", "mysql_url"], ids=["postgresql", "mariadb"])
def test_a_source_outage_fails_retries_and_alerts_while_other_reports_go_on_and_recovers(
    request: pytest.FixtureRequest,
    server: str,
    daemons: Daemons,
    sandbox: Sandbox,
    state_url: str,
    tmp_path: Path,
    proxy: list[TcpProxy],
) -> None:
    direct = request.getfixturevalue(server)
    load_table(direct)
    target = make_url(direct)
    cut = TcpProxy(target.host or "127.0.0.1", target.port or 0).up()
    proxy.append(cut)
    config = project(tmp_path / "p", two_reports(), sources={"remote": through(direct, cut.port)})
    daemon = daemons.start(config)
    wait_until(lambda: sent_after(state_url, "remote", EPOCH), "a first delivery of the remote report")
    warm = clock.now()  # the first runs import pandas: on a loaded machine a start-up tick may be late

    cut_at = settled_mid_period(state_url, "remote")
    cut.down()
    wait_until(lambda: len(gave_up(runs(state_url, "remote"), cut_at)) >= 2, "two remote runs to give up")
    wait_until(lambda: alerts_to(sandbox), "an alert to oncall01")
    restored_at = mid_period()
    cut.up()
    wait_until(lambda: sent_after(state_url, "remote", restored_at), "a remote delivery after the restore")
    stop(daemon)

    remote, local = runs(state_url, "remote"), runs(state_url, "local")
    failed = [r for r in remote if cut_at < r.fire_time < restored_at]
    assert failed and all(r.state in ("failed", "sent") for r in failed), [
        (r.fire_time, r.state) for r in failed
    ]
    errors = [r.error or "" for r in failed if r.state == "failed"]
    assert errors and all("connect" in e.lower() for e in errors), errors
    assert gave_up(remote, cut_at), "no run used its retry"
    assert sorted(Counter(task_fire_times(sandbox, REMOTE))) == fire_times(remote, "sent")

    _assert_one_alert_about(sandbox, "remote")
    local_sent = fire_times(local, "sent")
    assert_consecutive([t for t in local_sent if t >= warm], STEP)
    assert local_sent[0] < cut_at and local_sent[-1] > restored_at, "the local report stopped meanwhile"
    assert sorted(task_fire_times(sandbox, LOCAL)) == local_sent


def test_a_source_at_a_closed_port_fails_and_alerts_while_other_reports_go_on(
    daemons: Daemons, sandbox: Sandbox, state_url: str, tmp_path: Path
) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test"
    config = project(tmp_path / "p", two_reports(), sources={"remote": url})
    daemon = daemons.start(config)
    wait_until(lambda: gave_up(runs(state_url, "remote"), EPOCH), "a remote run to give up")
    warm = clock.now()  # the first runs import pandas: on a loaded machine a start-up tick may be late
    wait_until(lambda: alerts_to(sandbox), "an alert to oncall01")
    wait_until(lambda: len(sent_after(state_url, "local", warm)) >= 3, "three local deliveries")
    stop(daemon)

    remote = runs(state_url, "remote")
    assert not fire_times(remote, "sent") and not task_fire_times(sandbox, REMOTE)
    errors = [r.error for r in remote if r.state == "failed"]
    assert errors and all("connect" in (e or "").lower() for e in errors), errors
    _assert_one_alert_about(sandbox, "remote")
    local_sent = fire_times(runs(state_url, "local"), "sent")
    assert_consecutive([t for t in local_sent if t >= warm], STEP)
    assert sorted(task_fire_times(sandbox, LOCAL)) == local_sent


def _assert_one_alert_about(sandbox: Sandbox, report_id: str) -> None:
    alerts = alerts_to(sandbox)
    assert len(alerts) == 1, [a["msg"]["markdown"]["title"] for a in alerts]
    markdown = alerts[0]["msg"]["markdown"]
    assert markdown["title"] == f"{ALERT_TITLE}：{REMOTE}"
    assert report_id in markdown["text"] and "connect" in markdown["text"].lower(), markdown["text"]
    assert [m for m in sandbox.messages("manager4974") if ALERT_TITLE in m["msg"]["markdown"]["title"]] == []


# -- the state database --


def test_an_unreachable_state_database_at_start_exits_1_with_a_clear_error(
    daemons: Daemons, tmp_path: Path
) -> None:
    port = closed_port()
    config = project(tmp_path / "p", {"tick": report("心跳")})
    url = f"postgresql+psycopg://dispatcher:hunter2@127.0.0.1:{port}/state"
    done = subprocess.run(
        [sys.executable, "-m", "dispatcher", "run", "-c", str(config)],
        env=daemons.env(DISPATCHER_STATE_URL=url),
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,  # a daemon that retried forever would hang here
    )
    assert done.returncode == 1, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("error: cannot open the state store "), done.stderr
    assert f"127.0.0.1:{port}" in first and "refused" in first.lower(), first
    assert "hint:" in done.stderr and "DISPATCHER_STATE_URL" in done.stderr
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


@pytest.mark.slow
def test_losing_the_state_database_sends_nothing_unclaimed_and_catches_up_when_it_returns(
    postgres_url: str, sandbox: Sandbox, tmp_path: Path, proxy: list[TcpProxy]
) -> None:
    target = make_url(postgres_url)
    cut = TcpProxy(target.host or "127.0.0.1", target.port or 0).up()
    proxy.append(cut)
    crew = Daemons(tmp_path, sandbox, through(postgres_url, cut.port))
    try:
        daemon = crew.start(project(tmp_path / "p", {"tick": report("心跳")}))
        wait_until(lambda: len(fire_times(runs(postgres_url, "tick"), "sent")) >= 2, "two deliveries")
        warm = clock.now()  # the first run imports pandas: on a loaded machine the next tick may be late

        cut_at = settled_mid_period(postgres_url, "tick")
        tasks_at_cut = len(task_fire_times(sandbox, "心跳"))  # the admins get a state-store alert
        cut.down()
        wait_until(lambda: _logged_since(daemon, "state.unavailable", cut_at), "state.unavailable")
        wait_until(lambda: clock.now() - cut_at >= timedelta(seconds=8), "an 8 s outage", timeout=60)
        assert daemon.alive(), daemon.stderr()[-3000:]
        restored_at = mid_period()
        reports_sent = len(task_fire_times(sandbox, "心跳"))
        assert reports_sent == tasks_at_cut, "something was sent while no claim could be made"
        cut.up()
        wait_until(
            lambda: len(sent_after(postgres_url, "tick", restored_at)) >= 2, "deliveries after restore"
        )
        stop(daemon)
    finally:
        crew.close()

    rows = runs(postgres_url, "tick")
    tasks = Counter(task_fire_times(sandbox, "心跳"))
    claimed = {r.fire_time for r in rows if r.state in ("sent", "running")}
    assert set(tasks) <= claimed, f"delivered without a claim: {sorted(set(tasks) - claimed)}"
    assert set(tasks.values()) == {1}, tasks
    assert sorted(tasks) == fire_times(rows, "sent")

    first_sent = fire_times(rows, "sent")[0]
    after_start = [r for r in rows if r.fire_time >= first_sent]
    assert_consecutive([r.fire_time for r in after_start], STEP)  # every fire time has a row
    _assert_caught_up([r for r in after_start if r.fire_time >= warm], cut_at, restored_at)


def _assert_caught_up(rows: list[Run], cut_at: datetime, restored_at: datetime) -> None:
    """catchup: all (the harness's): every fire time of the outage is run once the store is back.

    Which of them `last` or `none` would run is tests/test_daemon_catchup.py's business, on a fake
    clock; in real time, a loaded machine's late wake-ups would blur it.
    """
    outage = [r for r in rows if cut_at < r.fire_time < restored_at]
    assert len(outage) >= 3, [(r.fire_time, r.state) for r in outage]
    assert [r.state for r in outage] == ["sent"] * len(outage), [(r.fire_time, r.state) for r in outage]
    late = [r.fire_time for r in outage if r.started_at is None or r.started_at < restored_at]
    assert late == [], f"claimed while the state store was away: {late}"
    # Before the last delivery every fire time was sent; after it, the stop may hand claims back.
    last = max(r.fire_time for r in rows if r.state == "sent")
    assert [(r.fire_time, r.state) for r in rows if r.state != "sent" and r.fire_time < last] == []


def _logged_since(daemon: DaemonProcess, event: str, since: datetime) -> bool:
    return any(line.ts >= since for line in daemon.events(event))
