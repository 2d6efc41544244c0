"""The daemon's executor: wake-ups and retries on a pool of `daemon.workers` threads.

Exactly-once rests on the ledger, not on the loop: every wake-up of a report plans the fire
times it owes (`catchup.plan`) and claims each one in the ledger before running it. A process
that loses a claim skips that fire time. So replicas, restarts and pauses all converge.

One run of a report at a time. A run executes for at most its run_timeout (see watchdog); once a
run is abandoned, wake-ups record their fire times as skipped and free their worker at once,
instead of queueing behind a stuck thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

from dispatcher import catchup, clock, logs
from dispatcher.config import Report
from dispatcher.errors import StateError
from dispatcher.outcomes import give_up
from dispatcher.runner import execute
from dispatcher.services import Services
from dispatcher.store.ledger import Run
from dispatcher.watchdog import Attempt, WaitClock, run_bounded


class Runs:
    def __init__(self, svc: Services, workers: int, stop: threading.Event) -> None:
        self.svc = svc
        self.stop = stop
        self.waits = WaitClock()
        self.store_problem: str | None = None  # set by the health check: no claims while it is set
        self.live: dict[str, int] = {}  # report id -> runs of it executing in this process
        self.in_flight = 0
        self.in_flight_cv = threading.Condition()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="worker")
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._waking: set[str] = set()  # reports with a wake-up submitted and not finished
        self._abandoned: dict[str, Attempt] = {}  # report id -> its last run abandoned after run_timeout
        self._retrying: set[int] = set()  # run ids with a retry submitted and not finished

    def busy(self) -> frozenset[str]:
        with self._guard:
            return frozenset(self._waking)

    def submit_wake(self, report_id: str) -> None:
        with self._guard:
            if report_id in self._waking:
                return  # coalesced: the wake-up under way plans every fire time owed
            self._waking.add(report_id)
        self._submit(self._wake, report_id)

    def submit_retry(self, run: Run) -> None:
        with self._guard:
            if run.id in self._retrying:
                return  # still queued from an earlier pass
            self._retrying.add(run.id)
        self._submit(self._retry, run)

    def idle(self) -> bool:
        """No wake-up or retry queued or running (tests step a fake clock only when idle)."""
        with self._guard, self.in_flight_cv:
            return not self._waking and not self._retrying and not self.in_flight

    def locked(self, report_id: str) -> bool:
        return self._lock(report_id).locked()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, job: Callable[..., None], arg: object) -> None:
        self.waits.submitted()

        def body() -> None:
            self.waits.started()
            try:
                job(arg)
            except Exception:  # one job never kills the daemon
                logs.log.exception("daemon.error", extra={"during": job.__name__})

        self._pool.submit(body)

    def _lock(self, report_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(report_id, threading.Lock())

    @contextmanager
    def _running(self, report_id: str) -> Iterator[None]:
        """Counted for a warm shutdown, and shielded from this process's own reaper."""
        with self.in_flight_cv:
            self.in_flight += 1
            self.live[report_id] = self.live.get(report_id, 0) + 1
        try:
            yield
        finally:
            with self.in_flight_cv:
                self.in_flight -= 1
                self.live[report_id] -= 1
                if not self.live[report_id]:
                    del self.live[report_id]
                self.in_flight_cv.notify_all()

    def _wake(self, report_id: str) -> None:
        try:
            self._wake_guarded(report_id)
        finally:
            with self._guard:
                self._waking.discard(report_id)

    def _wake_guarded(self, report_id: str) -> None:
        if self.store_problem is not None:
            logs.event("run.not_claimed", logging.WARNING, report=report_id, reason=self.store_problem)
        if self.stop.is_set() or self.store_problem is not None:
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
        report = self.svc.config.reports.get(report_id)
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
                svc.metrics.run_finished(report_id, "missed", None)
        for fire in plan.run:
            if self.stop.is_set():
                return False
            run = svc.ledger.claim(report_id, fire, svc.owner)
            if run is None:
                logs.event("run.claimed_elsewhere", logging.DEBUG, report=report_id, fire_time=fire)
            elif busy:
                self._skip_busy(report, run)
            else:
                if self._execute(report, run, lock, "run.started", fire_time=fire, attempt=1):
                    return True  # the fire times left are the next wake-up's to catch up or skip
        return False

    def _skip_busy(self, report: Report, run: Run) -> None:
        reason = "the previous run of this report is still running"
        self.svc.ledger.finish(run.id, "skipped", error=f"skipped: {reason}")
        self.svc.metrics.run_finished(report.id, "skipped", None)
        logs.event("run.skipped", logging.WARNING, report=report.id, reason=reason,
                   fire_time=run.fire_time.astimezone(self.svc.config.report_zone(report)))  # fmt: skip

    def _execute(self, report: Report, run: Run, lock: threading.Lock, event: str, **fields: Any) -> bool:
        """Run a claimed run for at most its run_timeout; True when it was abandoned (see watchdog)."""

        def body(attempt: Attempt) -> None:
            with self._running(report.id):
                logs.event(event, report=report.id, **fields)  # once counted: a warm shutdown waits for it
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
        try:
            self._retry_guarded(run)
        finally:
            with self._guard:
                self._retrying.discard(run.id)

    def _retry_guarded(self, run: Run) -> None:
        if self.stop.is_set() or self.store_problem is not None:
            return
        lock = self._lock(run.report_id)
        if not lock.acquire(blocking=False):
            return  # a run of this report is still going; the retry chore offers it again later
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
        claimed = self.svc.ledger.claim_retry(run, self.svc.owner) if report else None
        if report is not None and claimed is not None:
            fire = claimed.fire_time.astimezone(self.svc.config.report_zone(report))
            return self._execute(
                report, claimed, lock, "run.retrying", fire_time=fire, attempt=claimed.attempts
            )
        return False
