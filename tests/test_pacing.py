"""Pacing keeps DingTalk's rate limits from ever being reached; time is a fake clock here."""

from __future__ import annotations

import threading

import pytest

from dispatcher.dingtalk.pacing import Pacer, Pacing, SlidingWindow, strictly_under


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the limiter must never spin with a zero sleep"
        self.slept.append(seconds)
        self.now += seconds


def max_in_window(events: list[tuple[float, int]], window: float) -> int:
    """The most units in any closed window [t, t + window] starting at an event."""
    return max(sum(n for u, n in events if t <= u <= t + window) for t, _ in events)


def test_12000_recipients_at_5000_per_minute_spread_over_at_least_two_minutes() -> None:
    clock = FakeClock()
    pacer = Pacer(Pacing(recipients_per_minute=5000), monotonic=clock.monotonic, sleep=clock.sleep)
    sent: list[tuple[float, int]] = []
    for _ in range(120):  # 120 batches of 100 userids
        with pacer.recipients.reserve(100) as at:
            sent.append((at, 100))

    assert sum(n for _, n in sent) == 12_000
    assert max_in_window(sent, 60.0) <= 5000
    assert sent[-1][0] - sent[0][0] >= 120.0
    assert sent[-1][0] - sent[0][0] < 125.0, "pacing should not wait much longer than needed"


def test_recipient_limit_is_configurable() -> None:
    clock = FakeClock()
    pacer = Pacer(Pacing(recipients_per_minute=250), monotonic=clock.monotonic, sleep=clock.sleep)
    sent = [(pacer.recipients.acquire(100), 100) for _ in range(6)]

    assert max_in_window(sent, 60.0) <= 250
    assert sent[-1][0] >= 120.0  # 600 recipients at 250/min need at least two more windows


def test_calls_stay_strictly_under_calls_per_second_in_every_1s_window() -> None:
    clock = FakeClock()
    pacer = Pacer(Pacing(calls_per_second=20), monotonic=clock.monotonic, sleep=clock.sleep)
    calls = [(pacer.endpoint("asyncsend_v2").acquire(), 1) for _ in range(200)]

    assert max_in_window(calls, 1.0) < 20
    assert max_in_window(calls, 1.0) == 19, "should use the allowance, not crawl"


def test_each_endpoint_has_its_own_allowance() -> None:
    clock = FakeClock()
    pacer = Pacer(Pacing(calls_per_second=5), monotonic=clock.monotonic, sleep=clock.sleep)
    for _ in range(4):
        pacer.endpoint("getbymobile").acquire()
    pacer.endpoint("asyncsend_v2").acquire()

    assert clock.now == 0.0, "a different endpoint must not wait for getbymobile's window"
    pacer.endpoint("getbymobile").acquire()
    assert clock.now > 1.0


def test_a_slow_call_counts_from_when_it_finished() -> None:
    """The server may see a request as late as its response; the window runs from there."""
    clock = FakeClock()
    window = SlidingWindow(1, 1.0, monotonic=clock.monotonic, sleep=clock.sleep)
    with window.reserve():
        clock.now += 5.0  # a 5-second request
    assert window.acquire() >= 6.0


def test_fractional_rates_round_down_to_stay_under() -> None:
    assert strictly_under(20) == 19
    assert strictly_under(2.5) == 2
    assert strictly_under(0.5) == 1


def test_units_larger_than_the_limit_are_a_programming_error() -> None:
    window = SlidingWindow(10, 1.0)
    with pytest.raises(AssertionError):
        window.acquire(11)


def test_threads_sharing_a_window_never_exceed_it() -> None:
    window = SlidingWindow(3, 0.2)
    stamps: list[tuple[float, int]] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(4):
            with window.reserve() as admitted:
                with lock:
                    stamps.append((admitted, 1))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)

    assert len(stamps) == 16
    assert max_in_window(stamps, 0.2) <= 3
