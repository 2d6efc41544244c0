"""A chart or file that does not change between fire times still reaches everyone at each fire time.

DingTalk delivers the same content to the same person once a day and answers success for the
repeat (143106 in the receipts, which parts do not read). An image or file message's content is its
media_id, so the media cache is scoped to the fire time: a new fire time uploads again and gets a
new media_id, while a retry of the same fire time reuses its own. Real sandbox over HTTP, real
SQLite files.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatcher.run.runner import execute
from dispatcher.run.services import Services
from dispatcher.sandbox import Sandbox, SandboxOptions
from tests import feature_kit
from tests.conftest import make_shop_db, quick_receipts
from tests.feature_kit import SANDBOX_APP, run_at

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
FIRE = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
LEADS = ["manager4974", "0147282552401293909"]

CONFIG = (
    SANDBOX_APP
    + """\
  leads: {{userids: {leads}}}
reports:
  hourly:
    title: 区域销售
    schedule: "0 * * * *"
    source: shop
    sql: "SELECT region, SUM(amount) AS sales FROM orders GROUP BY region ORDER BY region"
    to: [leads]
    retry_delay: 1s
    chart: {{x: region, y: [sales], kind: bar}}
    attach: {{format: xlsx, name: regions.xlsx}}
"""
)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as box:
        yield box


@pytest.fixture
def services(tmp_path: Path, sandbox: Sandbox) -> Iterator[Services]:
    path = tmp_path / "reports.yaml"
    path.write_text(CONFIG.format(api_base=sandbox.url, leads=json.dumps(LEADS)), encoding="utf-8")
    make_shop_db(tmp_path / "shop.db")
    with feature_kit.services(path, sandbox) as svc:
        yield svc


def run(svc: Services, fire: datetime) -> str:
    return run_at(svc, "hourly", fire)


def inbox(sandbox: Sandbox, userid: str) -> list[str]:
    return [m["msgtype"] for m in sorted(sandbox.messages(userid), key=lambda m: m["id"])]


def forbidden(sandbox: Sandbox) -> Counter[str]:
    return Counter(f["code"] for t in sandbox.tasks() for f in t["send_result"]["forbidden_list"])


def test_an_unchanged_chart_reaches_everyone_at_each_fire_time_of_one_day(
    services: Services, sandbox: Sandbox
) -> None:
    assert run(services, FIRE) == "sent"
    assert run(services, FIRE + timedelta(hours=1)) == "sent"

    for userid in LEADS:
        assert inbox(sandbox, userid) == ["markdown", "image", "file"] * 2, "nothing dropped as a repeat"
    assert forbidden(sandbox) == Counter(), "DingTalk refused nothing as duplicate content (143106)"
    images = [c["body"]["msg"]["image"]["media_id"] for c in sandbox.calls("asyncsend_v2")
              if c["body"]["msg"]["msgtype"] == "image"]  # fmt: skip
    assert len(images) == 2 and images[0] != images[1], "each fire time sends its own media_id"
    uploaded = [c["body"]["media"]["filename"] for c in sandbox.calls("media_upload") if c["errcode"] == 0]
    assert sorted(uploaded) == ["chart.png", "chart.png", "regions.xlsx", "regions.xlsx"]
    assert [r.state for r in services.ledger.history("hourly")] == ["sent", "sent"]


def test_a_retry_of_the_same_fire_time_reuses_its_uploads(services: Services, sandbox: Sandbox) -> None:
    # the markdown and the image go out; the file is refused once, and the retry sends only the file
    sandbox.set_options(force_errcode={"asyncsend_v2": 60011}, force_errcode_after=2, force_errcode_times=1)
    assert run(services, FIRE) == "partial"
    [due] = services.ledger.due_retries(datetime.now(UTC) + timedelta(hours=1))
    claimed = services.ledger.claim_retry(due, "another-replica")
    assert claimed is not None
    assert execute(services, services.config.reports["hourly"], claimed) == "sent"
    assert len([c for c in sandbox.calls("media_upload") if c["errcode"] == 0]) == 2, "no new upload"
    for userid in LEADS:
        assert inbox(sandbox, userid) == ["markdown", "image", "file"]


def test_dispatcher_send_at_two_fire_times_delivers_the_chart_twice(
    project: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dispatcher.cli.main import main

    path = project / "reports.yaml"
    text = path.read_text(encoding="utf-8").replace('schedule: "0 9 * * *"', 'schedule: "0 * * * *"')
    path.write_text(text + "    chart: {x: region, y: [sales]}\n", encoding="utf-8")
    quick_receipts(path)
    opts = sandbox.options
    env = {"TEST_DT_KEY": opts.app_key, "TEST_DT_SECRET": opts.app_secret,
           "TEST_DT_AGENT": str(opts.agent_id), "DINGTALK_API_BASE": sandbox.url}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    media_ids = []
    for at in ("2026-11-28T09:30+08:00", "2026-11-28T10:30+08:00"):
        assert main(["send", "daily", "-c", str(path), "--at", at]) == 0
        out = capsys.readouterr().out
        assert "parts      markdown, image" in out
        [line] = [x for x in out.splitlines() if x.startswith("media      chart.png (")]
        media_ids.append(line.rsplit(": ", 1)[1])
        assert "receipts   unread 2 · read 0 · invalid 0 · forbidden 0 ·" in out
    assert media_ids[0].startswith("@lA") and media_ids[0] != media_ids[1]
    for userid in LEADS:
        assert inbox(sandbox, userid) == ["markdown", "image"] * 2
    assert forbidden(sandbox) == Counter()
