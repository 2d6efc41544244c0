"""The daemon's guards against starvation: runs bounded by run_timeout, and a clock on waiting work.

Python cannot kill a thread. A run therefore executes on a thread of its own while the pool's
worker waits for it at most `run_timeout`; past that the worker abandons the run and goes back
to the pool. The abandoned thread keeps its report's lock until it ends (the bounded renderer and
the query timeout end it); later wake-ups of that report are skipped, not queued behind it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Attempt:
    """One run on its own thread; `still_mine` and `abandon` decide, under one lock, who records it."""

    guard: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False
    recording: bool = False

    def still_mine(self) -> bool:
        """Asked by the run before it sends or records; once it said yes, the run is never abandoned."""
        with self.guard:
            self.recording = not self.abandoned
            return self.recording

    def abandon(self) -> bool:
        """True when the run was given up; False when it finished or is already sending/recording."""
        with self.guard:
            if self.done.is_set() or self.recording:
                return False
            self.abandoned = True
            return True


def run_bounded(
    body: Callable[[Attempt], None], timeout: float, lock: threading.Lock, name: str
) -> Attempt | None:
    """Run `body` on a new thread that owns `lock` (held by the caller) and wait up to `timeout`.

    Returns None when the run ended (the caller still holds the lock), or the abandoned Attempt:
    its thread now owns the lock and releases it whenever it ends. A run that started sending is
    waited for to the end, since stopping half-way would resend to the recipients that got it.
    """
    attempt = Attempt()

    def target() -> None:
        try:
            body(attempt)
        finally:
            with attempt.guard:
                attempt.done.set()
                owns_lock = attempt.abandoned
            if owns_lock:
                lock.release()

    threading.Thread(target=target, name=name, daemon=True).start()
    if attempt.done.wait(timeout) or not attempt.abandon():
        attempt.done.wait()
        return None
    return attempt


class WaitClock:
    """How long the oldest due job has waited for a free worker.

    The scheduler reports each job it hands to the pool (`submitted`); each job says when a worker
    picks it up (`started`). The pool runs jobs in order, so a start settles the oldest submission.
    A job may start before its submission is reported; `_early` counts those.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: deque[float] = deque()
        self._early = 0

    def submitted(self) -> None:
        with self._lock:
            if self._early:
                self._early -= 1
            else:
                self._queued.append(time.monotonic())

    def started(self) -> None:
        with self._lock:
            if self._queued:
                self._queued.popleft()
            else:
                self._early += 1

    def oldest_wait(self) -> float:
        with self._lock:
            return time.monotonic() - self._queued[0] if self._queued else 0.0
