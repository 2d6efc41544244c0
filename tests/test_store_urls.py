"""A state URL dispatcher cannot use is refused clearly: a missing driver names the extra to install,
a malformed URL is a config error with file:line (or names DISPATCHER_STATE_URL), never an internal error.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

CONFIG = "reports.yaml"

# The real CLI, with the driver made unimportable as if the extra were not installed.
CLI_WITHOUT = """
import sys
sys.modules[{module!r}] = None
from dispatcher.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    "module,url,extra",
    [
        ("psycopg", "postgresql+psycopg://u:secretpw@127.0.0.1:1/x", "dingtalk-report-dispatcher[postgres]"),
        ("psycopg", "postgresql://u:secretpw@127.0.0.1:1/x", "dingtalk-report-dispatcher[postgres]"),
        ("pymysql", "mysql+pymysql://u:secretpw@127.0.0.1:1/x", "dingtalk-report-dispatcher[mysql]"),
        ("pymysql", "mariadb://u:secretpw@127.0.0.1:1/x", "dingtalk-report-dispatcher[mysql]"),
    ],
)
def test_a_state_url_without_its_driver_names_the_extra_to_install(
    project: Path, module: str, url: str, extra: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CLI_WITHOUT.format(module=module), "history", "-c", str(project / CONFIG)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**_env(), "DISPATCHER_STATE_URL": url},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"pip install '{extra}'" in done.stderr, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert "secretpw" not in done.stderr


@pytest.mark.parametrize(
    "url,message",
    [
        ("not a url", "not a usable database URL"),
        ("postgresql://u:secretpw@h:port/x", "the port must be a number"),
        ("oracle://u:secretpw@h/x", "unsupported database"),
        ("sqlite://", "in-memory SQLite state store"),
    ],
)
def test_a_malformed_state_key_fails_validate_with_line(project: Path, url: str, message: str) -> None:
    config = project / "reports.yaml"
    text = config.read_text(encoding="utf-8").replace(
        "timezone: Asia/Shanghai\n", f'timezone: Asia/Shanghai\nstate: "{url}"\n'
    )
    config.write_text(text, encoding="utf-8")
    done = run_cli("validate", "-c", str(config), env={"DISPATCHER_STATE_URL": ""})
    assert done.returncode == 1, done.stdout
    assert "reports.yaml:2: state:" in done.stderr and message in done.stderr, done.stderr
    assert "secretpw" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [("history",), ("send", "daily", "--dry-run")])
def test_a_malformed_env_state_url_is_a_clear_error(project: Path, command: tuple[str, ...]) -> None:
    done = run_cli(*command, "-c", str(project / "reports.yaml"), env={"DISPATCHER_STATE_URL": "not a url"})
    assert done.returncode == 1, done.stdout
    assert "DISPATCHER_STATE_URL: not a usable database URL" in done.stderr, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "DISPATCHER_STATE_URL"}
