"""Per-recipient reports (issue 12 §1): split by userid and by mobile, identical content sharing a
batch, an unknown mobile, the slice cap, a retry that resends only the failed slice, and preview.
Real sandbox over HTTP, real SQLite data and state files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatcher.cli.main import main
from dispatcher.run.runner import execute
from dispatcher.sandbox import Sandbox, SandboxOptions
from tests.feature_kit import data, run_at, services, texts, write_project

FIRE = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai

STORES = """
CREATE TABLE stores (store TEXT, manager TEXT, mobile TEXT, region TEXT, sales REAL);
INSERT INTO stores VALUES
  ('静安店', 'user001', '13900000001', '华东', 100),
  ('徐汇店', 'user001', '13900000001', '华东', 200),
  ('朝阳店', 'user002', '13900000002', '华北', 300),
  ('无主店', '', NULL, '华南', 400),
  ('空号店', NULL, '13700000000', '华南', 500);
"""

SPLIT = """\
store-daily:
  title: 门店日报
  schedule: "0 8 * * *"
  source: data
  sql: "SELECT store, manager, mobile, region, sales FROM stores ORDER BY store"
  retries: {retries}
  retry_delay: 1s
  split_by: {{column: {column}, kind: {kind}, max_slices: {cap}}}
  {to}
  template: |
    ### {{{{ title }}}} {{{{ split_value | default('全部') }}}}
    {{% for r in rows %}}
    - {{{{ r.store }}}} {{{{ r.sales }}}}
    {{% endfor %}}
