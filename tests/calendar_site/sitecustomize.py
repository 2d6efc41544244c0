"""Every Python process of a calendar run starts its wall clock at the same instant.

`.ci/calendar` puts this folder on PYTHONPATH and sets CALENDAR_CLOCK_OFFSET (seconds);
Python imports `sitecustomize` at start-up, so pytest, its xdist workers, and every daemon, CLI
and sandbox the tests start travel by the same offset, and their clocks agree. time-machine moves
the wall clock only (datetime.now, time.time and friends); monotonic clocks and the waits that use
them stay real, so a 2 s sleep is still 2 s. (libfaketime, tried first, fakes the monotonic clock
too, and Python 3.11 waits with sem_clockwait, which it does not intercept: every timed wait became
months long; with the monotonic clock left alone, its clock_nanosleep turned time.sleep into
EINVAL.)
"""

from __future__ import annotations

import os

_offset = os.environ.get("CALENDAR_CLOCK_OFFSET")
if _offset:
    from datetime import UTC, datetime, timedelta

    import time_machine

    _travel = time_machine.travel(datetime.now(UTC) + timedelta(seconds=float(_offset)), tick=True)
    _travel.start()
