"""`dispatcher list` and `dispatcher preview` through the CLI, on real SQLite files."""

from __future__ import annotations

import json

import pytest

from dispatcher.cli.main import main
from tests.conftest import BASE_CONFIG, run_cli

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end


def cli_json(capsys, *args: str):
    code = main(list(args))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_list_shows_next_fire_time_after_at_with_offset(project, capsys):
    rows = cli_json(
        capsys,
        "list",
        "-c",
        str(project / "reports.yaml"),
        "--at",
        "2026-11-28T09:00:00+08:00",
        "--json",
    )
    assert rows == [
        {
            "id": "daily",
            "title": "每日销售",
            "schedule": "0 9 * * *",
            "timezone": "Asia/Shanghai",
            "source": "shop",
            "enabled": True,
            "next_fire_time": "2026-11-29T09:00:00+08:00",
            "last_run": None,
        }
    ]


def test_list_naive_at_is_in_the_config_timezone(project, capsys):
    rows = cli_json(capsys, "list", "-c", str(project / "reports.yaml"), "--at", "2026-11-28T08:59", "--json")
    assert rows[0]["next_fire_time"] == "2026-11-28T09:00:00+08:00"


def test_list_text_output(project, capsys):
    assert main(["list", "-c", str(project / "reports.yaml"), "--at", "2026-11-28T10:00+08:00"]) == 0
    out = capsys.readouterr().out
    assert "daily" in out and "2026-11-29T09:00:00+08:00" in out


def test_preview_uses_the_last_fire_time_and_its_dates(project, capsys):
    out = cli_json(
        capsys,
        "preview",
        "daily",
        "-c",
        str(project / "reports.yaml"),
        "--at",
        "2026-11-28T10:30+08:00",
        "--json",
    )
    assert out["fire_time"] == "2026-11-28T09:00:00+08:00"
    assert out["params"] == {"day": "2026-11-27"}
    assert out["rows"] == 2
    assert out["truncated"] is False
    assert out["msg"]["msgtype"] == "markdown"
    assert out["title"] == "每日销售"
    assert "华东" in out["markdown"] and "华南" in out["markdown"]
    assert "数据截至 2026-11-28 09:00" in out["markdown"]
    assert "|" not in out["markdown"]
    assert out["msg_bytes"] == len(json.dumps(out["msg"], ensure_ascii=False, separators=(",", ":")).encode())


def test_preview_before_9_uses_the_previous_day_run(project, capsys):
    out = cli_json(
        capsys,
        "preview",
        "daily",
        "-c",
        str(project / "reports.yaml"),
        "--at",
        "2026-11-29T08:59+08:00",
        "--json",
    )
    assert out["fire_time"] == "2026-11-28T09:00:00+08:00"
    assert out["params"] == {"day": "2026-11-27"}


