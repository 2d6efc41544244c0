"""The daemon's housekeeping, one function per chore that `decide` names, and config reload.

Each chore is guarded: a state-store error is logged once per outage (then every 30 s), any
other error is logged, and the loop goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from dispatcher import clock, logs
from dispatcher.app import App
from dispatcher.config.check import check_config
from dispatcher.config.model import Config, Report
from dispatcher.daemon.decide import Chore, Timing
from dispatcher.daemon.health import HealthState
from dispatcher.daemon.runs import Runs
from dispatcher.daemon.status import alert_store_problem, next_fires, workers_problem
from dispatcher.errors import StateError

NEVER = 1e9  # seconds: a run_timeout the reaper never reaches
DEFAULT_RUN_TIMEOUT = 600.0


class Chores:
    def __init__(self, app: App, runs: Runs, health: HealthState, config_path: Path) -> None:
        self.app = app
        self.runs = runs
        self.health = health
        self.config_path = config_path
        self.mtime = file_mtime(config_path)
        self.reload_requested = False
        self._quiet: dict[str, float] = {}

    @property
    def config(self) -> Config:
        return self.app.services().config

    def do(self, chore: Chore) -> None:
        actions: dict[Chore, Callable[[], None]] = {"check": self.check, "heartbeat": self.heartbeat,
                                                    "reap": self.reap, "prune": self.prune,
                                                    "retry": self.retry_due, "hold": self.hold}  # fmt: skip
        self.guarded(chore, actions[chore])

    def guarded(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
            self._quiet.pop(what, None)
        except StateError as exc:
            # Once per outage and then every 30 s, not once per one-second tick.
            now = time.monotonic()
            if now - self._quiet.get(what, -1e9) >= 30:
                self._quiet[what] = now
                logs.event("state.unavailable", logging.ERROR, during=what, error=str(exc))
        except Exception:
            logs.log.exception("daemon.error", extra={"during": what})

    def check(self) -> None:
        self.health.tick()
        self.app.metrics.tick(time.time())
        daemon = self.config.daemon
        waited = self.runs.waits.oldest_wait()
        self.health.set_problem("workers", workers_problem(waited, daemon.max_wait, daemon.workers))
        self.check_store()

    def check_store(self) -> bool:
        """Stop claiming while the state store is gone, replaced or unreadable; resume when it is back."""
        try:
            problem = self.app.store.check()
        except Exception as exc:  # a check that cannot even run says the same
            problem = f"cannot check the state store: {type(exc).__name__}: {exc}"
        previous = self.runs.store_problem
        self.app.metrics.state_store(problem is None)
        if problem != previous:
            if problem is None:
                logs.event("state.recovered", previous=previous, action="claiming again")
            else:
                logs.event("state.unavailable", logging.ERROR, during="health check", error=problem,
                           action="claiming stopped")  # fmt: skip
                if previous is None:
                    alert_store_problem(self.app.services(), self.app.owner, problem)
            self.runs.store_problem = problem
            self.health.set_problem("state_store", problem)
        return problem is None

    def heartbeat(self) -> None:
        soonest = next_fires(self.config, clock.now())[:1]
        logs.event("daemon.heartbeat", reports=len(enabled(self.config)), in_flight=self.runs.in_flight,
                   next_report=soonest[0][0].id if soonest else None,
                   next_fire=soonest[0][1] if soonest else None,
                   state=self.runs.store_problem or "ok")  # fmt: skip

    def hold(self) -> None:
        """Refresh the rows this process holds (queued claims, runs executing); only those: a row it
        lost track of must stay reapable."""
        held = self.runs.held()
        if held:
            self.app.ledger.heartbeat(held, self.app.owner)

    def reap(self) -> None:
        reports, live = self.config.reports, self.runs.live

        def timeout_for(rid: str) -> float:
            if rid in live:
                return NEVER  # this process runs it now: run_bounded times it out, not the reaper
            return reports[rid].run_timeout if rid in reports else DEFAULT_RUN_TIMEOUT

        for run in self.app.ledger.reap_stale(timeout_for):
            logs.event("run.abandoned", logging.WARNING, report=run.report_id, fire_time=run.fire_time,
                       error=run.error)  # fmt: skip

    def prune(self) -> None:
        older = clock.now() - timedelta(seconds=self.config.daemon.retention)
        pruned = self.app.ledger.prune(older)
        if pruned:
            logs.event("ledger.pruned", rows=pruned, before=older)

    def retry_due(self) -> None:
        from dispatcher.run.outcomes import give_up

        svc = self.app.services()
        for run in svc.ledger.due_retries():
            report = svc.config.reports.get(run.report_id)
            if report is None or not report.enabled:
                svc.ledger.stop_retrying(run, "report removed; not retried")
            elif run.attempts > report.retries:
                give_up(svc, report, run)
            elif not self.runs.locked(run.report_id):  # busy (maybe abandoned after run_timeout): later
                self.runs.submit_retry(run)

    def config_changed(self) -> bool:
        """The file changed on disk, or SIGHUP asked for a reload."""
        mtime = file_mtime(self.config_path)
        changed, self.mtime = mtime != self.mtime, mtime
        asked, self.reload_requested = self.reload_requested, False
        return changed or asked

    def reload(self) -> Config | None:
        """The valid new config, now in use; None when the new file has problems (the old one stays)."""
        new, problems = check_config(self.config_path, reuse=True)
        if new is None:
            for problem in problems:
                logs.event("config.problem", logging.ERROR, problem=str(problem))
            logs.event("config.rejected", logging.ERROR, problems=len(problems), keeping="previous schedule")
            self.app.metrics.config_reload(False)
            return None
        old = self.config
        self.app.config = self.app.services().config = new
        if new.dingtalk != old.dingtalk and self.app.sandbox is None:
            logs.event("config.needs_restart", logging.WARNING, section="dingtalk",
                       reason="credentials and pacing are read at start")  # fmt: skip
        if new.sources != old.sources:
            self.app.swap_sources(new)
        self.app.metrics.config_reload(True)
        return new


def enabled(config: Config) -> dict[str, Report]:
    return {rid: r for rid, r in config.reports.items() if r.enabled}


def timings(config: Config) -> dict[str, Timing]:
    return {rid: Timing(r.parsed_schedule(), config.report_zone(r)) for rid, r in enabled(config).items()}


def changed_reports(old: Config, new: Config) -> tuple[list[str], list[str], list[str]]:
    """(added, removed, changed) enabled reports."""
    old_ids, new_ids = set(enabled(old)), set(enabled(new))
    # A report the load reused is the same object: no field-by-field comparison for it.
    changed = sorted(
        rid
        for rid in new_ids & old_ids
        if new.reports[rid] is not old.reports[rid] and new.reports[rid] != old.reports[rid]
    )
    return sorted(new_ids - old_ids), sorted(old_ids - new_ids), changed


def file_mtime(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size
