"""Client-side pacing so DingTalk's rate limits are never reached.

Two limits [call-frequency-limit, asynchronous-sending-of-enterprise-session-messages]: 20 calls
per second per app per API (beyond: errcode 90018), and 5000 recipients per minute per app
(beyond: errcode 0 but the users land in `forbidden_list` with 143103 — silently undelivered).
Time comes from injected `monotonic`/`sleep`, so tests run on a fake clock.

Both limits count per app, not per process. Given the state store's windows (`SharedUnits`), a
`Pacer` keeps its windows there instead (`SharedWindow`), so replicas share one allowance and a
restarted daemon sees what its predecessor sent; that window runs on wall-clock time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from dispatcher.errors import DispatcherError

log = logging.getLogger(__name__)
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
        for entry in self._entries:
            if entry.at is not None and entry.at > now:  # the clock went back: count from now
                entry.at = now
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


class Admission(Protocol):
    @property
    def reservation(self) -> int | None: ...
    @property
    def wait_ms(self) -> int: ...


class SharedUnits(Protocol):
    """What a shared window needs from the state store (`dispatcher.store.pacewindows.PaceWindows`)."""

    def reserve(
        self, key: str, units: int, limit: int, window_ms: int, now_ms: Callable[[], int]
    ) -> Admission: ...

    def release(self, reservation: int, at_ms: int) -> None: ...

    def shift(self, key: str, ms: int) -> None: ...


class StepWatch:
    """How far the wall clock jumped forward since it was last read, measured on the monotonic clock.

    The shared windows stamp wall-clock time, which replicas on several hosts can compare. A
    forward step makes every stamp look older than it is, so a window would let a second allowance
    through at once: the caller moves its stamps forward by the jump instead (issue 22, item 9). A
    backward step needs no watch: the store counts a stamp from the future as stamped now.
    """

    TOLERANCE = 1.0  # seconds; the two clocks are slewed alike, so only a step drifts them apart

    def __init__(self, wall: Clock, monotonic: Clock) -> None:
        self._wall, self._monotonic = wall, monotonic
        self._last: tuple[float, float] | None = None
        self._lock = threading.Lock()

    def forward_jump_ms(self) -> int:
        """Milliseconds the wall clock stepped forward since the last call (0 if it did not)."""
        with self._lock:
            wall, mono = self._wall(), self._monotonic()
            last, self._last = self._last, (wall, mono)
        if last is None:
            return 0
        jump = (wall - last[0]) - (mono - last[1])
        return int(jump * 1000) if jump > self.TOLERANCE else 0


MAX_NAP = 1.0  # a waiting gate re-reads the store at least this often: a clock step is seen soon


class SharedWindow:
    """SlidingWindow's contract for every process of an app, its units kept in the state store.

    One thread per process asks the store at a time (`_gate`); the others wait on the lock, so
    however many threads send, the database sees one waiter per replica per key. A release in
    this process wakes the waiter at once; another replica's release is seen by polling.
    """

    def __init__(
        self,
        units: SharedUnits,
        key: str,
        limit: int,
        window: float,
        *,
        wall: Clock = time.time,
        monotonic: Clock = time.monotonic,
        sleep: Sleep | None = None,
    ):
        self.key, self.limit, self.window = key, limit, window
        self._units = units
        self._wall = wall
        self._sleep = sleep  # None: wait on this process's releases, which end a wait at once
        self._steps = StepWatch(wall, monotonic)
        self._window_ms = round(window * 1000)
        self._gate = threading.Lock()
        self._released = threading.Condition()
        self._fallback = SlidingWindow(limit, window)
        self._alone = False  # the store was unreachable at the last reservation

    @contextmanager
    def reserve(self, units: int = 1) -> Iterator[float]:
        """Wait until `units` fit, hold them during the block; yields the (wall) start time."""
        reservation = self._admit(units)
        if reservation is None:
            with self._fallback.reserve(units):
                yield self._wall()
            return
        try:
            yield self._wall()
        finally:
            self._units.release(reservation, self._now_ms())
            with self._released:
                self._released.notify_all()

    def acquire(self, units: int = 1) -> float:
        with self.reserve(units) as started:
            return started

    def _admit(self, units: int) -> int | None:
        """The store's reservation id; None when the store is unreachable.

        Without the store this process paces alone, in its own window: the alert that the state
        store is down goes through DingTalk too, and must not wait for the store.
        """
        assert 0 < units <= self.limit, f"{units} units can never fit a limit of {self.limit}"
        with self._gate:
            while True:
                try:
                    if jump_ms := self._steps.forward_jump_ms():
                        log.warning(
                            "the wall clock jumped %d ms forward: pacing %s keeps its stamps' age",
                            jump_ms,
                            self.key,
                        )
                        self._units.shift(self.key, jump_ms)
                    admission = self._units.reserve(
                        self.key, units, self.limit, self._window_ms, self._now_ms
                    )
                except DispatcherError as exc:
                    if not self._alone:  # once per outage, not once per call
                        log.warning("pacing %s in this process only: %s", self.key, exc.message)
                    self._alone = True
                    return None
                if admission.reservation is not None:
                    self._alone = False
                    return admission.reservation
                self._nap(min(admission.wait_ms / 1000, MAX_NAP))

    def _nap(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
            return
        with self._released:
            self._released.wait(timeout=seconds)

    def _now_ms(self) -> int:
        return int(self._wall() * 1000)


Window = SlidingWindow | SharedWindow


def strictly_under(per_second: float) -> int:
    """The most calls per 1-s window that stay strictly below `per_second` (at least 1)."""
    return max(1, math.ceil(per_second) - 1)


class Pacer:
    """One app's limits: a window per API endpoint, and one for recipients per minute.

    With `shared` the windows live in the state store under keys that start with `scope` (the
    app); without, in this process, on the injected clock.
    """

    def __init__(
        self,
        pacing: Pacing,
        *,
        monotonic: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        shared: SharedUnits | None = None,
        scope: str = "",
        wall: Clock = time.time,
    ):
        self.pacing = pacing
        self._monotonic = monotonic
        self._sleep = sleep
        self._shared, self._scope, self._wall = shared, scope, wall
        self._lock = threading.Lock()
        self._endpoints: dict[str, Window] = {}
        self.recipients = self._window("recipients", pacing.recipients_per_minute, 60.0)

    def endpoint(self, name: str) -> Window:
        with self._lock:
            window = self._endpoints.get(name)
            if window is None:
                limit = strictly_under(self.pacing.calls_per_second)
                window = self._endpoints[name] = self._window(f"call:{name}", limit, 1.0)
            return window

    def _window(self, name: str, limit: int, seconds: float) -> Window:
        if self._shared is not None:
            # The real sleep becomes a wait on this process's releases, which a release ends at once.
            sleep = None if self._sleep is time.sleep else self._sleep
            key = f"{self._scope}:{name}"
            return SharedWindow(
                self._shared, key, limit, seconds, wall=self._wall, monotonic=self._monotonic, sleep=sleep
            )
        return SlidingWindow(limit, seconds, monotonic=self._monotonic, sleep=self._sleep)
