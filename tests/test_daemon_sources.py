"""A slow source holds up only its own reports: per-source concurrency in a running daemon."""

from __future__ import annotations

from pathlib import Path

from dispatcher.sandbox import Sandbox
from tests import daemon_harness
from tests.daemon_harness import (
    Daemons,
    assert_consecutive,
    fire_times,
    project,
    report,
    runs,
    wait_until,
)

sandbox, state_url, daemons = daemon_harness.sandbox, daemon_harness.state_url, daemon_harness.daemons

# Two seconds on a real PostgreSQL server that waits without working: a slow source that holds its
# slot, not a core (a CPU-bound SQLite count took a core from the rest of the suite all along).
SLOW_SQL = "SELECT COUNT(*) AS n FROM (SELECT pg_sleep(2)) AS nap"


def test_a_slow_source_does_not_hold_up_reports_on_other_sources(
    daemons: Daemons, sandbox: Sandbox, state_url: str, tmp_path: Path, postgres_url: str
) -> None:
    folder = tmp_path / "p"
    reports = {f"slow{i}": report(f"慢报表{i}", every="4s", source="slow", sql=SLOW_SQL) for i in range(3)}
    reports["fast"] = report("快报表")
    config = project(folder, reports, sources={"slow": postgres_url}, daemon={"source_concurrency": 1})
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