"""


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions()) as box:
        yield box


def _project(  # noqa: PLR0913
    folder: Path,
    sandbox: Sandbox,
    *,
    column: str = "manager",
    kind: str = "userid",
    cap: int = 2000,
    to: str = "to: [ops]",
    retries: int = 0,
    template: str | None = None,
) -> Path:
    reports = SPLIT.format(column=column, kind=kind, cap=cap, to=to, retries=retries)
    if template is not None:
        reports = reports.split("  template: |")[0] + "  template: " + json.dumps(template) + "\n"
    path = write_project(folder, sandbox, reports)
    data(folder, STORES)
    return path


def _last_run(svc):  # type: ignore[no-untyped-def]
    [run] = svc.ledger.history("store-daily", limit=1)
    return run


def test_split_by_userid_each_manager_gets_only_their_rows(tmp_path: Path, sandbox: Sandbox) -> None:
    path = _project(tmp_path / "p", sandbox)
    with services(path, sandbox) as svc:
        assert run_at(svc, "store-daily", FIRE) == "sent"
        run = _last_run(svc)
    [mine] = texts(sandbox, "user001")
    assert "静安店" in mine and "徐汇店" in mine and "朝阳店" not in mine and "user001" in mine
    [theirs] = texts(sandbox, "user002")
    assert "朝阳店" in theirs and "静安店" not in theirs
    [whole] = texts(sandbox, "user004")
    assert all(s in whole for s in ("静安店", "朝阳店", "无主店", "空号店")), "to: gets the unsplit report"
    assert "2 rows with an empty split_by value" in (run.error or "")
    units = sorted({b["unit"] for b in run.batches["accepted"]})
    assert units == ["", "slice:user001", "slice:user002"]
    [alert] = texts(sandbox, "oncall01")
    assert "2 rows with an empty split" in alert and "无人接收" in alert, "the admins hear of rows nobody got"
    holders = {
        m["userid"] for m in sandbox.messages() if "无主店" in json.dumps(m["msg"], ensure_ascii=False)
    }
    assert holders == {"user004", "user005"}, "rows without a manager go only to the whole report's group"


def test_identical_content_shares_one_batch(tmp_path: Path, sandbox: Sandbox) -> None:
    template = "### {{ title }}\n{% for r in rows %}- {{ r.store }} {{ r.sales }}\n{% endfor %}"
    path = _project(tmp_path / "p", sandbox, to="", template=template)
    rows = "('静安店', 'east01', '', '华东', 100), ('静安店', 'east02', '', '华东', 100), "
    rows += "('朝阳店', 'user002', '', '华北', 300)"
    data(tmp_path / "p", f"DELETE FROM stores; INSERT INTO stores VALUES {rows};")
    with services(path, sandbox) as svc:
        assert run_at(svc, "store-daily", FIRE) == "sent"
    calls = [c for c in sandbox.calls("asyncsend_v2") if c["errcode"] == 0]
    assert sorted(c["body"]["userid_list"] for c in calls) == ["east01,east02", "user002"]
    assert texts(sandbox, "east01") == texts(sandbox, "east02")


def test_split_by_mobile_with_an_unknown_mobile(tmp_path: Path, sandbox: Sandbox) -> None:
    path = _project(tmp_path / "p", sandbox, column="mobile", kind="mobile", to="")
    with services(path, sandbox) as svc:
        assert run_at(svc, "store-daily", FIRE) == "sent"
        run = _last_run(svc)
    [mine] = texts(sandbox, "user001")
    assert "静安店" in mine and "朝阳店" not in mine and "13900000001" in mine
    assert "朝阳店" in texts(sandbox, "user002")[0]
    holders = {
        m["userid"] for m in sandbox.messages() if "空号店" in json.dumps(m["msg"], ensure_ascii=False)
    }
    assert holders == set(), "an unknown mobile's rows go to nobody else"
    assert "1 mobile (1 row) resolve to nobody" in (run.error or "")
    assert "1 row with an empty split_by value" in (run.error or "")
    assert "137****0000" in (run.error or "") and "13700000000" not in (run.error or "")
    assert sorted({b["unit"] for b in run.batches["accepted"]}) == ["slice:user001", "slice:user002"]
    stored = json.dumps(run.batches)
    assert not any(m in stored for m in ("13900000001", "13900000002")), (
        "the ledger holds userids, not mobiles"
    )


def test_more_slices_than_max_slices_fails_before_sending(tmp_path: Path, sandbox: Sandbox) -> None:
    path = _project(tmp_path / "p", sandbox, cap=1)
    with services(path, sandbox) as svc:
        assert run_at(svc, "store-daily", FIRE) == "failed"
        run = _last_run(svc)
    assert "2 distinct values, more than max_slices (1)" in (run.error or "")
    assert {m["userid"] for m in sandbox.messages()} == {"oncall01"}, "only the admins' failure alert"


def test_a_retry_resends_only_the_failed_slice(tmp_path: Path, sandbox: Sandbox) -> None:
    path = _project(tmp_path / "p", sandbox, to="", retries=2)
    sandbox.set_options(force_errcode={"asyncsend_v2": 60011}, force_errcode_after=1, force_errcode_times=1)
    with services(path, sandbox) as svc:
        assert run_at(svc, "store-daily", FIRE) == "partial"
        assert len(texts(sandbox, "user001")) + len(texts(sandbox, "user002")) == 1
        [due] = svc.ledger.due_retries(datetime.now(UTC) + timedelta(hours=1))
        claimed = svc.ledger.claim_retry(due, "another-replica")
        assert claimed is not None
        assert execute(svc, svc.config.reports["store-daily"], claimed) == "sent"
    assert len(texts(sandbox, "user001")) == 1 and len(texts(sandbox, "user002")) == 1
    calls = sandbox.calls("asyncsend_v2")
    sent = [c for c in calls if c["errcode"] == 0 and c["body"]["userid_list"] != "oncall01"]
    assert len(sent) == 2, "the retry sent the one failed slice, not the whole run again"


def test_preview_json_lists_slices_and_as_shows_one_recipient(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _project(tmp_path / "p", sandbox)
    at = "2026-11-28T09:00"
    assert main(["-c", str(path), "preview", "store-daily", "--at", at, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(s["value"], s["rows"]) for s in out["slices"]] == [("user001", 2), ("user002", 1)]
    assert all(s["msg_bytes"] > 0 for s in out["slices"]) and out["empty_rows"] == 2
    assert main(["-c", str(path), "preview", "store-daily", "--at", at, "--as", "user002"]) == 0
    shown = capsys.readouterr().out
    assert "朝阳店" in shown and "静安店" not in shown
    assert main(["-c", str(path), "preview", "store-daily", "--at", at, "--as", "nobody"]) == 1
    assert "no rows with manager = 'nobody'" in capsys.readouterr().err


def test_a_split_report_needs_no_to_but_a_plain_report_does(tmp_path: Path, sandbox: Sandbox) -> None:
    path = _project(tmp_path / "p", sandbox, to="")
    assert main(["-c", str(path), "validate"]) == 0
    path.write_text(path.read_text(encoding="utf-8").replace("  split_by:", "  x_split_by:"), "utf-8")
    assert main(["-c", str(path), "validate"]) == 1


# -- the shipped reports.yaml: each region manager gets their region ------------------------------

MANAGERS = {"east01": "华东", "user001": "华南", "north01": "华北", "user002": "西南", "user003": "华中",
            "sales_lead": "东北", "east02": "西北"}  # fmt: skip


def test_the_shipped_region_report_gives_each_manager_their_region(
    tmp_path: Path, demo_sqlite: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from tests.conftest import REPO

    shutil.copy(REPO / "reports.yaml", tmp_path / "reports.yaml")
    shutil.copytree(REPO / "queries", tmp_path / "queries")
    shutil.copy(demo_sqlite, tmp_path / demo_sqlite.name)
    config = str(tmp_path / "reports.yaml")
    args = ["-c", config, "preview", "region-daily", "--at", "2026-11-28T09:00", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert {s["value"] for s in out["slices"]} == set(MANAGERS)
    assert out["empty_rows"] == 0 and sum(s["rows"] for s in out["slices"]) == out["rows"]
    for manager, region in MANAGERS.items():
        assert main([*args[:-1], "--as", manager]) == 0
        shown = capsys.readouterr().out
        others = set(MANAGERS.values()) - {region}
        assert f"**{region} " in shown and not any(f"**{r} " in shown for r in others), manager


def test_the_region_query_gives_the_same_rows_on_every_backend(
    demo_sqlite: Path, demo_server_url: str
) -> None:
    import sqlalchemy as sa

    from tests.conftest import REPO

    sql = sa.text((REPO / "queries" / "region_daily.sql").read_text(encoding="utf-8"))
    found = []
    for url in (f"sqlite:///{demo_sqlite}", demo_server_url):
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sql, {"day": "2026-11-27"})
                found.append([(*map(str, r[:4]), float(r[4])) for r in rows])
        finally:
            engine.dispose()
    assert found[0] == found[1] and len(found[0]) > 7


def test_send_delivers_the_slices_and_to_gets_the_whole(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _project(tmp_path / "p", sandbox)
    assert main(["-c", str(path), "send", "store-daily", "--at", "2026-11-28T09:00"]) == 0
    assert "2 slices" in capsys.readouterr().out
    assert "朝阳店" not in texts(sandbox, "user001")[0] and "朝阳店" in texts(sandbox, "user002")[0]
    assert "静安店" in texts(sandbox, "user004")[0] and "朝阳店" in texts(sandbox, "user004")[0]
    assert main(["-c", str(path), "send", "store-daily", "--at", "2026-11-28T09:00", "--to", "user003"]) == 0
    [test_send] = texts(sandbox, "user003")
    assert "静安店" in test_send and "朝阳店" in test_send, "--to: the whole report, a test send"


def test_the_quota_forecast_counts_the_slices_of_the_last_run(tmp_path: Path, sandbox: Sandbox) -> None:
    """A split report's sends depend on its data: the forecast takes them from its last run."""
    from dispatcher.ops.quota import calls_per_run

    path = _project(tmp_path / "p", sandbox)
    with services(path, sandbox) as svc:
        report = svc.config.reports["store-daily"]
        before = calls_per_run(svc.config, report)
        assert run_at(svc, "store-daily", FIRE) == "sent"
        after = calls_per_run(svc.config, report, _last_run(svc))
    assert after == before + 2, "user001's and user002's slices: one send each (receipts: off here)"


