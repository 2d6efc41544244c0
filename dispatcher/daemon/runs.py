"""The daemon's executor: claims at the fire time, then runs and retries on `daemon.workers` threads.

Exactly-once rests on the ledger, not on the loop: when reports wake up, the loop plans the fire
times each owes (`catchup.plan`) and claims them all in the ledger at once, in a few batched
statements, before any runs; a process that loses a claim skips that fire time. So replicas,
restarts and pauses all converge. Claiming in the loop and not in a worker is what keeps a burst
of 1,000 due reports from being claimed only as workers free up, minutes late (bench scenario 8).

A claim waiting for a worker is held: the heartbeat chore refreshes the rows in `held()` so other
replicas' reapers leave them alone, and a warm shutdown hands back the ones never started
(`release_queued`) for any replica's retry chore to run at once.

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
from datetime import datetime, timedelta
from typing import Any

from dispatcher import clock, logs
from dispatcher.config.model import Report
from dispatcher.daemon import catchup
from dispatcher.daemon.watchdog import Attempt, WaitClock, run_bounded
from dispatcher.errors import StateError
from dispatcher.run.outcomes import give_up
from dispatcher.run.runner import execute
from dispatcher.run.services import Services
from dispatcher.store.ledger import Run


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
        self._waking: set[str] = set()  # reports with claims queued or running here
        self._queued: set[int] = set()  # run ids claimed here and waiting for a worker
        self._executing: set[int] = set()  # run ids executing here (a claim or a retry)
        self._abandoned: dict[str, Attempt] = {}  # report id -> its last run abandoned after run_timeout
        self._retrying: set[int] = set()  # run ids with a retry submitted and not finished

    def busy(self) -> frozenset[str]:
        with self._guard:
            return frozenset(self._waking)

    def held(self) -> list[int]:
        """The ledger rows this process holds: claimed and queued, or executing."""
        with self._guard:
            return sorted(self._queued | self._executing)

    def claim_due(self, report_ids: list[str]) -> None:
        """Plan and claim every owed fire time of these reports now, then queue the claimed runs."""
        if self.store_problem is not None:
            for report_id in report_ids:
                logs.event("run.not_claimed", logging.WARNING, report=report_id, reason=self.store_problem)
        if self.stop.is_set() or self.store_problem is not None:
            return
        with self._guard:  # coalesced: a report with claims under way catches up at its next wake-up
            fresh = [rid for rid in report_ids if rid not in self._waking]
            self._waking.update(fresh)
        claimed: dict[str, tuple[Report, list[Run]]] = {}
        try:
            claimed = self._claim(fresh)
        except StateError as exc:  # nothing runs without a claim; the next wake-up catches up
            logs.event("state.unavailable", logging.ERROR, during="claim", error=str(exc))
        finally:
            with self._guard:
                self._waking.difference_update(set(fresh) - claimed.keys())
        for job in claimed.values():
            self._submit(self._run_claims, job)

    def release_queued(self) -> int:
        """At shutdown: hand back the claims no worker started, for a retry chore to run at once."""
        self.stop.set()  # no worker takes a claim from here on (see _take)
        with self._guard:
            ids, self._queued = sorted(self._queued), set()
        if not ids:
            return 0
        return self.svc.ledger.release(ids, self.svc.owner, "released at shutdown before it started")

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

    def _claim(self, report_ids: list[str]) -> dict[str, tuple[Report, list[Run]]]:
        """Plan every report's owed fire times and claim them all: a few queries for the burst."""
        svc, now = self.svc, clock.now()
        reports = {
            rid: r for rid in report_ids if (r := svc.config.reports.get(rid)) is not None and r.enabled
        }
        reach = {rid: catchup.lookback(r.parsed_schedule(), r.grace) for rid, r in reports.items()}
        last = svc.ledger.last_fire_times(list(reports))
        recorded = svc.ledger.fire_times_with_rows_of(
            {rid: now - timedelta(seconds=seconds) for rid, seconds in reach.items()}, now
        )
        wanted: list[tuple[str, datetime]] = []
        for rid, report in reports.items():
            plan = catchup.plan(
                report.parsed_schedule(), svc.config.report_zone(report), now=now,
                last_recorded=last.get(rid), recorded=recorded[rid], policy=report.catchup,
                grace=report.grace, run_on_start=report.run_on_start,
            )  # fmt: skip
            self._record_missed(report, plan.missed)
            wanted += [(rid, fire) for fire in plan.run]
        won = svc.ledger.claim_many(wanted, svc.owner)
        for run in won:
            svc.metrics.claimed((now - run.fire_time).total_seconds())
        with self._guard:
            self._queued.update(run.id for run in won)
        claimed: dict[str, tuple[Report, list[Run]]] = {}
        for run in sorted(won, key=lambda r: r.fire_time):
            claimed.setdefault(run.report_id, (reports[run.report_id], []))[1].append(run)
        for rid, fire in sorted({*wanted} - {(run.report_id, run.fire_time) for run in won}):
            logs.event("run.claimed_elsewhere", logging.DEBUG, report=rid, fire_time=fire)
        return claimed

    def _stuck(self, report_id: str) -> bool:
        """Whether a run of this report was abandoned after its run_timeout and is still going."""
        attempt = self._abandoned.get(report_id)
        return attempt is not None and not attempt.done.is_set()

    def _record_missed(self, report: Report, missed: list[datetime]) -> None:
        if missed and self.svc.ledger.record_missed(report.id, missed):
            last, first = (t.astimezone(self.svc.config.report_zone(report)) for t in (missed[-1], missed[0]))
            logs.event("run.missed", logging.WARNING, report=report.id, fire_time=last, count=len(missed),
                       first=first, policy=report.catchup)  # fmt: skip
            for _ in missed:
                self.svc.metrics.run_finished(report.id, "missed", None)

    def _run_claims(self, job: tuple[Report, list[Run]]) -> None:
        report, claimed = job
        try:
            self._run_claims_guarded(report, claimed)
        except StateError as exc:  # a claim left `running` is reaped and retried
            logs.event("state.unavailable", logging.ERROR, report=report.id, error=str(exc))
        finally:
            with self._guard:
                self._waking.discard(report.id)
                if not self.stop.is_set():  # at a stop, the claims not started wait to be released
                    self._queued.difference_update(run.id for run in claimed)

    def _run_claims_guarded(self, report: Report, claimed: list[Run]) -> None:
        """Run a report's claimed fire times in order; skip them while its previous run is going."""
        lock = self._lock(report.id)
        if self._stuck(report.id) or not lock.acquire(timeout=report.run_timeout):
            self._skip_all(report, claimed)
            return
        handed_off = False
        try:
            for index, run in enumerate(claimed):
                if not self._take(run, report):
                    continue  # stopping (shutdown hands it back), or no longer ours
                try:
                    fire = run.fire_time.astimezone(self.svc.config.report_zone(report))
                    handed_off = self._execute(report, run, lock, "run.started", fire_time=fire, attempt=1)
                finally:
                    self._done(run.id)
                if handed_off:  # the abandoned thread owns the lock: the fire times left are skipped
                    self._skip_all(report, claimed[index + 1 :])
                    return
        finally:
            if not handed_off:
                lock.release()

    def _skip_all(self, report: Report, claimed: list[Run]) -> None:
        for run in claimed:
            if self._take(run, report):
                try:
                    self._skip_busy(report, run)
                finally:
                    self._done(run.id)

    def _take(self, run: Run, report: Report) -> bool:
        """Move a queued claim to executing; False when the daemon is stopping or the claim is lost."""
        with self._guard:
            if self.stop.is_set() or run.id not in self._queued:
                return False
            self._queued.discard(run.id)
            self._executing.add(run.id)
        # No reaper takes a row within run_timeout of its claim: a claim taken sooner needs no check.
        fresh = run.started_at is not None and clock.now() - run.started_at < timedelta(
            seconds=report.run_timeout / 2
        )
        if fresh or self.svc.ledger.confirm(run, self.svc.owner):
            return True
        self._done(run.id)  # reaped while it waited (this process stalled) and maybe run elsewhere
        logs.event("run.claim_lost", logging.WARNING, report=run.report_id, fire_time=run.fire_time)
        return False

    def _done(self, run_id: int) -> None:
        with self._guard:
            self._executing.discard(run_id)

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
        if report is None or claimed is None:
            return False
        with self._guard:
            self._executing.add(claimed.id)
        try:
            fire = claimed.fire_time.astimezone(self.svc.config.report_zone(report))
            return self._execute(
                report, claimed, lock, "run.retrying", fire_time=fire, attempt=claimed.attempts
            )
        finally:
            self._done(claimed.id)
