"""`dispatcher run`: the daemon's lifecycle: start, the loop, signals, reload, shutdown.

One loop owns time: each pass asks `daemon_decide.decide(state, now)` what is due (wake-ups,
housekeeping) and how long to sleep; `daemon_runs` executes wake-ups and retries on the worker
pool, `daemon_chores` the housekeeping. Why our own loop and not APScheduler: see daemon_decide.

As in rq's cron scheduler, signal handlers only set flags and cleanup sits in `finally`. The
first SIGTERM/SIGINT is a warm shutdown (running runs finish, up to `shutdown_timeout`), a second
one a cold exit. SIGHUP, or a change of the config file, reloads.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, tzinfo
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from dispatcher import clock, logs
from dispatcher.app import App, default_owner, open_app
from dispatcher.config.check import load_config
from dispatcher.daemon.chores import Chores, changed_reports, enabled, timings
from dispatcher.daemon.decide import Housekeep, LoopState, Wake, decide, start_state, with_reports
from dispatcher.daemon.health import HealthServer, HealthState
from dispatcher.daemon.runs import Runs
from dispatcher.daemon.status import next_fires
from dispatcher.errors import DispatcherError
from dispatcher.run.metrics import Metrics
from dispatcher.schedule.zones import to_zone

if TYPE_CHECKING:
    from dispatcher.config.model import Config


@dataclass
class DaemonOptions:
    config_path: Path
    sandbox: bool = False
    sandbox_port: int = 8765
    health_port: int | None = None
    health_host: str = "127.0.0.1"
    log_format: str = "text"
    log_tz: str = "UTC"  # an IANA zone, or "report": each event's report's zone


class Daemon:
    """The parts of one daemon process; `step` is one pass of the loop (tests call it directly)."""

    def __init__(self, app: App, config_path: Path, health: HealthState) -> None:
        self.app, self.health, self.stop = app, health, threading.Event()
        self.runs = Runs(app.services(), app.config.daemon.workers, self.stop)
        self.chores = Chores(app, self.runs, health, config_path)
        self.state: LoopState = start_state(timings(app.config), app.config.daemon.heartbeat, clock.now())
        self._set_report_count()

    def step(self) -> float:
        """Run what is due now; returns how long to sleep."""
        if self.chores.config_changed():
            self._reload()
        busy, store_ok = self.runs.busy(), self.runs.store_problem is None
        decision = decide(replace(self.state, busy=busy, store_ok=store_ok), clock.now())
        self.state = decision.state
        # All of a pass's wake-ups are claimed together, in a few ledger statements (daemon_runs)
        wakes = [action.report_id for action in decision.actions if isinstance(action, Wake)]
        if wakes:
            self.runs.claim_due(wakes)
        for action in decision.actions:
            if isinstance(action, Housekeep):
                self.chores.do(action.chore)
        return decision.sleep

    def announce(self) -> None:
        config = self.app.config
        logs.event("daemon.started", reports=len(enabled(config)), owner=self.app.owner)
        for report, fire in next_fires(config, clock.now()):
            logs.event("report.next_fire", report=report.id, next_fire=fire,
                       schedule=report.parsed_schedule().expression)  # fmt: skip

    def loop(self) -> None:
        while not self.stop.wait(self.step()):
            pass
        logs.event("daemon.stopping", in_flight=self.runs.in_flight)

    def _reload(self) -> None:
        old = self.app.config
        new = self.chores.reload()
        if new is None:
            return
        added, removed, changed = changed_reports(old, new)
        self.state = with_reports(self.state, timings(new), {*added, *changed}, clock.now())
        self._set_report_count()
        # Reports the load validated again rather than reused from the last one (config.reuse).
        checked = sum(1 for rid, r in new.reports.items() if old.reports.get(rid) is not r)
        logs.event("config.reloaded", added=added, removed=removed, changed=changed, validated=checked)

    def _set_report_count(self) -> None:
        scheduled = enabled(self.app.config)
        self.health.reports = len(scheduled)
        self.app.metrics.set_reports(len(scheduled))
        self.app.metrics.known_reports(scheduled)

    def shutdown(self) -> None:
        self.health.running = False
        runs, deadline = self.runs, time.monotonic() + self.app.config.daemon.shutdown_timeout
        self._release_queued()
        with runs.in_flight_cv:
            while runs.in_flight and time.monotonic() < deadline:
                runs.in_flight_cv.wait(0.2)
            left = runs.in_flight
        runs.close()
        if left:
            reason = "shutdown_timeout passed; their ledger rows are reaped after run_timeout"
            logs.event("daemon.abandoned", logging.WARNING, in_flight=left, reason=reason)
            logging.shutdown()
            os._exit(0)  # worker threads would otherwise hold the interpreter open
        logs.event("daemon.stopped")

    def _release_queued(self) -> None:
        """Claims no worker started go back at once: no other replica waits run_timeout for them."""
        try:
            released = self.runs.release_queued()
        except DispatcherError as exc:  # still `running` and no longer refreshed: reaped after run_timeout
            logs.event("state.unavailable", logging.ERROR, during="shutdown", error=str(exc))
            return
        if released:
            logs.event(
                "daemon.released", logging.WARNING, runs=released, reason="not started before shutdown"
            )

    def install_signals(self) -> None:
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            if self.stop.is_set():
                os._exit(1)  # second signal: cold exit
            self.stop.set()

        def on_hup(signum: int, _frame: FrameType | None) -> None:
            self.chores.reload_requested = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)


def serve(options: DaemonOptions) -> int:
    config, health, owner = (
        load_config(options.config_path, reuse=True),
        HealthState(started_at=time.time()),
        default_owner(),
    )
    if options.log_tz == "report":
        logs.use_zone(lambda report_id: _report_zone(config, report_id))
    with ExitStack() as stack:
        app = stack.enter_context(open_app(config, sandbox=options.sandbox, sandbox_port=options.sandbox_port,
                                           metrics=Metrics(), owner=owner))  # fmt: skip
        if options.log_tz == "report":  # a reload replaces app.config: its zones from then on
            logs.use_zone(lambda report_id: _report_zone(app.config, report_id))
        if app.sandbox is not None:
            print(f"sandbox inbox: {app.sandbox.url}/", flush=True)
            if app.sandbox_note:
                print(app.sandbox_note, flush=True)
            logs.event("sandbox.listening", url=f"{app.sandbox.url}/")
        daemon = Daemon(app, options.config_path, health)
        stack.callback(daemon.shutdown)
        if options.health_port is not None:
            host, port = options.health_host, options.health_port
            server = HealthServer(health, app.metrics, host=host, port=port).start()
            stack.callback(server.stop)
            logs.event("health.listening", url=server.url)
        daemon.install_signals()
        daemon.announce()
        daemon.loop()
    return 0


def _report_zone(config: Config, report_id: str | None) -> tzinfo:
    """An event's report's zone; the config's own for events about no report (or a removed one)."""
    report = config.reports.get(report_id) if report_id else None
    return config.report_zone(report) if report is not None else to_zone(config.timezone)


def run_daemon(options: DaemonOptions) -> int:
    logs.setup(options.log_format, zone=UTC if options.log_tz == "report" else to_zone(options.log_tz))
    try:
        return serve(options)
    except DispatcherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
