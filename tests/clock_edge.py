"""`pytest --clock-edge INSTANT`: every test starts a few seconds before INSTANT, so each one crosses
it (an hour, a day in Shanghai, a week, a month) while it runs.

`.ci/calendar` moves the clock once for a whole run, so only the tests running at that moment cross
the boundary. A test that fails when it happens to start at 17:59:58 (an hourly report fires again,
a daily one changes its date) fails in CI once in a while and blocks a landing; this mode finds it
every time (`.ci/edges`). The test's own process travels with time-machine; the processes it starts
travel by the same offset through `tests/calendar_site` (CALENDAR_CLOCK_OFFSET), as in
`.ci/calendar`. Only the wall clock moves: monotonic clocks and timed waits stay real.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calendar_site")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("clock edge")
    group.addoption("--clock-edge", metavar="INSTANT", help="start every test just before this ISO instant")
    group.addoption("--clock-edge-lead", type=float, default=3.0, metavar="SECONDS",
                    help="how long before the instant each test starts (default 3)")  # fmt: skip


@pytest.fixture(autouse=True)
def _clock_edge(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    edge = request.config.getoption("--clock-edge")
    if not edge:
        yield
        return
    import time_machine

    start = datetime.fromisoformat(edge).astimezone(UTC)
    start -= timedelta(seconds=request.config.getoption("--clock-edge-lead"))
    monkeypatch.setenv("CALENDAR_CLOCK_OFFSET", str(start.timestamp() - time.time()))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (SITE, os.environ.get("PYTHONPATH")) if p))
    with time_machine.travel(start, tick=True):
        yield
