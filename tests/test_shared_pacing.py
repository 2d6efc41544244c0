"""DingTalk's per-app limits are shared by every process of the app, through the state store.

Each app here gets the app's FULL allowance, as a replica does; the sandbox enforces DingTalk's
limits (90018 over 20 calls/s per API, 143103 over the recipients per minute), so a refusal there
means the processes together went over. The recipients limit is scaled down to keep tests fast;
"a minute passes" is simulated by ageing the store's reservations and resetting the sandbox's
minute, since both windows are 60 s long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dispatcher.app import App, open_app
from dispatcher.config.check import load_config
from dispatcher.dingtalk.pacing import Pacer, Pacing
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.store.db import StateStore
from dispatcher.store.pacewindows import PaceWindows
from tests import services

PER_MINUTE = 10  # the sandbox's recipients limit, and each app's full allowance
USERS = [f"u{n:05d}" for n in range(1, 21)]  # SandboxOptions.generated_users

CONFIG = """\
timezone: Asia/Shanghai
state: "{state}"
sources:
  shop: sqlite:///shop.db
dingtalk:
  app_key: dingsandboxkey
  app_secret: sandbox-secret
  agent_id: 100000001
  api_base: {api_base}
  receipts: "off"
  calls_per_second: 20
  recipients_per_minute: {per_minute}
recipients:
  team: {{userids: [user001]}}
reports:
  daily:
    title: 日报
    schedule: "0 9 * * *"
    source: shop
    sql: "SELECT 1 AS n"
    to: [team]
"""


@pytest.fixture(params=["sqlite", "postgres"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        with services.private_postgres() as url:
            yield url


@pytest.fixture
def box() -> Iterator[Sandbox]:
    options = SandboxOptions(calls_per_second=20, recipients_per_minute=PER_MINUTE, generated_users=20)
    with Sandbox(options) as sandbox:
        yield sandbox


def app_for(folder: Path, box: Sandbox, state: str, per_minute: int = PER_MINUTE) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    text = CONFIG.format(state=state, api_base=box.url, per_minute=per_minute)
    (folder / "reports.yaml").write_text(text, encoding="utf-8")
    (folder / "shop.db").touch()
    return open_app(load_config(folder / "reports.yaml"))


def note(text: str) -> dict[str, Any]:
    return {"msgtype": "text", "text": {"content": text}}


def refusals(box: Sandbox) -> dict[str, int]:
    """Codes of the sandbox's refusals: 90018 per call, 143103 per recipient over the minute."""
    found: dict[str, int] = {}
    for call in box.calls():
        code = call["sub_code"] or call["errcode"]  # 90018 comes wrapped in errcode 88
        if code not in (0, None):
            found[str(code)] = found.get(str(code), 0) + 1
    for task in box.tasks():
        for forbidden in task["send_result"]["forbidden_list"]:
            found[forbidden["code"]] = found.get(forbidden["code"], 0) + 1
    return found


def delivered(box: Sandbox) -> int:
    return len(box.messages())


def a_minute_passes(box: Sandbox, state: str) -> None:
    """Age every reservation in the store by 61 s and start the sandbox's minute afresh."""
    engine = sa.create_engine(state)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE dispatcher_pace_units SET reserved_at_ms = reserved_at_ms - 61000, "
                "released_at_ms = released_at_ms - 61000"
            )
    finally:
        engine.dispose()
    box.reset()


def wait_until(condition: Callable[[], bool], deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not met before the deadline"
        time.sleep(0.02)


def send_in_background(app: App, users: list[str], text: str) -> threading.Thread:
    thread = threading.Thread(
        target=app.client.send, args=(note(text),), kwargs={"userids": users}, daemon=True
    )
    thread.start()
    return thread


def test_two_apps_at_full_call_rate_together_stay_under_20_calls_a_second(
    tmp_path: Path, box: Sandbox, state: str
) -> None:
    with app_for(tmp_path / "a", box, state, 5000) as a, app_for(tmp_path / "b", box, state, 5000) as b:
        box.set_options(recipients_per_minute=5000)
        a.client.token(), b.client.token()
        jobs = [(app, f"{name} {n}") for n in range(25) for name, app in (("a", a), ("b", b))]
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda job: job[0].client.send(note(job[1]), userids=["user001"]), jobs))
        took = time.monotonic() - started

    assert refusals(box) == {}, "together the apps went over DingTalk's 20 calls/s"
    assert len(box.calls("asyncsend_v2")) == 50
    assert took >= 2.0, "50 calls at 19 a second need more than 2 s"


