"""Pacing survives a wall clock stepped back or forward (issue 22, item 9).

After a one-hour step back, the shared windows counted the earlier stamps as still inside the
window, and the next robot post waited about 3,600 s. Whatever the wall clock does, no wait may
exceed the window, and the limits must still hold in true time. Time is a fake clock here: true
time moves only when a pacer sleeps, and the wall clock is true time plus an offset a step moves.
The shared windows run on real SQLite and PostgreSQL state stores.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.dingtalk.pacing import Pacer, Pacing, SlidingWindow
from dispatcher.robot.client import RobotPacer
from dispatcher.store.db import StateStore
from dispatcher.store.pacewindows import PaceWindows
from dispatcher.store.robotsends import RobotSends
from tests import services

HOUR = 3600.0
T0 = 1_795_000_000.0


class SteppingClock:
    def __init__(self) -> None:
        self.true = T0
        self.offset = 0.0
        self.naps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.true

    def wall(self) -> float:
        with self._lock:
            return self.true + self.offset

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a pacer must never spin with a zero sleep"
        with self._lock:
            self.naps.append(seconds)
            self.true += seconds

    def step(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds


def most_in_any_window(times: list[float], window: float) -> int:
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        yield state
        state.close()
    else:
        with services.private_postgres() as url:
            state = StateStore(url)
            yield state
            state.close()


# -- the store's windows, asked directly ----------------------------------------------------------


def test_after_a_step_back_the_store_windows_wait_at_most_one_window(store: StateStore) -> None:
    t, back = int(T0 * 1000), int((T0 - HOUR) * 1000)
    pace, robots = PaceWindows(store), RobotSends(store)
    for _ in range(5):
        admitted = pace.reserve("app:recipients", 1, 5, 60_000, lambda: t)
        assert admitted.reservation is not None
        pace.release(admitted.reservation, t)
        assert robots.reserve("robot", lambda: t, 5, 61_000) is None
    refused = pace.reserve("app:recipients", 1, 5, 60_000, lambda: back)
    assert refused.reservation is None and 0 < refused.wait_ms <= 60_001
    assert (
        pace.reserve("app:recipients", 1, 5, 60_000, lambda: back + refused.wait_ms).reservation is not None
    )
    wait_ms = robots.reserve("robot", lambda: back, 5, 61_000)
    assert wait_ms is not None and 0 < wait_ms <= 61_000
    assert robots.reserve("robot", lambda: back + wait_ms, 5, 61_000) is None


def test_after_a_step_back_an_in_flight_reservation_still_goes_stale(store: StateStore) -> None:
    t, back = int(T0 * 1000), int((T0 - HOUR) * 1000)
    pace = PaceWindows(store, stale_ms=120_000)
    assert pace.reserve("app:call:x", 1, 1, 1000, lambda: t).reservation is not None  # never released
    assert pace.reserve("app:call:x", 1, 1, 1000, lambda: back + 120_001).reservation is None
    assert pace.reserve("app:call:x", 1, 1, 1000, lambda: back + 240_002).reservation is not None


# -- the pacers, through a step ---------------------------------------------------------------------


def robot_pacer(store: StateStore, clock: SteppingClock) -> RobotPacer:
    return RobotPacer(RobotSends(store), now=clock.wall, sleep=clock.sleep, monotonic=clock.monotonic)


def shared_pacer(store: StateStore, clock: SteppingClock) -> Pacer:
    return Pacer(
        Pacing(recipients_per_minute=10),
        shared=PaceWindows(store),
        scope="app",
        wall=clock.wall,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )


def send_through_a_step(acquire, clock: SteppingClock, step: float, limit: int) -> tuple[list[float], float]:  # type: ignore[no-untyped-def]
    """`limit` sends, the wall clock steps, 2 * limit more; their true times and the longest wait."""
    times, longest = [], 0.0
    for n in range(3 * limit):
        if n == limit:
            clock.step(step)
        before = clock.monotonic()
        acquire()
        longest = max(longest, clock.monotonic() - before)
        times.append(clock.monotonic())
    return times, longest


@pytest.mark.parametrize("step", [-HOUR, HOUR], ids=["back", "forward"])
def test_robot_posts_keep_their_limit_and_never_wait_past_the_window(store: StateStore, step: float) -> None:
    clock = SteppingClock()
    pacer = robot_pacer(store, clock)
    times, longest = send_through_a_step(lambda: pacer.acquire("robot"), clock, step, 19)
    assert longest <= 61.0 + 0.01, f"waited {longest:.0f} s after a step of {step:+.0f} s"
    assert most_in_any_window(times, 60.0) <= 19


@pytest.mark.parametrize("step", [-HOUR, HOUR], ids=["back", "forward"])
def test_app_recipients_keep_their_limit_and_never_wait_past_the_window(
    store: StateStore, step: float
) -> None:
    clock = SteppingClock()
    pacer = shared_pacer(store, clock)
    times, longest = send_through_a_step(lambda: pacer.recipients.acquire(1), clock, step, 10)
    assert longest <= 60.0 + 0.01, f"waited {longest:.0f} s after a step of {step:+.0f} s"
    assert most_in_any_window(times, 60.0) <= 10


def test_a_forward_step_seen_by_two_replicas_keeps_the_limit(tmp_path: Path) -> None:
    """Each replica shifts the window by the step it saw: the second shift errs on the safe side."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    clock = SteppingClock()
    stores = [StateStore(url), StateStore(url)]
    try:
        pacers = [robot_pacer(s, clock) for s in stores]
        times, longest = [], 0.0
        for n in range(57):
            if n == 19:
                clock.step(HOUR)
            before = clock.monotonic()
            pacers[n % 2].acquire("robot")
            longest = max(longest, clock.monotonic() - before)
            times.append(clock.monotonic())
    finally:
        for s in stores:
            s.close()
    assert longest <= 61.0 + 0.01 and most_in_any_window(times, 60.0) <= 19


# -- the in-process windows -------------------------------------------------------------------------


def test_an_in_process_window_whose_clock_steps_back_waits_at_most_one_window() -> None:
    clock = SteppingClock()
    window = SlidingWindow(5, 60.0, monotonic=clock.wall, sleep=clock.sleep)
    for _ in range(5):
        window.acquire()
    clock.step(-HOUR)
    before = clock.monotonic()
    window.acquire()
    assert 0 < clock.monotonic() - before <= 60.0 + 0.01


@pytest.mark.parametrize("step", [-HOUR, HOUR], ids=["back", "forward"])
def test_in_process_pacing_runs_on_the_monotonic_clock_whatever_the_wall_does(step: float) -> None:
    clock = SteppingClock()
    pacer = Pacer(
        Pacing(recipients_per_minute=10), monotonic=clock.monotonic, sleep=clock.sleep, wall=clock.wall
    )
    times, longest = send_through_a_step(lambda: pacer.recipients.acquire(1), clock, step, 10)
    assert longest <= 60.0 + 0.01 and most_in_any_window(times, 60.0) <= 10
