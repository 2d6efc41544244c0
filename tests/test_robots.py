"""Group robots (issue 13): signed sends, @mentions, the keyword, pacing, errors and ledger units.

Every send goes over real HTTP to the sandbox's `/robot/send`, which checks the signature, the
keyword and the 20-a-minute limit as DingTalk does; the pacing window lives in a real SQLite store.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from dispatcher.cli.main import main
from dispatcher.config.check import load_config
from dispatcher.errors import DeliveryError
from dispatcher.robot.client import Robot, RobotClient, RobotPacer
from dispatcher.robot.message import Mentions, RobotMessage, msg_uuid, robot_body
from dispatcher.robot.webhook import sign, signed_url
from dispatcher.run.services import Services
from dispatcher.sandbox import Sandbox
from dispatcher.sandbox.robots import RobotRoom
from dispatcher.store.db import StateStore
from dispatcher.store.robotsends import RobotSends
from tests import feature_kit
from tests.feature_kit import SANDBOX_APP, retry_at, run_at

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
TOKEN = "tok-sales-5f1c2d9e8a"
SECRET = "SECc0ffee1234567890abcdef"
FIRE = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
ROWS_SQL = (
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 300) "
    "SELECT '区域' || n AS region, n * 100 AS sales FROM r"
)

CONFIG = (
    SANDBOX_APP
    + """\
  leads: {{userids: [manager4974]}}
robots:
  sales-group:
    webhook: {api_base}/robot/send?access_token={token}
    secret: {secret}
    keyword: {keyword}
reports:
  daily:
    title: {title}
    schedule: "0 9 * * *"
    source: shop
    sql: "{sql}"
    to: [leads]
    robots: [sales-group]
    mention: {{mobiles: ["13800000000"], userids: [manager4974]}}
    retries: 2
    retry_delay: 1s
"""
)


class FakeClock:
    """Wall time for the pacer and the sandbox's robots; sleeping moves it on at once."""

    def __init__(self, start: float = 1_795_000_000.0) -> None:
        self.t = start
        self.slept = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.t += seconds
            self.slept += seconds


def write_config(folder: Path, base: str, **changes: str) -> Path:
    values = {"api_base": base, "token": TOKEN, "secret": SECRET, "keyword": "日报", "title": "销售日报",
              "sql": ROWS_SQL} | changes  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shop.db").touch()
    path = folder / "reports.yaml"
    path.write_text(CONFIG.format(**values), encoding="utf-8")
    return path


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        sandbox.add_robot("sales-group", TOKEN, SECRET, "日报")
        yield sandbox


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield state
    state.close()


def robot_client(store: StateStore, clock: FakeClock | None = None, **pacing: float) -> RobotClient:
    if clock is None:
        return RobotClient(RobotPacer(RobotSends(store), **pacing))  # type: ignore[arg-type]
    pacer = RobotPacer(RobotSends(store), now=clock.now, sleep=clock.sleep, **pacing)  # type: ignore[arg-type]
    return RobotClient(pacer)


def message(n: int = 0, text: str = "### 销售日报\n\n- 华东 100") -> RobotMessage:
    body, checked = robot_body(
        {"msgtype": "markdown", "markdown": {"title": "销售日报", "text": text}},
        Mentions(),
        msg_uuid("daily", FIRE, "sales-group", f"text-{n}"),
    )
    return RobotMessage("sales-group", body, checked)


