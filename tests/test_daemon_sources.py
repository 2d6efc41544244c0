"""A slow source holds up only its own reports: per-source concurrency in a running daemon."""

from __future__ import annotations

from pathlib import Path

from dispatcher.sandbox import Sandbox
from tests import daemon_harness
from tests.daemon_harness import (
    Daemons,
    assert_consecutive,
    fire_times,
    make_source,
    project,
    report,
    runs,
    wait_until,
)

sandbox, state_url, daemons = daemon_harness.sandbox, daemon_harness.state_url, daemon_harness.daemons

# About two seconds of SQLite work, whatever the machine: a recursive count to a few million.
SLOW_SQL = (
    "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 3000000) "
    "SELECT COUNT(*) AS n FROM c"
)


def test_a_slow_source_does_not_hold_up_reports_on_other_sources(
    daemons: Daemons, sandbox: Sandbox, state_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    make_source(folder / "slow.db")
    reports = {f"slow{i}": report(f"慢报表{i}", every="4s", source="slow", sql=SLOW_SQL) for i in range(3)}
    reports["fast"] = report("快报表")
    config = project(folder, reports, sources={"slow": "sqlite:///slow.db"}, daemon={"source_concurrency": 1})
    daemons.start(config)
    wait_until(lambda: len(fire_times(runs(state_url, "fast"), "sent")) >= 6, "six fast runs", timeout=90)
    wait_until(
        lambda: sum(len(fire_times(runs(state_url, f"slow{i}"), "sent")) for i in range(3)) >= 4,
        "four slow runs",
        timeout=90,
    )
    # The fast report kept its 2-second rhythm while the slow source was busy.
    assert_consecutive(fire_times(runs(state_url, "fast"), "sent"), 2)
    assert daemons.started[0].alive()


def test_each_source_gets_its_own_slot_with_the_configured_limit(tmp_path: Path) -> None:
    import threading

    from dispatcher.config.check import load_config
    from dispatcher.run.services import Services

    config = load_config(project(tmp_path, {"r": report("报表")}, daemon={"source_concurrency": 2}))
    svc = Services(config, None, None, None, None, "me")  # type: ignore[arg-type]
    slot = svc.slot("src")
    assert slot is svc.slot("src") and slot is not svc.slot("other")
    assert slot.acquire(blocking=False) and slot.acquire(blocking=False)
    assert not slot.acquire(blocking=False), "a third concurrent query on one source must wait"
    assert svc.slot("other").acquire(blocking=False), "another source is not held up"
    slot.release()
    assert isinstance(slot, type(threading.BoundedSemaphore()))
