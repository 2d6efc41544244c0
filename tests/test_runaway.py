"""Issue 15, part 2: one runaway report never starves the others (real daemons, a real sandbox)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from dispatcher.sandbox import Sandbox
from tests import daemon_harness
from tests.daemon_harness import (
    Daemons,
    alerts_to,
    assert_consecutive,
    fire_times,
    project,
    report,
    runs,
    wait_until,
)

sandbox, state_url, daemons = daemon_harness.sandbox, daemon_harness.state_url, daemon_harness.daemons

LOOPS_1E10 = "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}"
FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c"


@pytest.mark.slow
def test_three_runaway_templates_on_three_workers_leave_a_normal_report_on_schedule_for_a_minute(
    daemons: Daemons, sandbox: Sandbox, state_url: str, tmp_path: Path
) -> None:
    runaway = {f"loop{i}": report(f"死循环{i}", every="15s", run_timeout="8s", template=LOOPS_1E10)
               for i in range(3)}  # fmt: skip
    normal = report("正常", every="10s")
    daemon = daemons.start(project(tmp_path / "p", {**runaway, "normal": normal}, daemon={"workers": 3}))
    first = daemon.wait_for("run.sent", report="normal", timeout=60)
    wait_until(
        lambda: len(fire_times(runs(state_url, "normal"), "sent")) >= 7,
        "seven normal runs (a minute of its schedule)",
        timeout=120,
    )

    rows = runs(state_url, "normal")
    sent = fire_times(rows, "sent")
    assert_consecutive(sent, 10)
    # The first row is the start-up catch-up of a fire time before the daemon was up: not on schedule.
    # It waits for the runaways' own catch-ups; a fire time that falls due before it ends is run at
    # the next one (daemon_decide: a busy report's wake-up is coalesced), so it is not judged either.
    # At :00 and :30 all four reports fire at once on three workers, so the normal one may wait for
    # one runaway render to be stopped by its limits (about 1.3 s alone, all of them sharing the GIL),
    # but never longer: starved, it would wait for all of them, fire time after fire time. The bound
    # is the longest runaway run measured in the same daemon, so a loaded machine stretches both.
    start_up = rows[0].ended_at
    assert start_up is not None
    on_schedule = [r for r in rows[1:] if r.fire_time > start_up]
    assert len(on_schedule) >= 5, [(r.fire_time, r.started_at) for r in rows]
    loops = [r for rid in runaway for r in runs(state_url, rid)]
    longest = max(
        (r.ended_at - r.started_at for r in loops if r.ended_at and r.started_at), default=timedelta(0)
    )
    bound = longest + timedelta(seconds=3)
    late = [(r.fire_time, r.started_at) for r in on_schedule if r.started_at - r.fire_time > bound]
    assert late == [], f"normal runs started late (more than {bound}): {late}"
    assert "maximum number of running instances reached" not in daemon.stderr()
    assert loops and all(r.state in ("failed", "skipped", "running") for r in loops)
    errors = {r.error for r in loops if r.state == "failed"}
    # The loop budget normally stops them; on a loaded machine the render deadline, or the run's own
    # run_timeout, may come first.
    limit = re.compile(
        r"report 'loop\d': template not allowed.*: (loops ran more than|.* grew past|rendering took longer)"
        r"|run exceeded run_timeout \(8s\) and was abandoned"
    )
    assert errors and all(limit.match(e or "") for e in errors), errors
    assert all("MemoryError" not in (e or "") for e in errors)
    assert first.fields["report"] == "normal"


@pytest.mark.slow
def test_a_run_past_its_run_timeout_is_abandoned_its_wakeups_skipped_and_its_late_result_dropped(
    daemons: Daemons, sandbox: Sandbox, state_url: str, tmp_path: Path
) -> None:
    # The query runs until its 12 s query_timeout: neither the renderer's bounds nor anything
    # else stops it sooner, so only run_timeout can give its worker back.
    stuck = report("卡住", every="5s", source="slow", sql=FOREVER, query_timeout="12s", run_timeout="3s",
                   retries=1, retry_delay="1s")  # fmt: skip
    normal = report("正常", every="2s")
    config = project(tmp_path / "p", {"stuck": stuck, "normal": normal},
                     daemon={"workers": 2}, sources={"slow": "sqlite:///slow.db"})  # fmt: skip
    daemon_harness.make_source(tmp_path / "p" / "slow.db")
    daemon = daemons.start(config)

    timed_out = daemon.wait_for("run.timed_out", report="stuck", timeout=60)
    daemon.wait_for("run.skipped", report="stuck", timeout=60)
    daemon.wait_for("run.late_result", report="stuck", timeout=60)
    daemon.wait_for("run.gave_up", report="stuck", timeout=90)
    daemon.wait_for("alert.sent", report="stuck")

    rows = runs(state_url, "stuck")
    first = min((r for r in rows if r.state == "failed"), key=lambda r: r.fire_time)
    assert first.attempts == 2
    assert "exceeded run_timeout (3s)" in (first.error or "")
    assert "query_timeout" not in (first.error or ""), "the abandoned run's late failure overwrote the row"
    skipped = [r for r in rows if r.state == "skipped"]
    assert skipped and all("previous run of this report is still running" in (r.error or "") for r in skipped)
    assert not [r for r in rows if r.state == "sent"]
    # A fire time is claimed when it falls due, then waits for the stuck run: only the newest may
    # still be `running` (claimed, waiting, or the stuck run itself).
    assert not [r for r in rows[:-1] if r.state == "running"]
    assert timed_out.fields["attempt"] == 1
    assert len(alerts_to(sandbox)) == 1

    normal_rows = runs(state_url, "normal")
    assert_consecutive(fire_times(normal_rows, "sent"), 2)
    # Not starved: the stuck query holds its thread until its 12 s query_timeout, and normal runs
    # went on meanwhile on the other worker. (Lateness in seconds would measure the machine's load.)
    # From its fire time (its first attempt's start; a retry moves started_at) for its 12 s.
    held = (first.fire_time, first.fire_time + timedelta(seconds=12))
    beside = [r.fire_time for r in normal_rows if r.started_at and held[0] < r.started_at < held[1]]
    assert len(beside) >= 2, f"no normal run while the stuck one held its worker: {normal_rows}"
    assert daemon.alive()
