"""Client-side pacing so DingTalk's rate limits are never reached.

Two limits [call-frequency-limit, asynchronous-sending-of-enterprise-session-messages]: 20 calls
per second per app per API (beyond: errcode 90018), and 5000 recipients per minute per app
(beyond: errcode 0 but the users land in `forbidden_list` with 143103 — silently undelivered).
Time comes from injected `monotonic`/`sleep`, so tests run on a fake clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

Clock = Callable[[], float]
Sleep = Callable[[float], None]
_EPSILON = 1e-3  # step past a window edge, so a closed [t, t+window] interval also holds


@dataclass(frozen=True)
class Pacing:
    calls_per_second: float = 20.0  # per API endpoint
    recipients_per_minute: int = 5000  # per app, counted over asyncsend_v2 userids


@dataclass
class _Entry:
    units: int
    at: float | None = None  # None while the request is in flight


@dataclass
class SlidingWindow:
    """At most `limit` units in any `window`-second span, for any number of threads.

    A reservation counts from the moment it is made and is stamped with the time it is
    released. The server sees the request somewhere in between, so measuring the window
    from the release keeps the server's view under the limit too, whatever the latency.
    """

    limit: int
    window: float
    monotonic: Clock = time.monotonic
    sleep: Sleep = time.sleep
    _entries: list[_Entry] = field(default_factory=list, init=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False)

    @contextmanager
    def reserve(self, units: int = 1) -> Iterator[float]:
        """Wait until `units` fit, hold them during the block; yields the start time."""
        entry = self._admit(units)
        try:
            yield self.monotonic()
        finally:
            with self._cond:
                entry.at = self.monotonic()
                self._cond.notify_all()

    def acquire(self, units: int = 1) -> float:
        """Reserve and release at once; returns the time the units were admitted."""
        with self.reserve(units) as started:
            return started

    def _admit(self, units: int) -> _Entry:
        assert 0 < units <= self.limit, f"{units} units can never fit a limit of {self.limit}"
        while True:
            with self._cond:
                wait = self._wait_for(units, self.monotonic())
                if wait is None:
                    entry = _Entry(units)
                    self._entries.append(entry)
                    return entry
                if wait == math.inf:
                    # Only in-flight reservations block us; their release will notify.
                    self._cond.wait(timeout=0.05)
                    continue
            self.sleep(wait)

    def _wait_for(self, units: int, now: float) -> float | None:
        """None if `units` fit now, else seconds until enough stamped entries expire."""
        self._entries = [e for e in self._entries if e.at is None or e.at + self.window >= now]
        excess = sum(e.units for e in self._entries) + units - self.limit
        if excess <= 0:
            return None
        for entry in sorted((e for e in self._entries if e.at is not None), key=_stamp):
            excess -= entry.units
            if excess <= 0:
                return _stamp(entry) + self.window - now + _EPSILON
        return math.inf


def _stamp(entry: _Entry) -> float:
    assert entry.at is not None
    return entry.at


def strictly_under(per_second: float) -> int:
    """The most calls per 1-s window that stay strictly below `per_second` (at least 1)."""
    return max(1, math.ceil(per_second) - 1)


class Pacer:
    """One app's limits: a window per API endpoint, and one for recipients per minute."""

    def __init__(self, pacing: Pacing, *, monotonic: Clock = time.monotonic, sleep: Sleep = time.sleep):
        self.pacing = pacing
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._endpoints: dict[str, SlidingWindow] = {}
        self.recipients = SlidingWindow(pacing.recipients_per_minute, 60.0, monotonic=monotonic, sleep=sleep)

    def endpoint(self, name: str) -> SlidingWindow:
        with self._lock:
            window = self._endpoints.get(name)
            if window is None:
                limit = strictly_under(self.pacing.calls_per_second)
                window = SlidingWindow(limit, 1.0, monotonic=self._monotonic, sleep=self._sleep)
                self._endpoints[name] = window
            return window