def free_port() -> int:
    """A port nothing listens on: bound by the OS, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def services(path: Path, box: Sandbox) -> AbstractContextManager[Services]:
    """The daemon's services, with the group robots' client pacing on the same state store."""
    return feature_kit.services(path, box, robots=robot_client)


def run_once(svc: Services) -> str:
    return run_at(svc, "daily", FIRE)


def retry_due(svc: Services) -> str:
    return retry_at(svc, "daily")


# -- signing ------------------------------------------------------------------------------------


def test_the_signature_is_dingtalks_hmac_of_timestamp_and_secret_url_encoded() -> None:
    # Computed by hand, the way DingTalk's documentation's Python sample does it.
    import base64
    import hashlib
    import hmac
    import urllib.parse

    digest = hmac.new(SECRET.encode(), f"1700000000000\n{SECRET}".encode(), hashlib.sha256).digest()
    assert sign(SECRET, 1700000000000) == urllib.parse.quote_plus(base64.b64encode(digest))
    url = signed_url(f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}", SECRET, 1700000000000)
    assert url.endswith(f"&timestamp=1700000000000&sign={sign(SECRET, 1700000000000)}")


def test_a_signed_report_reaches_the_group_with_the_whole_body(tmp_path: Path, box: Sandbox) -> None:
    with services(write_config(tmp_path / "p", box.url), box) as svc:
        assert run_once(svc) == "sent"
    [call] = box.robots.calls()
    assert call["signed"] and call["errcode"] == 0
    [posted] = box.robot_messages("sales-group")
    body = posted["body"]
    assert set(body) == {"msgtype", "markdown", "at", "msgUuid"}
    assert body["msgtype"] == "markdown" and body["markdown"]["title"] == "销售日报"
    text = body["markdown"]["text"]
    assert text.startswith("### 销售日报\n") and "数据截至 2026-11-28 09:00" in text
    assert text.endswith("\n\n@13800000000 @manager4974")
    assert body["at"] == {"atMobiles": ["13800000000"], "atUserIds": ["manager4974"], "isAtAll": False}
    assert body["msgUuid"] == msg_uuid("daily", FIRE, "sales-group", "text")
    # The group's own budget: far more rows than the 2048-byte work notification shows.
    [notice] = box.calls("asyncsend_v2")
    work_rows = notice["body"]["msg"]["markdown"]["text"].count("\n- **区域")
    assert text.count("\n- **区域") > 3 * work_rows > 0
    assert len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()) <= 20000


def test_a_wrong_secret_is_a_clear_error_naming_the_robot_and_is_not_retried(
    box: Sandbox, store: StateStore
) -> None:
    client = robot_client(store)
    robot = Robot("sales-group", f"{box.url}/robot/send?access_token={TOKEN}", "SECwrong0000000000", "日报")
    with pytest.raises(DeliveryError) as caught:
        client.send(robot, message())
    error = caught.value
    assert error.errcode == 310000 and not error.retryable
    assert "robot 'sales-group'" in error.message and "sign not match" in error.message
    assert error.hint is not None and "secret" in error.hint and "sales-group" in error.hint
    assert len(box.robots.calls()) == 1  # permanent: sent once
    assert box.robot_messages() == []


def test_a_stale_timestamp_is_refused_like_a_bad_signature(box: Sandbox, store: StateStore) -> None:
    clock = FakeClock(start=datetime.now(UTC).timestamp() - 3700)  # this server's clock is an hour off
    client = robot_client(store, clock)
    robot = Robot("sales-group", f"{box.url}/robot/send?access_token={TOKEN}", SECRET, "日报")
    with pytest.raises(DeliveryError, match="invalid timestamp"):
        client.send(robot, message())


def test_an_unknown_token_names_the_robot_and_says_to_copy_the_webhook(
    box: Sandbox, store: StateStore
) -> None:
    robot = Robot("ops", f"{box.url}/robot/send?access_token=nosuchtoken123", None, None)
    with pytest.raises(DeliveryError) as caught:
        robot_client(store).send(robot, message())
    assert caught.value.errcode == 400101 and "robot 'ops'" in str(caught.value)
    assert "copy the webhook" in str(caught.value)


# -- validate -----------------------------------------------------------------------------------


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["validate", "-c", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_validate_catches_a_title_without_the_robots_keyword_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = validate(write_config(tmp_path, "https://oapi.dingtalk.com", title="销售汇总"), capsys)
    assert code == 1
    assert (
        "reports.yaml:24: reports.daily.robots.0: robot 'sales-group' accepts only messages containing" in out
    )
    assert "'日报'" in out and TOKEN not in out


def test_validate_accepts_the_keyword_in_a_templates_fixed_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, "https://oapi.dingtalk.com", title="销售汇总")
    text = path.read_text(encoding="utf-8").replace(
        "    retries: 2", "    template: '今日日报 {{ n_rows }}'\n    retries: 2"
    )
    path.write_text(text, encoding="utf-8")
    assert validate(path, capsys)[0] == 0
    path.write_text(text.replace("今日日报", "今日 {{ title }}"), encoding="utf-8")
    assert validate(path, capsys)[0] == 1  # the title has no keyword either


@pytest.mark.parametrize(
    ("webhook", "expected"),
    [
        (f"http://example.com/robot/send?access_token={TOKEN}", "must be DingTalk's robot endpoint"),
        (f"https://oapi.dingtalk.com/robot/sendx?access_token={TOKEN}", "path must be /robot/send"),
        ("https://oapi.dingtalk.com/robot/send?token=abc", "has no access_token="),
        ("oapi.dingtalk.com/robot/send", "must be an https URL"),
    ],
)
def test_validate_checks_the_webhook_form_without_printing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], webhook: str, expected: str
) -> None:
    path = write_config(tmp_path, "https://oapi.dingtalk.com")
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace(f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}", webhook), "utf-8"
    )
    code, out = validate(path, capsys)
    assert code == 1 and "reports.yaml:14: robots.sales-group.webhook:" in out and expected in out
    assert TOKEN not in out


def test_a_report_needs_recipients_or_robots_and_known_robot_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, "https://oapi.dingtalk.com")
    text = path.read_text(encoding="utf-8").replace("    to: [leads]\n", "")
    path.write_text(text, encoding="utf-8")
    assert validate(path, capsys)[0] == 0  # robots alone are enough
    path.write_text(text.replace("robots: [sales-group]", "robots: [sales-grp]"), encoding="utf-8")
    code, out = validate(path, capsys)
    assert code == 1 and "unknown robot 'sales-grp'; did you mean 'sales-group'?" in out
    path.write_text(text.replace("    robots: [sales-group]\n", ""), encoding="utf-8")
    code, out = validate(path, capsys)
    assert code == 1 and "give 'to' (recipient groups), 'robots' (group robots), or both" in out


# -- mentions and the inbox ---------------------------------------------------------------------


def test_mentions_are_listed_in_at_written_in_the_text_and_highlighted_in_the_inbox(
    tmp_path: Path, box: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    with services(write_config(tmp_path / "p", box.url), box) as svc:
        assert run_once(svc) == "sent"
    [posted] = box.robot_messages()
    assert posted["at"]["atMobiles"] == ["13800000000"] and "@13800000000" in posted["text"]
    page = requests.get(f"{box.url}/", timeout=10).text
    assert "群 · sales-group (1)" in page
    # both the mobile and the userid are 王建国's in the directory: the chat shows his name, twice
    assert page.count('<span class="mention">@王建国</span>') == 2
    assert "@13800000000" not in page and "@manager4974" not in page


# -- pacing -------------------------------------------------------------------------------------


def test_25_messages_in_a_minute_to_one_robot_are_paced_and_none_is_refused(store: StateStore) -> None:
    clock = FakeClock()
    # The sandbox counts its minute on the same clock.
    with Sandbox(robots=RobotRoom(now=clock.now)) as sandbox:
        sandbox.add_robot("sales-group", TOKEN, SECRET, "日报")
        client = robot_client(store, clock)
        robot = Robot("sales-group", f"{sandbox.url}/robot/send?access_token={TOKEN}", SECRET, "日报")
        for n in range(25):
            client.send(robot, message(n))
        calls = sandbox.robots.calls()
        posted = sandbox.robot_messages()
    assert [c["errcode"] for c in calls] == [0] * 25
    assert len(posted) == 25
    times = [m["at_time"] for m in posted]
    assert max(sum(1 for t in times if start <= t < start + 60) for start in times) <= 19
    assert 60 <= clock.slept < 62  # one wait for the window, not one per message


def test_two_replicas_share_one_window_through_the_state_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    clock = FakeClock()
    stores = [StateStore(url), StateStore(url)]
    try:
        pacers = [RobotPacer(RobotSends(s), now=clock.now, sleep=clock.sleep) for s in stores]
        stamps = []
        for n in range(40):
            pacers[n % 2].acquire("robot-key")
            stamps.append(clock.now())
    finally:
        for s in stores:
            s.close()
    assert max(sum(1 for t in stamps if start <= t < start + 60) for start in stamps) == 19
    assert clock.slept >= 120  # 40 sends at 19 a minute take two more windows


@pytest.mark.parametrize("backend", ["sqlite", "postgres_url", "mysql_url"])
def test_replicas_racing_for_one_robot_never_exceed_the_limit(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """Four threads, each with its own store connection, reserve 40 sends on one robot at once."""
    url = f"sqlite:///{tmp_path / 'race.db'}" if backend == "sqlite" else request.getfixturevalue(backend)
    clock = FakeClock()
    stores = [StateStore(url) for _ in range(4)]
    stamps: list[int] = []
    lock = threading.Lock()

    def replica(store: StateStore) -> None:
        pacer = RobotPacer(RobotSends(store), now=clock.now, sleep=clock.sleep)
        for _ in range(10):
            stamp = pacer.acquire("robot-key")
            with lock:
                stamps.append(stamp)

    try:
        threads = [threading.Thread(target=replica, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for s in stores:
            s.close()
    assert len(stamps) == 40
    assert max(sum(1 for t in stamps if start <= t < start + 60_000) for start in stamps) <= 19


def test_pacing_in_real_time_with_a_short_window_refuses_nothing(store: StateStore) -> None:
    """The same pacing against the sandbox's real clock, scaled down to a 0.5-second window."""
    with Sandbox(robots=RobotRoom(limit=5, window=0.5)) as sandbox:
        sandbox.add_robot("sales-group", TOKEN, SECRET, "日报")
        client = robot_client(store, limit=4, window=0.5, margin=0.1)
        robot = Robot("sales-group", f"{sandbox.url}/robot/send?access_token={TOKEN}", SECRET, "日报")
        for n in range(11):
            client.send(robot, message(n))
        assert [c["errcode"] for c in sandbox.robots.calls()] == [0] * 11