def test_preview_from_another_working_directory_resolves_paths_against_the_config(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = run_cli(
        "preview",
        "daily",
        "-c",
        str(project / "reports.yaml"),
        "--at",
        "2026-11-28T10:00+08:00",
        "--json",
        cwd=elsewhere,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 2
    assert not (elsewhere / "shop.db").exists()


def test_preview_of_a_writing_report_is_refused_and_changes_nothing(project, capsys):
    text = BASE_CONFIG.replace("    query: daily.sql\n", '    sql: "UPDATE orders SET amount = 0"\n')
    (project / "reports.yaml").write_text(text, encoding="utf-8")
    code = main(["preview", "daily", "-c", str(project / "reports.yaml")])
    err = capsys.readouterr().err
    assert code == 1
    assert "refused a write" in err
    import sqlite3

    total = sqlite3.connect(project / "shop.db").execute("SELECT SUM(amount) FROM orders").fetchone()[0]
    assert total == 1200.5 + 800.25 + 99.25 + 10.0


def test_preview_unknown_report_exit_1_lists_known(project):
    result = run_cli("preview", "nope", "-c", str(project / "reports.yaml"))
    assert result.returncode == 1
    assert "no report named 'nope'" in result.stderr and "daily" in result.stderr
    assert "Traceback" not in result.stderr


def test_preview_skip_on_empty(project, capsys):
    text = BASE_CONFIG.replace("on_empty: send", "on_empty: skip")
    (project / "reports.yaml").write_text(text, encoding="utf-8")
    out = cli_json(
        capsys,
        "preview",
        "daily",
        "-c",
        str(project / "reports.yaml"),
        "--at",
        "2026-12-05T10:00+08:00",
        "--json",
    )
    assert out["rows"] == 0 and out["action"] == "skip" and out["msg"] is None


def test_preview_on_empty_error_exits_1(project, capsys):
    text = BASE_CONFIG.replace("on_empty: send", "on_empty: error")
    (project / "reports.yaml").write_text(text, encoding="utf-8")
    assert (
        main(
            [
                "preview",
                "daily",
                "-c",
                str(project / "reports.yaml"),
                "--at",
                "2026-12-05T10:00+08:00",
            ]
        )
        == 1
    )
    assert "no rows" in capsys.readouterr().err


def test_bad_at_is_a_usage_error(project):
    result = run_cli("preview", "daily", "-c", str(project / "reports.yaml"), "--at", "yesterday-ish")
    assert result.returncode == 2
    assert "ISO-8601" in result.stderr


def test_preview_of_5000_chinese_rows_fits_2048_bytes_through_the_cli(project, capsys):
    import sqlite3

    conn = sqlite3.connect(project / "shop.db")
    surnames, given = "王李张刘陈杨黄赵吴周", "伟芳娜敏静丽强磊军洋"
    conn.execute("CREATE TABLE people (name TEXT, sales REAL)")
    conn.executemany(
        "INSERT INTO people VALUES (?, ?)",
        [(surnames[i % 10] + given[(i // 10) % 10] + given[i % 7], 1000.5 + i) for i in range(5000)],
    )
    conn.commit()
    conn.close()
    text = BASE_CONFIG.replace("    query: daily.sql\n", "    sql: SELECT name, sales FROM people\n")
    (project / "reports.yaml").write_text(text, encoding="utf-8")
    out = cli_json(capsys, "preview", "daily", "-c", str(project / "reports.yaml"), "--json")
    assert out["rows"] == 5000
    assert out["msg_bytes"] <= 2048
    assert len(json.dumps(out["msg"], ensure_ascii=False, separators=(",", ":")).encode()) == out["msg_bytes"]
    lines = out["markdown"].splitlines()
    assert lines[-1].startswith("数据截至 ")
    assert f"另有 {5000 - out['rows_shown']} 行未显示" in out["markdown"]
    assert out["truncated"] is True


def test_row_cap_truncates_and_says_so(project, capsys):
    text = BASE_CONFIG.replace("    on_empty: send\n", "    on_empty: send\n    max_rows: 1\n")
    (project / "reports.yaml").write_text(text, encoding="utf-8")
    out = cli_json(
        capsys,
        "preview",
        "daily",
        "-c",
        str(project / "reports.yaml"),
        "--at",
        "2026-11-28T10:00+08:00",
        "--json",
    )
    assert out["rows"] == 1 and out["truncated"] is True
    assert "截断" in out["markdown"]


def test_shipped_reports_preview_on_a_fresh_copy(tmp_path, capsys, monkeypatch):
    """In-process, then once as a process from another folder (process starts cost seconds each)."""
    import shutil

    from tests.conftest import REPO

    shutil.copy(REPO / "reports.yaml", tmp_path / "reports.yaml")
    shutil.copytree(REPO / "queries", tmp_path / "queries")
    monkeypatch.chdir(tmp_path)
    for report_id in ("daily-sales", "weekly-top", "refunds-alert"):
        out = cli_json(capsys, "preview", report_id, "-c", str(tmp_path / "reports.yaml"), "--json")
        assert out["msg_bytes"] <= 2048
    monkeypatch.undo()
    demo = tmp_path / "demo.db"
    assert demo.exists()
    before = demo.stat().st_mtime_ns
    assert run_cli("preview", "daily-sales", "-c", str(tmp_path / "reports.yaml")).returncode == 0
    assert demo.stat().st_mtime_ns == before  # never regenerated once it exists
