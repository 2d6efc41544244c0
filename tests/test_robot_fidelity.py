"""Group robots against what DingTalk's robot server really does (issue 24, items 2, 3, 8 and 9).

Every send goes over real HTTP to the sandbox's `/robot/send`; the codes seen in the wild (130101,
460101, 300001) are answered by it, the 20,000-byte limit and the keyword rule are its own.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from dispatcher.cli.main import main
from dispatcher.errors import DeliveryError
from dispatcher.robot import errors as robot_errors
from dispatcher.robot.client import Robot
from dispatcher.robot.message import Mentions, RobotMessage, msg_uuid, robot_body
from dispatcher.robot.webhook import signed_url
from dispatcher.sandbox import Sandbox
from dispatcher.store.db import StateStore
from tests.test_robots import FIRE, SECRET, TOKEN, FakeClock, box, robot_client, run_once, services, store
from tests.test_robots import write_config as robots_config

__all__ = ["box", "store"]  # the fixtures, shared with test_robots
REPO = Path(__file__).resolve().parents[1]
BIG_SQL = (
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3000) "
    "SELECT '区域' || n AS region, n * 100 AS sales FROM r"
)


def robot(box: Sandbox) -> Robot:
    return Robot("sales-group", f"{box.url}/robot/send?access_token={TOKEN}", SECRET, "日报")


def markdown(text: str, title: str = "销售日报", mentions: Mentions | None = None) -> RobotMessage:
    msg = {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    body, checked = robot_body(msg, mentions or Mentions(), msg_uuid("daily", FIRE, "sales-group", text[:20]))
    return RobotMessage("sales-group", body, checked)


def post(box: Sandbox, body: dict[str, object]) -> int:
    """The sandbox's errcode for `body`, posted straight to it: no client-side check on the way."""
    url = signed_url(f"{box.url}/robot/send?access_token={TOKEN}", SECRET, int(time.time() * 1000))
    return int(requests.post(url, json=body, timeout=10).json()["errcode"])


def wire_bytes(body: dict[str, object]) -> int:
    return len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


# -- item 2: the codes seen in the wild ---------------------------------------------------------


def test_130101_the_older_too_fast_is_retried_after_the_window_like_410100(
    box: Sandbox, store: StateStore
) -> None:
    clock = FakeClock(start=datetime.now(UTC).timestamp())
    box.robots.fail_next("sales-group", 130101)
    robot_client(store, clock).send(robot(box), markdown("### 销售日报\n\n- 华东 100"))
    assert [c["errcode"] for c in box.robots.calls()] == [130101, 0]
    assert 60 <= clock.slept < 61  # the pacing window, not the short backoff of a busy answer
    assert len(box.robot_messages()) == 1


def test_460101_says_the_body_is_over_20000_bytes_with_its_size_and_is_not_retried(
    box: Sandbox, store: StateStore
) -> None:
    message = markdown("### 销售日报\n\n- 华东 100")
    box.robots.fail_next("sales-group", 460101)
    with pytest.raises(DeliveryError) as caught:
        robot_client(store).send(robot(box), message)
    error = caught.value
    assert error.errcode == 460101 and not error.retryable
    assert "over 20,000 bytes" in error.message and "unexpected" not in error.message
    assert f"{message.size:,} bytes" in error.message
    assert error.hint is not None and "max_msg_bytes" in error.hint and "sales-group" in error.hint
    assert len(box.robots.calls()) == 1


def test_300001_means_the_webhooks_token_does_not_exist(box: Sandbox, store: StateStore) -> None:
    box.robots.fail_next("sales-group", 300001)
    with pytest.raises(DeliveryError) as caught:
        robot_client(store).send(robot(box), markdown("### 销售日报\n\n- 华东 100"))
    error = caught.value
    assert error.errcode == 300001 and not error.retryable and "unexpected" not in error.message
    assert error.hint is not None and "copy the webhook URL again" in error.hint
    assert len(box.robots.calls()) == 1


def test_the_readme_robot_error_table_matches_the_code() -> None:
    from tests.docs_kit import section as docs_section

    section = docs_section("reference/error-codes.md", "Group robots")
    rows = [
        line.strip() for line in section.splitlines() if re.match(r"\s*\| (-?\d+|4301xx|any other) \|", line)
    ]
    assert rows == robot_errors.table_rows()
    for code in ("130101", "460101", "300001", "410100"):
        assert any(row.startswith(f"| {code} |") for row in rows)


# -- item 3: the 20,000-byte limit ----------------------------------------------------------------


def test_the_sandbox_refuses_a_robot_body_over_20000_bytes_with_460101(
    box: Sandbox, store: StateStore
) -> None:
    message = markdown("### 销售日报\n\n" + "- 华东 100\n" * 2000)
    assert message.size > 20000
    with pytest.raises(DeliveryError) as caught:
        robot_client(store).send(robot(box), message)
    assert caught.value.errcode == 460101
    assert box.robot_messages() == []
    fits = markdown("### 销售日报\n\n" + "- 华东 100\n" * 1000)
    assert 10000 < fits.size <= 20000
    robot_client(store).send(robot(box), fits)
    assert len(box.robot_messages()) == 1


def test_a_report_filling_the_whole_budget_is_accepted_by_the_sandbox(tmp_path: Path, box: Sandbox) -> None:
    with services(robots_config(tmp_path / "p", box.url, sql=BIG_SQL), box) as svc:
        assert run_once(svc) == "sent"
    [posted] = box.robot_messages("sales-group")
    assert 19000 < wire_bytes(posted["body"]) <= 20000  # the budget binds, mentions and msgUuid included


