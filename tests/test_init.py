"""`dispatcher init`: a fresh project that validate, preview and run --sandbox accept as it is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from dispatcher.cli.main import main
from dispatcher.config.schema import shipped
from tests.conftest import REPO
from tests.daemon_harness import Daemons, wait_until


def test_init_in_an_empty_folder_then_validate_and_preview(tmp_path, capsys, monkeypatch):
    for name in ("DINGTALK_APP_KEY", "DINGTALK_APP_SECRET", "DINGTALK_AGENT_ID", "SHOP_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "new"
    assert main(["init", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "dispatcher validate" in out and "dispatcher doctor" in out
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
        ".env.example", ".gitignore", "queries", "queries/daily_sales.sql", "reports.schema.json",
        "reports.yaml",
    ]  # fmt: skip
    config = folder / "reports.yaml"
    assert config.read_text(encoding="utf-8").startswith(
        "# yaml-language-server: $schema=reports.schema.json\n"
    )
    assert (folder / "reports.schema.json").read_text(encoding="utf-8") == shipped()
    assert {".dispatcher/", "demo.db", ".env"} <= set((folder / ".gitignore").read_text().splitlines())
    env_example = (folder / ".env.example").read_text(encoding="utf-8")
    assert all(
        f"{n}=" in env_example for n in ("DINGTALK_APP_KEY", "DINGTALK_APP_SECRET", "DINGTALK_AGENT_ID")
    )

    assert main(["validate", "-c", str(config)]) == 0
    assert "OK: 1 report" in capsys.readouterr().out
    assert main(["preview", "daily-sales", "-c", str(config), "--json"]) == 0
    preview = json.loads(capsys.readouterr().out)
    assert preview["rows"] == 1 and "每日销售日报" in preview["markdown"]
    assert (folder / "demo.db").exists()


def test_init_refuses_an_existing_reports_yaml_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "reports.yaml").write_text("reports: {}\n", encoding="utf-8")
    assert main(["init", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err
    assert (tmp_path / "reports.yaml").read_text(encoding="utf-8") == "reports: {}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports.yaml"]


def test_init_force_overwrites_and_keeps_the_gitignore_lines(tmp_path, capsys):
    (tmp_path / "reports.yaml").write_text("reports: {}\n", encoding="utf-8")
    (tmp_path / ".gitignore").write_text("node_modules/\n.env\n", encoding="utf-8")
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert "daily-sales" in yaml.safe_load((tmp_path / "reports.yaml").read_text(encoding="utf-8"))["reports"]
    lines = (tmp_path / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["node_modules/", ".env"] and lines.count(".env") == 1 and "demo.db" in lines


def test_init_into_a_file_is_a_clear_error(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("x", encoding="utf-8")
    assert main(["init", str(target)]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_the_project_query_is_the_shipped_one():
    packaged = REPO / "dispatcher" / "ops" / "project" / "queries" / "daily_sales.sql"
    assert packaged.read_text(encoding="utf-8") == (REPO / "queries" / "daily_sales.sql").read_text("utf-8")


def test_a_fresh_project_runs_in_the_sandbox(daemons: Daemons, tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    assert main(["init", str(folder)]) == 0
    env = {k: v for k, v in daemons.env().items() if not k.startswith(("DINGTALK_", "DISPATCHER_", "SHOP_"))}
    daemon = daemons.start(folder / "reports.yaml", "--sandbox", "--sandbox-port", "0", env=env)

    first = wait_until(lambda: daemon.stdout().splitlines()[:1], "the sandbox address on stdout", 30)
    found = re.fullmatch(r"sandbox inbox: (http://127\.0\.0\.1:\d+/)", first[0])
    assert found, first

    def delivered() -> list[dict[str, Any]]:
        return requests.get(found[1] + "_sandbox/messages", timeout=5).json()

    messages = wait_until(delivered, "a message in the sandbox inbox", timeout=120, every=0.5)
    assert {m["msg"]["markdown"]["title"] for m in messages} == {"每日销售日报"}


# -- links planted in DIR (issue 22, item 15) ------------------------------------------------------


def _plant(folder: Path, outside: Path, target: str, *, dangling: bool) -> Path:
    """A symlink at DIR/target pointing at `outside` (a missing file, or one with content)."""
    aim = outside / target.replace("/", "_")
    if not dangling:
        aim.write_text("outside, do not touch\n", encoding="utf-8")
    link = folder / target
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(aim)
    return aim


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("dangling", [True, False])
@pytest.mark.parametrize(
    "target", ["reports.yaml", "queries/daily_sales.sql", ".env.example", "reports.schema.json", ".gitignore"]
)
def test_init_never_follows_a_planted_file_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, dangling: bool, force: bool
) -> None:
    folder, outside = tmp_path / "project", tmp_path / "outside"
    outside.mkdir()
    aim = _plant(folder, outside, target, dangling=dangling)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert main(["init", str(folder), *(["--force"] if force else [])]) == 1
    err = capsys.readouterr().err
    assert f"{folder / target} is a symbolic link" in err and "nothing was written" in err
    assert "Traceback" not in err
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert (not aim.exists()) if dangling else aim.read_text(encoding="utf-8") == "outside, do not touch\n"


@pytest.mark.parametrize("force", [False, True])
def test_init_refuses_a_planted_directory_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], force: bool
) -> None:
    folder, outside = tmp_path / "project", tmp_path / "outside"
    outside.mkdir()
    folder.mkdir()
    (folder / "queries").symlink_to(outside, target_is_directory=True)
    assert main(["init", str(folder), *(["--force"] if force else [])]) == 1
    err = capsys.readouterr().err
    assert f"{folder / 'queries'} is a symbolic link" in err and "nothing was written" in err
    assert list(outside.iterdir()) == [] and sorted(p.name for p in folder.iterdir()) == ["queries"]
