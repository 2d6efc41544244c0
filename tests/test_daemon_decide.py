"""The daemon's decisions: a pure function of (state, now), driven here by a fake clock, never sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dispatcher.daemon.decide import (
    PRUNE_EVERY,
    REAP_EVERY,
    TICK,
    Housekeep,
    LoopState,
    Timing,
    Wake,
    decide,
    start_state,
    with_reports,
)
from dispatcher.schedule import parse_schedule

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 30, 0, 59, 59, 500000, tzinfo=UTC)  # half a second before 09:00 Shanghai


def timing(spec: str | dict[str, str]) -> Timing:
    return Timing(parse_schedule(spec), SHANGHAI)


def reports() -> dict[str, Timing]:
    return {"daily": timing("0 9 * * *"), "fast": timing({"every": "2s"})}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def wakes(actions: list[object]) -> list[str]:
    return [a.report_id for a in actions if isinstance(a, Wake)]


def chores(actions: list[object]) -> list[str]:
    return [a.chore for a in actions if isinstance(a, Housekeep)]


def test_a_new_loop_wakes_every_report_at_once_and_prunes_first() -> None:
    decision = decide(start_state(reports(), 60, T0), T0)
    assert sorted(wakes(decision.actions)) == ["daily", "fast"], "start catches every report up"
    assert chores(decision.actions) == ["prune"]


def test_a_report_wakes_exactly_at_its_fire_time_and_the_loop_sleeps_until_then() -> None:
    state = decide(start_state({"daily": timing("0 9 * * *")}, 60, T0), T0).state
    assert state.next_fire["daily"] == datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    early = decide(state, at(0.35))  # within one config check of the fire time
    assert wakes(early.actions) == []
    assert abs(early.sleep - 0.15) < 1e-6
    on_time = decide(early.state, at(0.5))
    assert wakes(on_time.actions) == ["daily"]
    assert on_time.state.next_fire["daily"] == datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def test_the_sleep_never_passes_one_tick_so_housekeeping_keeps_its_rhythm() -> None:
    state = decide(start_state({"daily": timing("0 9 * * *")}, 60, T0), T0).state
    state = decide(state, at(0.5)).state  # past the fire: the next one is a day away
    assert decide(state, at(0.6)).sleep <= TICK


def test_the_loop_passes_four_times_a_second_so_a_config_edit_is_reloaded_soon() -> None:
    """Each pass stats the config file: an idle loop must not sleep a whole tick between looks."""
    idle = decide(start_state({"daily": timing("0 9 * * *")}, 3600, T0), T0).state
    idle = decide(idle, at(0.5)).state  # fired: the next fire is a day away, chores a tick away
    assert decide(idle, at(0.5)).sleep <= 0.25
    assert decide(idle, at(0.6)).sleep <= 0.25


def test_a_busy_report_is_not_woken_twice_but_its_fire_time_still_advances() -> None:
    state = decide(start_state({"fast": timing({"every": "2s"})}, 60, T0), T0).state
    busy = LoopState(**{**state.__dict__, "busy": frozenset({"fast"})})
    decision = decide(busy, at(2))
    assert wakes(decision.actions) == [], "the wake-up under way plans the owed fire time itself"
    assert decision.state.next_fire["fast"] > at(2)


def test_a_paused_loop_wakes_a_report_once_for_all_the_fire_times_it_slept_through() -> None:
    state = decide(start_state({"fast": timing({"every": "2s"})}, 60, T0), T0).state
    decision = decide(state, at(60))
    assert wakes(decision.actions) == ["fast"]
    assert decision.state.next_fire["fast"] > at(60)


def test_housekeeping_runs_on_its_periods() -> None:
    state = start_state({}, 30, T0)
    seen: dict[str, list[float]] = {}
    for tenth in range(0, 10 * 61):
        now = at(tenth / 10)
        decision = decide(state, now)
        state = decision.state
        for chore in chores(decision.actions):
            seen.setdefault(chore, []).append(tenth / 10)
    assert seen["prune"] == [0.0], "prune at start, then daily"
    assert seen["reap"] == [REAP_EVERY, 2 * REAP_EVERY, 3 * REAP_EVERY, 4 * REAP_EVERY]
    assert seen["heartbeat"] == [30.0, 60.0]
    assert len(seen["retry"]) == len(seen["check"]) == 61 - 1
    assert PRUNE_EVERY == 86400


def test_while_the_store_is_unhealthy_only_the_check_runs() -> None:
    state = start_state({"daily": timing("0 9 * * *")}, 60, T0)
    down = LoopState(**{**state.__dict__, "store_ok": False})
    decision = decide(down, at(REAP_EVERY))
    assert chores(decision.actions) == ["check"]
    assert decision.state.chores_due["reap"] == down.chores_due["reap"], "reap waits for the store"
    healthy = LoopState(**{**decision.state.__dict__, "store_ok": True})
    assert {"reap", "retry", "prune"} <= set(chores(decide(healthy, at(REAP_EVERY + 0.1)).actions))


def test_a_reload_wakes_added_and_changed_reports_and_forgets_removed_ones() -> None:
    state = decide(start_state(reports(), 60, T0), T0).state
    new = {"daily": timing("30 9 * * *"), "weekly": timing("0 9 * * 1")}
    reloaded = with_reports(state, new, {"daily", "weekly"}, at(1))
    assert set(reloaded.next_fire) == {"daily", "weekly"}
    assert sorted(wakes(decide(reloaded, at(1)).actions)) == ["daily", "weekly"]
    kept = with_reports(state, reports(), set(), at(1))
    assert kept.next_fire == state.next_fire, "an unchanged report keeps its next fire time"