def test_a_value_that_is_not_one_userid_is_sent_to_nobody(tmp_path: Path, sandbox: Sandbox) -> None:
    """asyncsend_v2 takes a comma-separated userid_list: 'user001,user002' must not reach both of them,
    and a value longer than DingTalk's 64-character userid is no userid either."""
    folder = tmp_path / "p"
    path = _project(folder, sandbox, to="")
    data(
        folder,
        "DELETE FROM stores;"
        + """
    INSERT INTO stores VALUES
      ('逗号店', 'user001,user002', NULL, '华东', 100),
      ('长号店', '"""
        + "u" * 65
        + """', NULL, '华东', 200),
      ('静安店', 'user001', NULL, '华东', 300);
    """,
    )
    with services(path, sandbox) as svc:
        assert run_at(svc, "store-daily", FIRE) == "sent"
        run = _last_run(svc)
    [mine] = texts(sandbox, "user001")
    assert "静安店" in mine and "逗号店" not in mine and "长号店" not in mine
    assert texts(sandbox, "user002") == [], "user002 never gets a row that is not theirs"
    assert "2 rows with an empty split_by value" in (run.error or "")


# -- what preview and send --dry-run say of a split report (issue 26 item 10) ---------------------

SLICES = "slices     2 slices by manager, each recipient only their rows: user001 (2 rows), user002 (1 row)"


