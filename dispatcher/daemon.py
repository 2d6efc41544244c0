"""`dispatcher run`: APScheduler wiring, the daemon loop, reload, retries, health.

The loop follows rq's cron scheduler: signal handlers only set flags; the main thread heartbeats,
reloads, reaps and retries; cleanup sits in `finally`. The first SIGTERM/SIGINT is a warm
shutdown (running runs finish, up to `shutdown_timeout`), a second one a cold exit.

Exactly-once rests on the ledger, not on the scheduler: every wake-up of a report plans the fire
times it owes (`catchup.plan`) and claims each one in the ledger before running it. A process
that loses a claim skips that fire time. So replicas, restarts and pauses all converge.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_SUBMITTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from dispatcher import catchup, clock, logs
from dispatcher.config import Config, Report, check_config, load_config
from dispatcher.daemon_health import alert_store_problem, next_fires, workers_problem
from dispatcher.errors import DispatcherError, StateError
from dispatcher.health import HealthServer, HealthState, Metrics
from dispatcher.ledger import Run
from dispatcher.runner import Services, execute, give_up
from dispatcher.schedule import Schedule
from dispatcher.watchdog import Attempt, WaitClock, run_bounded

TICK = 1.0  # main-loop heartbeat, seconds
REAP_EVERY = 15.0
PRUNE_EVERY = 86400.0
NEVER = 1e9  # seconds: a run_timeout the reaper never reaches


class ScheduleTrigger(BaseTrigger):
    """APScheduler trigger over our own fire-time functions (Unix cron semantics, aligned intervals)."""

    def __init__(self, schedule: Schedule, tz: Any) -> None:
        self.schedule = schedule
        self.tz = tz

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        after = previous_fire_time or now - timedelta(microseconds=1)
        return self.schedule.next_fire_time(max(after, now - timedelta(microseconds=1)), self.tz)

    def __str__(self) -> str:
        return self.schedule.expression


@dataclass
class DaemonOptions:
    config_path: Path
    sandbox: bool = False
    sandbox_port: int = 8765
    health_port: int | None = None
    log_format: str = "text"


class Daemon:
    def __init__(self, options: DaemonOptions) -> None:
        self.options = options
        self.config: Config = load_config(options.config_path)
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.health = HealthState(started_at=time.time())
        self.metrics = Metrics()
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._report_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._in_flight = 0
        self._in_flight_cv = threading.Condition()
        self._mtime = _mtime(options.config_path)
        self._quiet: dict[str, float] = {}
        self._waits = WaitClock()
        self._store_problem: str | None = None
        self._live: dict[str, int] = {}  # report id -> runs of it executing in this process
        self._abandoned: dict[str, Attempt] = {}  # report id -> its last run abandoned after run_timeout

    # -- lifecycle --

    def run(self) -> int:
        import dispatcher.render  # noqa: F401  (pandas: imported here, not in the first run's time)

        with ExitStack() as stack:
            self.svc = self._services(stack)
            self.scheduler = self._start_scheduler()
            stack.callback(self._shutdown)
            if self.options.health_port is not None:
                server = HealthServer(self.health, self.metrics, port=self.options.health_port).start()
                stack.callback(server.stop)
                logs.event("health.listening", url=server.url)
            self._install_signals()
            logs.event("daemon.started", reports=len(self._enabled()), owner=self.owner)
            self._log_next_fires()
            self._loop()
        return 0

    def _services(self, stack: ExitStack) -> Services:
        from dispatcher.app import open_app

        app = self.app = stack.enter_context(
            open_app(self.config, sandbox=self.options.sandbox, sandbox_port=self.options.sandbox_port,
                     metrics=self.metrics, owner=self.owner, throwaway_state=True)
        )  # fmt: skip
        self.store = app.store
        if app.sandbox is not None:
            print(f"sandbox inbox: {app.sandbox.url}/", flush=True)
            logs.event("sandbox.listening", url=f"{app.sandbox.url}/")
        return app.services()

    def _start_scheduler(self) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(self.config.daemon.workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        scheduler.add_listener(lambda _event: self._waits.submitted(), EVENT_JOB_SUBMITTED)
        for report in self._enabled().values():
            self._schedule(scheduler, report)
        scheduler.start()
        for report_id in self._enabled():
            self._wake_soon(report_id, scheduler)
        self._set_report_count()
        return scheduler

    def _enabled(self) -> dict[str, Report]:
        return {rid: r for rid, r in self.config.reports.items() if r.enabled}

    def _schedule(self, scheduler: BackgroundScheduler, report: Report) -> None:
        trigger = ScheduleTrigger(report.parsed_schedule(), self.config.report_zone(report))
        scheduler.add_job(
            self._wake, trigger, args=[report.id], id=report.id, name=report.id, replace_existing=True
        )

    def _wake_soon(self, report_id: str, scheduler: BackgroundScheduler | None = None) -> None:
        """Run a report's catch-up now, on the worker pool (start, reload)."""
        (scheduler or self.scheduler).add_job(self._wake, args=[report_id], id=f"{report_id}@catchup",
                                              replace_existing=True, misfire_grace_time=None)  # fmt: skip

    def _install_signals(self) -> None:
        def on_stop(signum: int, _frame: Any) -> None:
            if self.stop_requested.is_set():
                os._exit(1)  # second signal: cold exit
            self.stop_requested.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())

    def _loop(self) -> None:
        last_reap = last_prune = 0.0
        last_beat = time.monotonic()
        while not self.stop_requested.wait(TICK):
            now = time.monotonic()
            self.health.tick()
            self.metrics.tick(time.time())
            self._maybe_reload()
            self._check_workers()
            if now - last_beat >= self.config.daemon.heartbeat:
                last_beat = now
                self._heartbeat()
            if not self._check_store():
                continue  # nothing touches the ledger until the store is healthy again
            if now - last_reap >= REAP_EVERY:
                last_reap = now
                self._guarded("reap", self._reap)
            if now - last_prune >= PRUNE_EVERY or last_prune == 0.0:
                last_prune = now
                self._guarded("prune", self._prune)
            self._guarded("retry", self._retry_due)
        logs.event("daemon.stopping", in_flight=self._in_flight)

    def _shutdown(self) -> None:
        self.health.running = False
        self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + self.config.daemon.shutdown_timeout
        with self._in_flight_cv:
            while self._in_flight and time.monotonic() < deadline:
                self._in_flight_cv.wait(0.2)
            left = self._in_flight
        if left:
            reason = "shutdown_timeout passed; their ledger rows are reaped after run_timeout"
            logs.event("daemon.abandoned", logging.WARNING, in_flight=left, reason=reason)
            logging.shutdown()
            os._exit(0)  # worker threads would otherwise hold the interpreter open
        logs.event("daemon.stopped")

    def _guarded(self, what: str, action: Callable[[], None]) -> None:
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

    # -- runs --

    def _lock(self, report_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._report_locks.setdefault(report_id, threading.Lock())

    @contextmanager
    def _running(self, report_id: str) -> Iterator[None]:
        """Counted for a warm shutdown, and shielded from this process's own reaper."""
        with self._in_flight_cv:
            self._in_flight += 1
            self._live[report_id] = self._live.get(report_id, 0) + 1
        try:
            yield
        finally:
            with self._in_flight_cv:
                self._in_flight -= 1
                self._live[report_id] -= 1
                if not self._live[report_id]:
                    del self._live[report_id]
                self._in_flight_cv.notify_all()

    def _wake(self, report_id: str) -> None:
        """A report's job: plan the fire times it owes, record misses, claim and run the rest.

        One run of a report at a time. A wake-up waits for the report's previous run at most that
        run's run_timeout; once a run is abandoned (see watchdog) wake-ups record their fire times
        as skipped and free their worker at once, instead of queueing behind a stuck thread.
        """
        self._waits.started()
        if self._store_problem is not None:
            logs.event("run.not_claimed", logging.WARNING, report=report_id, reason=self._store_problem)
        if self.stop_requested.is_set() or self._store_problem is not None:
            return
        lock = self._lock(report_id)
        busy = self._stuck(report_id) or not lock.acquire(timeout=self._run_timeout(report_id))
        handed_off = False
        try:
            handed_off = self._wake_locked(report_id, busy, lock)
        except StateError as exc:  # nothing runs without a claim; the next wake-up catches up
            logs.event("state.unavailable", logging.ERROR, report=report_id, error=str(exc))
        finally:
            if not busy and not handed_off:
                lock.release()

    def _stuck(self, report_id: str) -> bool:
        """Whether a run of this report was abandoned after its run_timeout and is still going."""
        attempt = self._abandoned.get(report_id)
        return attempt is not None and not attempt.done.is_set()

    def _run_timeout(self, report_id: str) -> float:
        report = self.config.reports.get(report_id)
        return report.run_timeout if report is not None else 0.0

    def _wake_locked(self, report_id: str, busy: bool, lock: threading.Lock) -> bool:
        """True when a run was abandoned and its thread now owns `lock`."""
        svc = self.svc
        report = svc.config.reports.get(report_id)
        if report is None or not report.enabled:
            return False
        schedule, tz, now = report.parsed_schedule(), svc.config.report_zone(report), clock.now()
        reach = catchup.lookback(schedule, report.grace)
        plan = catchup.plan(
            schedule, tz, now=now, last_recorded=svc.ledger.last_fire_time(report_id),
            recorded=svc.ledger.fire_times_with_rows(report_id, now - timedelta(seconds=reach), now),
            policy=report.catchup, grace=report.grace, run_on_start=report.run_on_start,
        )  # fmt: skip
        if plan.missed and svc.ledger.record_missed(report_id, plan.missed):
            logs.event("run.missed", logging.WARNING, report=report_id, fire_time=plan.missed[-1],
                       count=len(plan.missed), first=plan.missed[0], policy=report.catchup)  # fmt: skip
            for _ in plan.missed:
                self.metrics.run_finished(report_id, "missed", None)
        for fire in plan.run:
            if self.stop_requested.is_set():
                return False
            run = svc.ledger.claim(report_id, fire, self.owner)
            if run is None:
                logs.event("run.claimed_elsewhere", logging.DEBUG, report=report_id, fire_time=fire)
            elif busy:
                self._skip_busy(report, run)
            else:
                logs.event("run.started", report=report_id, fire_time=fire, attempt=1)
                if self._execute(report, run, lock):
                    return True  # the fire times left are the next wake-up's to catch up or skip
        return False

    def _skip_busy(self, report: Report, run: Run) -> None:
        reason = "the previous run of this report is still running"
        self.svc.ledger.finish(run.id, "skipped", error=f"skipped: {reason}")
        self.metrics.run_finished(report.id, "skipped", None)
        logs.event("run.skipped", logging.WARNING, report=report.id, reason=reason,
                   fire_time=run.fire_time.astimezone(self.svc.config.report_zone(report)))  # fmt: skip

    def _execute(self, report: Report, run: Run, lock: threading.Lock) -> bool:
        """Run a claimed run for at most its run_timeout; True when it was abandoned (see watchdog)."""

        def body(attempt: Attempt) -> None:
            with self._running(report.id):
                try:
                    execute(self.svc, report, run, attempt.still_mine)
                except StateError as exc:  # the row stays `running`; the reaper retries it
                    logs.event("state.unavailable", logging.ERROR, report=report.id, error=str(exc))

        abandoned = run_bounded(body, report.run_timeout, lock, name=f"run:{report.id}")
        if abandoned is None:
            return False
        self._abandoned[report.id] = abandoned
        error = f"run exceeded run_timeout ({report.run_timeout:g}s) and was abandoned"
        logs.event("run.timed_out", logging.ERROR, report=report.id, attempt=run.attempts, error=error,
                   fire_time=run.fire_time.astimezone(self.svc.config.report_zone(report)))  # fmt: skip
        try:
            give_up(self.svc, report, replace(run, error=error))  # retried or alerted by the usual rules
        except StateError as exc:
            logs.event("state.unavailable", logging.ERROR, report=report.id, error=str(exc))
        return True

    def _retry(self, run: Run) -> None:
        self._waits.started()
        if self.stop_requested.is_set() or self._store_problem is not None:
            return
        lock = self._lock(run.report_id)
        if not lock.acquire(blocking=False):
            return  # a run of this report is still going; _retry_due offers the retry again later
        handed_off = False
        try:
            handed_off = self._retry_locked(run, lock)
        except StateError as exc:  # the claim is the guard: no claim, no send
            logs.event("state.unavailable", logging.ERROR, report=run.report_id, error=str(exc))
        finally:
            if not handed_off:
                lock.release()

    def _retry_locked(self, run: Run, lock: threading.Lock) -> bool:
        report = self.svc.config.reports.get(run.report_id)
        claimed = self.svc.ledger.claim_retry(run, self.owner) if report else None
        if report is not None and claimed is not None:
            fire = claimed.fire_time.astimezone(self.svc.config.report_zone(report))
            logs.event("run.retrying", report=report.id, fire_time=fire, attempt=claimed.attempts)
            return self._execute(report, claimed, lock)
        return False

    def _retry_due(self) -> None:
        for run in self.svc.ledger.due_retries():
            report = self.svc.config.reports.get(run.report_id)
            if report is None or not report.enabled:
                self.svc.ledger.stop_retrying(run, "report removed; not retried")
            elif run.attempts > report.retries:
                give_up(self.svc, report, run)
            elif self._lock(run.report_id).locked():
                continue  # its report is busy (maybe a run abandoned after run_timeout): retry later
            else:
                self.scheduler.add_job(self._retry, args=[run], id=f"retry:{run.id}", replace_existing=True,
                                       misfire_grace_time=None)  # fmt: skip

    def _reap(self) -> None:
        reports = self.svc.config.reports
        default = 600.0

        def timeout_for(rid: str) -> float:
            if rid in self._live:
                return NEVER  # this process runs it now: run_bounded times it out, not the reaper
            return reports[rid].run_timeout if rid in reports else default

        for run in self.svc.ledger.reap_stale(timeout_for):
            logs.event("run.abandoned", logging.WARNING, report=run.report_id, fire_time=run.fire_time,
                       error=run.error)  # fmt: skip

    def _prune(self) -> None:
        older = clock.now() - timedelta(seconds=self.config.daemon.retention)
        pruned = self.svc.ledger.prune(older)
        if pruned:
            logs.event("ledger.pruned", rows=pruned, before=older)

    # -- health --

    def _check_store(self) -> bool:
        """Stop claiming while the state store is gone, replaced or unreadable; resume when it is back."""
        try:
            problem = self.store.check()
        except Exception as exc:  # a check that cannot even run says the same
            problem = f"cannot check the state store: {type(exc).__name__}: {exc}"
        if problem != self._store_problem:
            if problem is None:
                logs.event("state.recovered", previous=self._store_problem, action="claiming again")
            else:
                logs.event("state.unavailable", logging.ERROR, during="health check", error=problem,
                           action="claiming stopped")  # fmt: skip
                if self._store_problem is None:
                    alert_store_problem(self.svc, self.owner, problem)
            self._store_problem = problem
            self.health.set_problem("state_store", problem)
        return problem is None

    def _check_workers(self) -> None:
        """/healthz turns 503 while a due run has waited longer than daemon.max_wait for a worker."""
        daemon = self.config.daemon
        self.health.set_problem("workers", workers_problem(self._waits.oldest_wait(), daemon.max_wait,
                                                           daemon.workers))  # fmt: skip

    def _log_next_fires(self) -> None:
        for report, fire in next_fires(self.config, clock.now()):
            logs.event("report.next_fire", report=report.id, next_fire=fire,
                       schedule=report.parsed_schedule().expression)  # fmt: skip

    def _heartbeat(self) -> None:
        soonest = next_fires(self.config, clock.now())[:1]
        logs.event("daemon.heartbeat", reports=len(self._enabled()), in_flight=self._in_flight,
                   next_report=soonest[0][0].id if soonest else None,
                   next_fire=soonest[0][1] if soonest else None,
                   state=self._store_problem or "ok")  # fmt: skip

    # -- reload --

    def _maybe_reload(self) -> None:
        mtime = _mtime(self.options.config_path)
        if mtime != self._mtime:
            self._mtime = mtime
            self.reload_requested.set()
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            self.reload()

    def reload(self) -> bool:
        """Swap in a valid new config; keep the running one when the new file has problems."""
        new, problems = check_config(self.options.config_path)
        if new is None:
            for problem in problems:
                logs.event("config.problem", logging.ERROR, problem=str(problem))
            logs.event("config.rejected", logging.ERROR, problems=len(problems), keeping="previous schedule")
            self.metrics.config_reload(False)
            return False
        old = self.config
        self._swap(old, new)
        self.metrics.config_reload(True)
        return True

    def _swap(self, old: Config, new: Config) -> None:
        self.config = new
        self.svc.config = new
        if new.dingtalk != old.dingtalk and not self.options.sandbox:
            logs.event("config.needs_restart", logging.WARNING, section="dingtalk",
                       reason="credentials and pacing are read at start")  # fmt: skip
        if new.sources != old.sources:
            self.app.swap_sources(new)
        old_ids = {rid for rid, r in old.reports.items() if r.enabled}
        new_ids = set(self._enabled())
        for rid in old_ids - new_ids:
            self.scheduler.remove_job(rid)
        changed = sorted(rid for rid in new_ids & old_ids if new.reports[rid] != old.reports[rid])
        for rid in sorted(new_ids - old_ids) + changed:
            self._schedule(self.scheduler, new.reports[rid])
            self._wake_soon(rid)
        self._set_report_count()
        logs.event("config.reloaded", added=sorted(new_ids - old_ids), removed=sorted(old_ids - new_ids),
                   changed=changed)  # fmt: skip

    def _set_report_count(self) -> None:
        count = len(self._enabled())
        self.health.reports = count
        self.metrics.set_reports(count)


def _mtime(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def run_daemon(options: DaemonOptions) -> int:
    logs.setup(options.log_format)
    try:
        return Daemon(options).run()
    except DispatcherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
