"""`dispatcher list` and `dispatcher preview` through the CLI, on real SQLite files."""

from __future__ import annotations

import json

from dispatcher.cli import main
from tests.conftest import BASE_CONFIG, run_cli


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