def test_too_fast_is_retried_after_the_window_and_busy_at_once(box: Sandbox, store: StateStore) -> None:
    clock = FakeClock(start=datetime.now(UTC).timestamp())
    client = robot_client(store, clock)
    robot = Robot("sales-group", f"{box.url}/robot/send?access_token={TOKEN}", None, "日报")
    box.robots.add("sales-group", TOKEN, None, "日报")
    box.robots.fail_next("sales-group", 410100)
    client.send(robot, message(1))
    assert 60 <= clock.slept < 61
    box.robots.fail_next("sales-group", -1)
    client.send(robot, message(2))
    assert [c["errcode"] for c in box.robots.calls()] == [410100, 0, -1, 0]
    assert len(box.robot_messages()) == 2


def test_a_resend_with_the_same_msg_uuid_posts_once_and_each_call_is_counted(
    box: Sandbox, store: StateStore
) -> None:
    counted: list[tuple[str, int | None]] = []
    client = RobotClient(RobotPacer(RobotSends(store)), on_call=lambda e, code, _s: counted.append((e, code)))
    robot = Robot("sales-group", f"{box.url}/robot/send?access_token={TOKEN}", SECRET, "日报")
    client.send(robot, message(7))
    client.send(robot, message(7))
    assert len(box.robots.calls()) == 2 and len(box.robot_messages()) == 1
    assert counted == [("robot_send", 0), ("robot_send", 0)]  # the monthly quota counts robot messages