def test_two_apps_with_the_full_allowance_share_the_minute(tmp_path: Path, box: Sandbox, state: str) -> None:
    with app_for(tmp_path / "a", box, state) as a, app_for(tmp_path / "b", box, state) as b:
        first = send_in_background(a, USERS[:8], "a")
        second = send_in_background(b, USERS[8:16], "b")
        wait_until(lambda: delivered(box) >= 8)
        time.sleep(1.5)  # the other app had every chance to send now: it must be waiting
        assert refusals(box) == {}, "together the apps went over the recipients per minute"
        assert delivered(box) == 8
        assert first.is_alive() != second.is_alive(), "one app sends, the other waits for the minute"

        a_minute_passes(box, state)
        first.join(10), second.join(10)
        assert not first.is_alive() and not second.is_alive()
    assert refusals(box) == {}
    assert delivered(box) == 8


def test_a_process_started_after_another_used_the_minute_waits(
    tmp_path: Path, box: Sandbox, state: str
) -> None:
    with app_for(tmp_path / "a", box, state) as predecessor:
        predecessor.client.send(note("before the restart"), userids=USERS[:PER_MINUTE])
    assert delivered(box) == PER_MINUTE

    with app_for(tmp_path / "b", box, state) as successor:
        thread = send_in_background(successor, USERS[PER_MINUTE : PER_MINUTE + 1], "after the restart")
        thread.join(1.5)
        assert thread.is_alive(), "the new process must wait out its predecessor's minute"
        assert refusals(box) == {} and delivered(box) == PER_MINUTE

        a_minute_passes(box, state)
        thread.join(10)
        assert not thread.is_alive()
    assert refusals(box) == {} and delivered(box) == 1


def test_a_holder_that_died_mid_request_stops_counting_after_the_stale_limit(
    tmp_path: Path, box: Sandbox, state: str
) -> None:
    with app_for(tmp_path / "a", box, state) as app:
        key = app.client._http.pacer.recipients.key  # type: ignore[union-attr]
        # A process reserved the whole minute and died before its request returned.
        dead = PaceWindows(app.store).reserve(
            key, PER_MINUTE, PER_MINUTE, 60_000, lambda: int(time.time() * 1000)
        )
        assert dead.reservation is not None

        thread = send_in_background(app, USERS[:1], "after a crash")
        thread.join(1.5)
        assert thread.is_alive(), "an in-flight reservation counts while its holder may be alive"
        assert delivered(box) == 0

        with app.store.begin() as conn:  # 121 s later: the holder is certainly gone
            conn.exec_driver_sql("UPDATE dispatcher_pace_units SET reserved_at_ms = reserved_at_ms - 121000")
        thread.join(10)
        assert not thread.is_alive()
    assert refusals(box) == {} and delivered(box) == 1


def test_units_count_while_in_flight_and_from_their_release_on(state: str) -> None:
    """SlidingWindow's contract in the store: the server may see a request as late as its answer."""
    store = StateStore(state)
    try:
        windows = PaceWindows(store)
        slow = windows.reserve("app:call:x", 1, 1, 1000, lambda: 0)
        assert slow.reservation is not None
        assert windows.reserve("app:call:x", 1, 1, 1000, lambda: 4000).wait_ms > 0, "in flight, it counts"
        windows.release(slow.reservation, 5000)  # a 5-second request
        assert windows.reserve("app:call:x", 1, 1, 1000, lambda: 5500).wait_ms == 501
        assert windows.reserve("app:call:x", 1, 1, 1000, lambda: 6001).reservation is not None
    finally:
        store.close()


def test_waiting_threads_leave_one_waiter_per_process_on_the_database(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    windows = PaceWindows(store)
    pacer = Pacer(Pacing(recipients_per_minute=5), shared=windows, scope="app")
    key = pacer.recipients.key  # type: ignore[union-attr]
    pacer.recipients.acquire(5)  # the minute is used up
    threads = [threading.Thread(target=pacer.recipients.acquire, daemon=True) for _ in range(64)]
    try:
        attempts = _attempts(store, key)
        for thread in threads:
            thread.start()
        time.sleep(2.0)  # measuring how often the waiters ask, not waiting for a condition
        asked = _attempts(store, key) - attempts
        assert asked <= 5, f"{asked} reservations in 2 s: the waiting threads poll the database"
        assert all(t.is_alive() for t in threads)

        _age(store, 61_000)  # a minute later, five more fit
        wait_until(lambda: sum(t.is_alive() for t in threads) == 64 - 5)
        assert windows.units(key) == 5  # the aged five left the window
    finally:
        # The rest wait for minutes that never come in this test: free them.
        wait_until(lambda: _age(store, 61_000) or not any(t.is_alive() for t in threads), 60.0)
        store.close()


def _attempts(store: StateStore, key: str) -> int:
    with store.connect() as conn:
        found = conn.exec_driver_sql(
            "SELECT reservations FROM dispatcher_pace_locks WHERE pace_key = ?", (key,)
        ).scalar()
    return int(found or 0)


def _age(store: StateStore, ms: int) -> bool:
    with store.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE dispatcher_pace_units SET reserved_at_ms = reserved_at_ms - ?, "
            "released_at_ms = released_at_ms - ?",
            (ms, ms),
        )
    return False