def test_preview_says_how_many_slices_who_gets_which_and_which_is_shown(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _project(tmp_path / "p", sandbox)
    assert main(["-c", str(path), "preview", "store-daily", "--at", "2026-11-28T09:00"]) == 0
    out = capsys.readouterr().out
    assert (
        "slices     2 slices by manager, each recipient only their rows: user001 (2 rows), user002 (1 row)"
        in out
    )
    assert "2 rows without a recipient: sent to nobody" in out
    assert "whole      to: ops gets the whole report" in out
    assert "shown      below: the whole report, as to: gets it" in out
    assert "静安店" in out and "朝阳店" in out and "空号店" in out, "the whole report is what is shown"


def test_preview_without_to_says_it_shows_the_largest_slice_and_shows_it(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _project(tmp_path / "p", sandbox, to="")
    assert main(["-c", str(path), "preview", "store-daily", "--at", "2026-11-28T09:00"]) == 0
    out = capsys.readouterr().out
    assert "whole      no to: nobody gets the whole report" in out
    assert "shown      below: user001's message (2 rows, the largest)" in out
    [shown] = [line for line in out.splitlines() if line.startswith("shown ")]
    assert "whole report" not in shown, "no claim that the whole report is shown"
    message = out.split("-" * 60)[1]
    assert "静安店" in message and "朝阳店" not in message
    assert (
        main(["-c", str(path), "preview", "store-daily", "--at", "2026-11-28T09:00", "--as", "user002"]) == 0
    )
    out = capsys.readouterr().out
    assert "shown      below: user002's message (1 row)" in out


def test_send_dry_run_of_a_split_report_names_the_recipients_of_each_slice(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _project(tmp_path / "p", sandbox, to="")
    assert main(["-c", str(path), "send", "store-daily", "--at", "2026-11-28T09:00", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "(none)" not in out, out
    assert (
        "slices     2 slices by manager, each recipient only their rows: user001 (2 rows), user002 (1 row)"
        in out
    )
    assert "shown      below: user001's message (2 rows, the largest)" in out
    path = _project(tmp_path / "q", sandbox)
    assert main(["-c", str(path), "send", "store-daily", "--at", "2026-11-28T09:00", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "userids    user004, user005 (to: the whole report)" in out
    assert "shown      below: the whole report, as to: gets it" in out
    assert texts(sandbox, "user001") == [] and texts(sandbox, "user004") == [], "a dry run sends nothing"
