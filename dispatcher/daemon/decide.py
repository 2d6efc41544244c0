"""What the daemon does at an instant: a pure function of the loop's state and "now".

One loop owns time (rq's cron loop, not APScheduler): each pass calls `decide(state, now)`, runs
the actions it returns and sleeps for the time it says. We keep our own loop because every
decision that matters here is ours anyway: fire times come from our own schedule functions,
retries and reaping are read from the ledger (APScheduler's date jobs would duplicate the ledger's
own `next_attempt_at`), and a state-store outage must hold back every ledger task at once. A
single pure function makes all of that testable under a fake clock without sleeping.

The loop passes at least every CONFIG_CHECK, and each pass looks for a changed config file.
Housekeeping runs on fixed periods: `check` (state-store health, /healthz problems) and `retry`
every TICK, `reap` every REAP_EVERY, `hold` (refresh the ledger rows this daemon holds, so other
replicas' reapers leave them alone) every HOLD_EVERY, `prune` at start and then daily, `heartbeat`
every `daemon.heartbeat` seconds. While the state store is unhealthy nothing that touches the
ledger is decided except the `check` that notices its recovery.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from dispatcher.schedule import Schedule

TICK = 1.0  # seconds: the period of the `check` and `retry` chores
# The longest the loop sleeps. Each pass stats the config file, so an edit is reloaded within this
# (a reload at 5,000 reports must land within 2 s of the write, bench scenario 7); a pass with
# nothing due costs well under a millisecond at that size.
CONFIG_CHECK = 0.25
REAP_EVERY = 15.0
HOLD_EVERY = 5.0  # a held row is reaped run_timeout after its last refresh: keep this well below it
PRUNE_EVERY = 86400.0

Chore = Literal["check", "heartbeat", "hold", "reap", "prune", "retry"]
LEDGER_CHORES: frozenset[Chore] = frozenset({"hold", "reap", "prune", "retry"})


@dataclass(frozen=True)
class Wake:
    """Plan and run a report's owed fire times (on time, or a catch-up after start or reload)."""

    report_id: str


@dataclass(frozen=True)
class Housekeep:
    chore: Chore


Action = Wake | Housekeep


@dataclass(frozen=True)
class Timing:
    schedule: Schedule
    zone: ZoneInfo


@dataclass(frozen=True)
class LoopState:
    """Everything `decide` needs; the loop keeps it and replaces it with each decision's `state`."""

    timings: dict[str, Timing] = field(default_factory=dict)  # enabled reports
    next_fire: dict[str, datetime] = field(default_factory=dict)  # report id -> next fire time, UTC
    chores_due: dict[Chore, datetime] = field(default_factory=dict)
    periods: dict[Chore, float] = field(default_factory=dict)
    store_ok: bool = True
    busy: frozenset[str] = frozenset()  # reports whose last wake-up has not finished


@dataclass(frozen=True)
class Decision:
    actions: list[Action]
    sleep: float  # seconds until the next pass
    state: LoopState


def start_state(timings: dict[str, Timing], heartbeat: float, now: datetime) -> LoopState:
    """A new loop: every report wakes at once (catch-up), prune runs first, the rest after a period."""
    periods: dict[Chore, float] = {"check": TICK, "retry": TICK, "reap": REAP_EVERY, "prune": PRUNE_EVERY,
                                   "heartbeat": heartbeat, "hold": HOLD_EVERY}  # fmt: skip
    due = {chore: now + timedelta(seconds=period) for chore, period in periods.items()}
    due["prune"] = now
    return LoopState(timings, dict.fromkeys(timings, now), due, periods)


def with_reports(state: LoopState, timings: dict[str, Timing], wake: set[str], now: datetime) -> LoopState:
    """After a reload: reports gone are dropped, `wake` (added or changed) wake up at once."""
    next_fire = {rid: state.next_fire[rid] for rid in timings if rid in state.next_fire and rid not in wake}
    next_fire |= dict.fromkeys(sorted(wake & timings.keys()), now)
    return replace(state, timings=timings, next_fire=next_fire)


def decide(state: LoopState, now: datetime) -> Decision:
    """The actions due at `now`, the state after them, and how long to sleep."""
    actions: list[Action] = []
    # Most passes have nothing due. Sorting all 5,000 reports' fire times every second was most of
    # an idle daemon's CPU (bench scenario 7), and so is comparing each with `now`: their minimum is
    # enough. Fire times are kept as UTC instants: cheap to compare, and two of one zone would
    # compare by wall time (PEP 495), so in a repeated hour 01:50 EDT would wait behind 01:00 EST.
    soonest = min(state.next_fire.values(), default=None)
    fired = (
        []
        if soonest is None or soonest > now
        else sorted((fire, rid) for rid, fire in state.next_fire.items() if fire <= now)
    )
    next_fire = dict(state.next_fire) if fired else state.next_fire
    for _, rid in fired:
        if rid not in state.busy:  # a busy report's wake-up catches this fire time up later
            actions.append(Wake(rid))
        timing = state.timings[rid]
        next_fire[rid] = timing.schedule.next_fire_time(now, timing.zone).astimezone(UTC)
    chores_due = dict(state.chores_due)
    for chore, due in sorted(state.chores_due.items(), key=lambda item: item[1]):
        if due > now or (chore in LEDGER_CHORES and not state.store_ok):
            continue
        actions.append(Housekeep(chore))
        chores_due[chore] = now + timedelta(seconds=state.periods[chore])
    after = replace(state, next_fire=next_fire, chores_due=chores_due)
    return Decision(actions, _sleep(after, now), after)


def _sleep(state: LoopState, now: datetime) -> float:
    soonest = min([*state.next_fire.values(), *state.chores_due.values()], default=None)
    if soonest is None:
        return CONFIG_CHECK
    return max(0.0, min(CONFIG_CHECK, (soonest - now).total_seconds()))
