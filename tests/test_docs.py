"""Docs as tests: the manual documents every reports.yaml key and CLI option; CI runs the README's tests."""

from __future__ import annotations

import re

import pytest

from dispatcher.cli.main import build_parser
from dispatcher.config.model import Config, DaemonConfig, DingTalkConfig, RecipientGroup, Report
from tests.conftest import REPO
from tests.docs_kit import manual

README = (REPO / "README.md").read_text(encoding="utf-8")
MANUAL = manual()  # README.md and every page under docs/
INTERNAL = {"id", "path", "missing_vars"}


def config_keys() -> list[str]:
    models = (Config, DaemonConfig, DingTalkConfig, RecipientGroup, Report)
    return sorted({k for m in models for k in m.model_fields if k not in INTERNAL})


@pytest.mark.parametrize("key", config_keys())
def test_every_reports_yaml_key_is_documented(key):
    assert f"`{key}`" in MANUAL or f"`{key}:`" in MANUAL or re.search(rf"`[^`]*\b{key}\b[^`]*`", MANUAL)


def cli_options() -> list[tuple[str, str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    found = []
    for name, subparser in sub.choices.items():
        for action in subparser._actions:
            found += [
                (name, opt) for opt in action.option_strings if opt.startswith("--") and opt != "--help"
            ]
    return found


@pytest.mark.parametrize("command,option", cli_options())
def test_every_cli_option_is_documented(command, option):
    assert option in MANUAL, f"dispatcher {command} {option} is missing from the manual (docs/)"


@pytest.mark.parametrize(
    "command", sorted(next(a for a in build_parser()._actions if a.dest == "command").choices)
)
def test_every_command_is_documented(command):
    assert f"dispatcher {command}" in MANUAL


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quick_start_has_two_commands_and_ci_runs_the_test_command():
    run, test = quick_start_commands()
    assert "dispatcher run" in run
    assert "pytest" in test
    assert test in (REPO / ".ci" / "run").read_text(encoding="utf-8")