# -- two channels -------------------------------------------------------------------------------


def test_a_report_to_both_channels_with_the_robot_failing_retries_the_robot_alone(
    tmp_path: Path, box: Sandbox
) -> None:
    with services(write_config(tmp_path / "p", box.url), box) as svc:
        box.robots.fail_next("sales-group", 400102)  # the robot is disabled, then enabled again
        assert run_once(svc) == "partial"
        [run] = svc.ledger.history("daily")
        assert "robot sales-group refused" in (run.error or "") and "400102" in (run.error or "")
        assert [b.get("unit", "") for b in run.batches["refused"]] == ["robot:sales-group"]
        assert len(box.calls("asyncsend_v2")) == 1 and box.robot_messages() == []
        assert retry_due(svc) == "sent"
    assert len(box.calls("asyncsend_v2")) == 1  # the work notification was not sent again
    assert len(box.robot_messages()) == 1
    [run] = svc.ledger.history("daily")
    assert sorted(b.get("unit", "") for b in run.batches["accepted"]) == ["", "robot:sales-group"]


def test_a_report_to_both_channels_with_the_work_notification_failing_retries_it_alone(
    tmp_path: Path, box: Sandbox
) -> None:
    with services(write_config(tmp_path / "p", box.url), box) as svc:
        box.set_options(force_errcode={"asyncsend_v2": 60011}, force_errcode_times=1)  # no permission, once
        assert run_once(svc) == "partial"
        [run] = svc.ledger.history("daily")
        assert "60011" in (run.error or "") and run.next_retry_at is not None
        assert [b.get("unit", "") for b in run.batches["accepted"]] == ["robot:sales-group"]
        assert len(box.robot_messages()) == 1, "the group got its message although the app was refused"
        assert retry_due(svc) == "sent"
    assert len(box.robot_messages()) == 1  # the robot was not posted again
    assert [c["errcode"] for c in box.calls("asyncsend_v2")] == [88, 0]
    [run] = svc.ledger.history("daily")
    assert sorted(b.get("unit", "") for b in run.batches["accepted"]) == ["", "robot:sales-group"]