def test_a_budget_that_forgets_the_robots_overhead_is_caught_by_the_sandbox(
    tmp_path: Path, box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A regression of the size budget (here: the `at` block and msgUuid left out) fails a run."""
    import dispatcher.run.robots as deliver

    monkeypatch.setattr(deliver, "overhead", lambda msg, mentions: 0)
    with services(robots_config(tmp_path / "p", box.url, sql=BIG_SQL), box) as svc:
        assert run_once(svc) == "partial"
        [run] = svc.ledger.history("daily")
    assert [c["errcode"] for c in box.robots.calls()] == [460101]
    assert "over 20,000 bytes" in (run.error or "")


# -- item 8: mentions in an action card ---------------------------------------------------------


def card(mentions: Mentions) -> dict[str, object]:
    fields = {"title": "销售日报", "markdown": "### 销售日报\n\n- 华东 100", "single_title": "查看详情"}
    msg = {"msgtype": "action_card", "action_card": {**fields, "single_url": "https://example.com/d"}}
    body, _ = robot_body(msg, mentions, "0" * 32)
    return body


def test_an_action_card_mentions_userids_in_its_text_only_without_an_at_block() -> None:
    body = card(Mentions(mobiles=("13800000000",), userids=("manager4974",)))
    assert set(body) == {"msgtype", "actionCard", "msgUuid"}  # no `at` block
    assert body["actionCard"]["text"] == "### 销售日报\n\n- 华东 100\n\n@manager4974"  # type: ignore[index]
    assert "13800000000" not in json.dumps(body)
    assert card(Mentions(all=True))["actionCard"]["text"] == "### 销售日报\n\n- 华东 100"  # type: ignore[index]


def test_an_action_cards_userid_mention_reaches_the_group_and_shows_highlighted(
    box: Sandbox, store: StateStore
) -> None:
    body = card(Mentions(mobiles=("13800000000",), userids=("manager4974",)))
    robot_client(store).send(robot(box), RobotMessage("sales-group", body, body["actionCard"]["text"]))  # type: ignore[index]
    [posted] = box.robot_messages()
    assert posted["body"] == body and posted["at"] == {}
    page = requests.get(f"{box.url}/", timeout=10).text
    assert '<span class="mention">@王建国</span>' in page and "13800000000" not in page
    assert "@manager4974" not in page, "the directory knows manager4974: the chat shows the name"


def test_validate_says_why_a_mobile_mention_in_an_action_card_is_not_highlighted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = robots_config(tmp_path, "https://oapi.dingtalk.com")
    text = path.read_text(encoding="utf-8").replace(
        "    retries: 2", "    msgtype: action_card\n    action_url: https://example.com/d\n    retries: 2"
    )
    path.write_text(text, encoding="utf-8")
    code = main(["validate", "-c", str(path)])
    out = "".join(capsys.readouterr())
    assert code == 0, out  # a warning: the userid mention still works
    assert "reports.yaml:25: reports.daily.mention.mobiles:" in out
    assert "action card mentions only userids" in out
    path.write_text(text.replace('mobiles: ["13800000000"], ', ""), encoding="utf-8")
    assert main(["validate", "-c", str(path)]) == 0
    assert "mention" not in "".join(capsys.readouterr())


# -- item 9: the keyword, in the title and the text ---------------------------------------------


def test_the_sandbox_looks_for_the_keyword_in_the_title_and_text_only(
    box: Sandbox, store: StateStore
) -> None:
    msg = {"msgtype": "action_card", "action_card": {"title": "销售汇总", "markdown": "- 华东 100",
           "single_title": "日报详情", "single_url": "https://example.com/日报"}}  # fmt: skip
    body, checked = robot_body(msg, Mentions(), "1" * 32)
    assert post(box, body) == 310000  # the button's title and URL are not checked
    with pytest.raises(DeliveryError, match="keyword"):  # and the client knows it before sending
        robot_client(store).send(robot(box), RobotMessage("sales-group", body, checked))
    titled, checked = robot_body(
        {**msg, "action_card": {**msg["action_card"], "title": "销售日报"}}, Mentions(), "2" * 32
    )
    assert post(box, titled) == 0  # the title alone carries it
    robot_client(store).send(robot(box), markdown("- 华东 100", title="销售日报"))
    assert [c["errcode"] for c in box.robots.calls()] == [310000, 0, 0]


def test_validate_catches_a_text_template_that_leaves_the_title_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], box: Sandbox, store: StateStore
) -> None:
    """A text message has no title field: a template without `{{ title }}` loses the keyword."""
    path = robots_config(tmp_path, "https://oapi.dingtalk.com")
    base = path.read_text(encoding="utf-8")
    template = "    template: '今日 {{ n_rows }} 行'\n    retries: 2"
    path.write_text(base.replace("    retries: 2", "    msgtype: text\n" + template), encoding="utf-8")
    assert main(["validate", "-c", str(path)]) == 1
    out = "".join(capsys.readouterr())
    assert "robot 'sales-group' accepts only messages containing its keyword" in out
    assert "a text message has no title field" in out
    # The same template in markdown: the title field carries the keyword, as DingTalk reads it.
    path.write_text(base.replace("    retries: 2", template), encoding="utf-8")
    assert main(["validate", "-c", str(path)]) == 0, "".join(capsys.readouterr())
    robot_client(store).send(robot(box), markdown("今日 3 行", title="销售日报"))
    assert [c["errcode"] for c in box.robots.calls()] == [0]
