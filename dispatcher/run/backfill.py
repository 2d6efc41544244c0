"""`dispatcher backfill`: run every fire time of a report's schedule in a date range, in order.

Each run is the daemon's own (`runner.execute`), with the macros of its fire time, so each queries
its own period. The ledger decides what runs: a fire time nobody has claimed is claimed as the
daemon would claim it, so a daemon running meanwhile can never send it too; a failed, partial,
missed or skipped one is taken over by a compare-and-set; a sent one is left alone unless
`--force`. Runs go one after another through the app's client, paced like the daemon's.

Only fire times that have come are run: a later one run now would claim it, so the daemon's own run
at that time would find the claim taken and never send it. Those are counted and left to the daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from dispatcher.errors import DispatcherError
from dispatcher.words import plural

if TYPE_CHECKING:
    from dispatcher.config.model import Config, Report
    from dispatcher.run.services import Services
    from dispatcher.store.ledger import Ledger, Run

MAX_FIRE_TIMES = 10_000
DONE = ("sent", "suppressed")
# The days --from and --to accept: wide enough for any real backfill, and far from datetime's own
# limits, which a day at the edge of the time zone's offset would cross.
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2999, 12, 31)


@dataclass(frozen=True)
class Step:
    fire_time: datetime
    outcome: str  # a run state (sent, partial, failed, skipped), or "kept: …" when nothing ran

    @property
    def ran(self) -> bool:
        return not self.outcome.startswith("kept")


@dataclass(frozen=True)
class Range:
    """A range's fire times that have come (`due`, run by backfill) and how many are still to come."""

    due: list[datetime]
    later: int  # left to the daemon; MAX_FIRE_TIMES + 1 stands for "more than MAX_FIRE_TIMES"

    def left(self) -> str:
        """'; 4 later fire times left to the daemon', or '' when the range has none."""
        if not self.later:
            return ""
        count = (
            f"more than {MAX_FIRE_TIMES:,} later fire times"
            if self.later > MAX_FIRE_TIMES
            else plural(self.later, "later fire time")
        )
        return f"; {count} left to the daemon"


def fire_times(config: Config, report: Report, first: date, last: date, now: datetime) -> Range:
    """The report's fire times from `first` 00:00 to `last` 24:00 in its zone, in order, split at `now`."""
    if last < first:
        raise DispatcherError(f"--to {last} is before --from {first}")
    for flag, day in (("--from", first), ("--to", last)):
        if not FIRST_DAY <= day <= LAST_DAY:
            raise DispatcherError(f"{flag} {day} is out of range: {day_range()}")
    tz = config.report_zone(report)
    start = datetime.combine(first, time(), tz) - timedelta(microseconds=1)
    end = datetime.combine(last + timedelta(days=1), time(), tz) - timedelta(microseconds=1)
    due: list[datetime] = []
    later = 0
    for fire in report.parsed_schedule().fire_times(start, end, tz):
        if fire > now:
            later += 1
            if later > MAX_FIRE_TIMES:  # only counted: no need to walk to the year 2999
                break
            continue
        due.append(fire)
        if len(due) > MAX_FIRE_TIMES:
            raise DispatcherError(
                f"{first} to {last} holds more than {MAX_FIRE_TIMES:,} fire times of {report.id!r}",
                hint="backfill a shorter range at a time",
            )
    return Range(due, later)


def day_range() -> str:
    return f"backfill takes days from {FIRST_DAY} to {LAST_DAY}"


def run_all(
    svc: Services, report: Report, fires: list[datetime], *, force: bool, on_step: Callable[[Step], None]
) -> list[Step]:
    steps = []
    for fire in fires:
        step = Step(fire, _one(svc, report, fire, force))
        on_step(step)
        steps.append(step)
    return steps


def _one(svc: Services, report: Report, fire: datetime, force: bool) -> str:
    from dispatcher.run.runner import execute

    run = _take(svc.ledger, report.id, fire, svc.owner, force)
    if isinstance(run, str):
        return run
    return execute(svc, report, run)


def _take(ledger: Ledger, report_id: str, fire: datetime, owner: str, force: bool) -> Run | str:
    """The claimed run, or why this fire time is left alone."""
    claimed = ledger.claim(report_id, fire, owner)
    if claimed is not None:
        return claimed
    existing = ledger.get(report_id, fire)
    if existing is None or existing.state == "running":
        return "kept: running elsewhere"
    if existing.state in DONE and not force:
        return f"kept: already {existing.state} (--force sends it again)"
    taken = ledger.claim_rerun(existing, owner, fresh=existing.state in DONE)
    return taken if taken is not None else "kept: taken by another process meanwhile"


def plan(
    ledger: Ledger | None, report_id: str, fires: list[datetime], force: bool
) -> Iterator[tuple[datetime, str]]:
    """For --dry-run: each fire time and what backfill would do with it, judged from the ledger."""
    for fire in fires:
        existing = ledger.get(report_id, fire) if ledger is not None else None
        if existing is None:
            yield fire, "run"
        elif existing.state == "running":
            yield fire, "kept: running elsewhere"
        elif existing.state in DONE and not force:
            yield fire, f"kept: already {existing.state}"
        else:
            yield fire, f"run again (was {existing.state})"


class Progress:
    """A bar that redraws one line on a terminal; plain lines otherwise (logs, pipes)."""

    WIDTH = 30

    def __init__(self, total: int, tty: bool, write: Callable[[str], object]) -> None:
        self.total, self.tty, self.write, self.done = total, tty, write, 0

    def __call__(self, step: Step) -> None:
        self.done += 1
        line = f"{step.fire_time.isoformat()}  {step.outcome}"
        if not self.tty:
            self.write(line + "\n")
            return
        filled = self.WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.write(f"\r\033[K[{bar}] {self.done}/{self.total} {line}")
        if self.done == self.total:
            self.write("\n")


def summary(steps: list[Step], fires: Range) -> str:
    counts: dict[str, int] = {}
    for step in steps:
        key = step.outcome if step.ran else "kept"
        counts[key] = counts.get(key, 0) + 1
    parts = ", ".join(f"{n} {k}" for k, n in counts.items())
    return f"backfill: {plural(len(steps), 'fire time')}: {parts or 'nothing to do'}{fires.left()}"