def test_a_retry_that_fails_after_the_robot_got_it_keeps_the_run_partial(
    tmp_path: Path, box: Sandbox
) -> None:
    """The group was reached: a later failure (here 90020) must not record the run as failed."""
    with services(write_config(tmp_path / "p", box.url), box) as svc:
        box.set_options(force_errcode={"asyncsend_v2": 60011}, force_errcode_times=1)
        assert run_once(svc) == "partial"
        box.set_options(force_errcode={"asyncsend_v2": 90020}, force_errcode_times=1)
        assert retry_due(svc) == "partial"
    [run] = svc.ledger.history("daily")
    assert (run.state, run.next_retry_at) == ("partial", None), "no retry into a used-up quota"
    assert [b.get("unit", "") for b in run.batches["accepted"]] == ["robot:sales-group"]


def test_a_robot_only_report_that_fails_is_failed_and_retried(tmp_path: Path, box: Sandbox) -> None:
    path = write_config(tmp_path / "p", box.url)
    path.write_text(path.read_text(encoding="utf-8").replace("    to: [leads]\n", ""), encoding="utf-8")
    with services(path, box) as svc:
        box.robots.fail_next("sales-group", 400013)
        assert run_once(svc) == "failed"
        assert retry_due(svc) == "sent"
    assert box.calls("asyncsend_v2") == [] and len(box.robot_messages()) == 1


# -- CLI and secrets ------------------------------------------------------------------------------


