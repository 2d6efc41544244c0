"""The command line as a new user types it: `-c` on either side of the command, `-V`."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher import __version__
from dispatcher.cli.main import build_parser
from tests.conftest import run_cli


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_flag_prints_the_version(flag):
    result = run_cli(flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"dispatcher {__version__}"


@pytest.mark.parametrize("before", [True, False])
def test_config_option_works_before_or_after_the_command_from_another_folder(project, tmp_path, before):
    config = str(project / "reports.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ["-c", config, "list"] if before else ["list", "-c", config]
    result = run_cli(*args, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert "daily" in result.stdout and "0 9 * * *" in result.stdout


def test_config_option_before_the_command_reaches_validate(project, tmp_path):
    result = run_cli("-c", str(project / "reports.yaml"), "validate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{project / 'reports.yaml'}: OK" in result.stdout


def test_config_option_after_the_command_wins_over_the_one_before():
    args = build_parser().parse_args(["-c", "first.yaml", "list", "-c", "second.yaml"])
    assert args.config == Path("second.yaml")


def test_config_defaults_to_reports_yaml_when_not_given():
    assert build_parser().parse_args(["list"]).config == Path("reports.yaml")


@pytest.mark.parametrize("argv", [["-c", "x.yaml", "sandbox"], ["sandbox", "-c", "x.yaml"]])
def test_sandbox_accepts_the_config_option_on_either_side(argv):
    args = build_parser().parse_args([*argv, "--port", "0"])
    assert args.command == "sandbox" and args.config == Path("x.yaml")


def test_demo_load_takes_the_config_option_before_the_command():
    args = build_parser().parse_args(["-c", "x.yaml", "demo", "load", "--source", "sqlite:///d.db"])
    assert args.config == Path("x.yaml")
