"""Config reload in a running `dispatcher run`: by mtime and by SIGHUP, good files and bad ones."""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path

from dispatcher.sandbox import Sandbox
from tests import daemon_harness
from tests.daemon_harness import (
    Daemons,
    assert_consecutive,
    config_text,
    count_state,
    fire_times,
    project,
    replace_file,
    report,
    runs,
    sent_since,
    task_fire_times,
    wait_until,
)

sandbox, state_url, daemons = daemon_harness.sandbox, daemon_harness.state_url, daemon_harness.daemons

PERIOD = timedelta(seconds=2)


def two_more_runs(state_url: str, report_id: str) -> None:
    before = count_state(state_url, report_id, "sent")
    wait_until(lambda: count_state(state_url, report_id, "sent") >= before + 2, f"two more {report_id} runs")


def test_a_rewritten_config_swaps_reports_without_a_restart(
    daemons: Daemons, sandbox: Sandbox, state_url: str, tmp_path: Path
) -> None:
    config = project(tmp_path / "p", {"alpha": report("甲")})
    daemon = daemons.start(config)
    wait_until(lambda: count_state(state_url, "alpha", "sent") >= 2, "two alpha runs")

    replace_file(config, config_text({"beta": report("乙")}))
    reloaded = daemon.wait_for("config.reloaded")
    assert reloaded.fields["added"] == ["beta"] and reloaded.fields["removed"] == ["alpha"]
    later = reloaded.ts + 3 * PERIOD
    wait_until(lambda: sent_since(state_url, later, "beta"), "a beta run three periods after the reload")

    cutoff = reloaded.ts + PERIOD
    assert max(r.fire_time for r in runs(state_url, "alpha")) <= cutoff
    assert max(task_fire_times(sandbox, "甲")) <= cutoff
    assert_consecutive(sorted(task_fire_times(sandbox, "乙")), 2)
    assert daemon.alive()
    started = daemon.events("daemon.started")
    assert len(started) == 1 and started[0].fields["owner"].endswith(f":{daemon.pid}")


def test_an_invalid_config_is_rejected_and_the_old_schedule_keeps_running(
    daemons: Daemons, state_url: str, tmp_path: Path
) -> None:
    config = project(tmp_path / "p", {"alpha": report("甲")})
    daemon = daemons.start(config)
    wait_until(lambda: count_state(state_url, "alpha", "sent") >= 1, "an alpha run")

    replace_file(config, "reports: [this is not\n  valid: yaml\n")
    daemon.wait_for("config.rejected")
    before = count_state(state_url, "alpha", "sent")
    wait_until(
        lambda: count_state(state_url, "alpha", "sent") >= before + 2, "alpha runs after the rejection"
    )

    replace_file(config, config_text({"alpha": report("甲", schedule="61 * * * *")}))
    daemon.wait_for("config.rejected", count=2)
    problems = [str(e.fields["problem"]) for e in daemon.events("config.problem")]
    assert any("schedule" in p and "61" in p for p in problems), problems
    two_more_runs(state_url, "alpha")
    assert daemon.alive()

    replace_file(config, config_text({"alpha": report("甲"), "beta": report("乙")}))
    reloaded = daemon.wait_for("config.reloaded")
    assert reloaded.fields["added"] == ["beta"] and reloaded.fields["removed"] == []
    wait_until(lambda: count_state(state_url, "beta", "sent") >= 1, "a beta run after the fix")
    assert_consecutive(fire_times(runs(state_url, "alpha"), "sent"), 2)
    assert len(daemon.events("daemon.started")) == 1


def test_sighup_reloads_a_config_whose_mtime_did_not_change(
    daemons: Daemons, state_url: str, tmp_path: Path
) -> None:
    config = project(tmp_path / "p", {"alpha": report("甲")})
    daemon = daemons.start(config)
    wait_until(lambda: count_state(state_url, "alpha", "sent") >= 1, "an alpha run")

    # Same size and the old mtime: the once-a-second mtime poll cannot see this edit.
    stat = config.stat()
    config.write_text(config.read_text(encoding="utf-8").replace("甲", "丙"), encoding="utf-8")
    assert config.stat().st_size == stat.st_size
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    daemon.send(signal.SIGHUP)
    reloaded = daemon.wait_for("config.reloaded")
    assert reloaded.fields["changed"] == ["alpha"] and reloaded.fields["validated"] == 1
    wait_until(lambda: task_fire_times(daemons.sandbox, "丙"), "a run with the new title")