def test_send_robot_in_the_sandbox_and_preview_shows_the_group_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, "https://oapi.dingtalk.com")
    code = main(
        ["send", "daily", "--robot", "sales-group", "--sandbox", "-c", str(path), "--at", "2026-11-28T10:00"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "robot      sales-group: posted" in out and "sent       " not in out  # no work notification
    assert main(["preview", "daily", "--json", "-c", str(path), "--at", "2026-11-28T10:00"]) == 0
    preview = json.loads(capsys.readouterr().out)
    group = preview["robots"]["sales-group"]
    assert group["msg"]["msgtype"] == "markdown" and group["msg"]["at"]["atMobiles"] == ["13800000000"]
    assert group["rows_shown"] > preview["rows_shown"] and group["msg_bytes"] <= 20000
    assert main(["send", "daily", "--robot", "nosuch", "--sandbox", "-c", str(path)]) == 1
    assert "no robot named 'nosuch'" in capsys.readouterr().err


def test_webhook_tokens_and_secrets_never_reach_errors_logs_history_or_output(
    tmp_path: Path, box: Sandbox, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    path = write_config(tmp_path / "p", box.url, secret="SECwrongwrongwrong123")
    closed = Robot("dead", f"http://127.0.0.1:{free_port()}/robot/send?access_token={TOKEN}", SECRET, None)
    with services(path, box) as svc:
        assert run_once(svc) == "partial"
        assert svc.robots is not None
        with pytest.raises(DeliveryError) as caught:
            svc.robots.client.send(closed, message())  # connection refused: the URL is in requests' text
        [run] = svc.ledger.history("daily")
    main(["history", "--json", "-c", str(path)])
    seen = [str(caught.value), caplog.text, json.dumps(run.to_dict(), ensure_ascii=False),
            capsys.readouterr().out, repr(load_config(path))]  # fmt: skip
    assert "could not reach DingTalk" in seen[0]
    for text in seen:
        assert TOKEN not in text and SECRET not in text and "SECwrongwrongwrong123" not in text


def test_a_robots_only_config_sends_without_a_dingtalk_app(
    tmp_path: Path, box: Sandbox, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DINGTALK_API_BASE", box.url)  # the sandbox stands in for DingTalk's robot endpoint
    path = write_config(tmp_path, box.url)
    text = path.read_text(encoding="utf-8")
    start, end = text.index("dingtalk:"), text.index("robots:")
    path.write_text(text[:start] + text[end:].replace("    to: [leads]\n", ""), encoding="utf-8")
    code = main(["send", "daily", "-c", str(path), "--at", "2026-11-28T10:00"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "robot      sales-group: posted" in out
    assert len(box.robot_messages()) == 1 and box.calls() == []  # no gettoken, no work notification
    main(["history", "--json", "-c", str(path)])
    [run] = json.loads(capsys.readouterr().out)
    assert run["state"] == "sent" and run["trigger"] == "manual"
    assert [b["unit"] for b in run["batches"]["accepted"]] == ["robot:sales-group"]


def test_a_standalone_sandbox_learns_robots_from_its_control_api(store: StateStore) -> None:
    with Sandbox() as sandbox:
        robot = Robot("ops", f"{sandbox.url}/robot/send?access_token=ops-token-123456", None, "日报")
        with pytest.raises(DeliveryError, match="400101"):
            robot_client(store).send(robot, message())
        ops = [{"name": "ops", "token": "ops-token-123456", "keyword": "日报"}]
        answer = requests.post(f"{sandbox.url}/_sandbox/robots", json=ops, timeout=10)
        assert answer.json() == {"ok": True}
        robot_client(store).send(robot, message())
        assert [m["robot"] for m in sandbox.robot_messages()] == ["ops"]
        bad = requests.post(f"{sandbox.url}/_sandbox/robots", json=[{"name": "x"}], timeout=10)
        assert bad.status_code == 400 and "needs a name and a token" in bad.json()["error"]


def test_the_daemon_sends_to_both_channels_and_retries_the_refusing_robot_alone(
    tmp_path: Path, box: Sandbox, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.daemon_inprocess import FakeClock as DaemonClock
    from tests.daemon_inprocess import even_second_now, inprocess_daemon

    path = write_config(tmp_path / "p", box.url)
    text = path.read_text(encoding="utf-8").replace(
        "    retries: 2", "    run_on_start: true\n    retries: 2"
    )
    path.write_text(text, encoding="utf-8")
    box.robots.fail_next("sales-group", -1, -1, -1)  # busy three times: this attempt gives up on the robot
    with inprocess_daemon(path, box, state_url, DaemonClock(even_second_now()), monkeypatch) as daemon:
        daemon.run_until(lambda: daemon.events.events("run.sent", report="daily"), "the retried run")
        partial = daemon.events.events("run.partial", report="daily")
    assert len(partial) == 1 and "robot sales-group refused" in str(partial[0].fields.get("error"))
    assert len(box.calls("asyncsend_v2")) == 1 and len(box.robot_messages()) == 1
    assert [c["errcode"] for c in box.robots.calls()] == [-1, -1, -1, 0]


def test_validate_checks_mentions_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, "https://oapi.dingtalk.com")
    text = path.read_text(encoding="utf-8").replace(
        'mention: {mobiles: ["13800000000"], userids: [manager4974]}',
        'mention: {mobiles: ["12345"], everyone: true}',
    )
    path.write_text(text, encoding="utf-8")
    code, out = validate(path, capsys)
    assert code == 1
    assert "reports.yaml:25: reports.daily.mention.mobiles: '12345' is not an 11-digit mainland mobile" in out
    assert "reports.daily.mention.everyone: unknown key 'everyone'; allowed: mobiles, userids, all" in out


@pytest.mark.parametrize(
    ("errcode", "hint"),
    [
        (310000, "keyword is in every message"),
        (400101, "copy the webhook URL again"),
        (400106, "the robot was removed"),
        (400102, "enable the robot"),
        (400013, "a group that exists"),
        (430101, "refused the content"),
        (430104, "refused the content"),
    ],
)
def test_permanent_refusals_stop_at_once_with_a_hint_naming_the_robot(
    box: Sandbox, store: StateStore, errcode: int, hint: str
) -> None:
    robot = Robot("sales-group", f"{box.url}/robot/send?access_token={TOKEN}", SECRET, "日报")
    box.robots.fail_next("sales-group", errcode)
    with pytest.raises(DeliveryError) as caught:
        robot_client(store).send(robot, message())
    assert caught.value.errcode == errcode and not caught.value.retryable
    assert caught.value.hint is not None and caught.value.hint.startswith("robot 'sales-group': ")
    assert hint in caught.value.hint
    assert len(box.robots.calls()) == 1


def test_the_quota_forecast_counts_one_call_per_robot_per_run(tmp_path: Path) -> None:
    from dispatcher.ops.quota import calls_per_run

    config = load_config(write_config(tmp_path, "https://oapi.dingtalk.com"))
    report = config.reports["daily"]
    # one asyncsend_v2 batch (receipts are off: no getsendresult) and one robot message
    assert calls_per_run(config, report) == 2
    assert calls_per_run(config, report.model_copy(update={"robots": []})) == 1
