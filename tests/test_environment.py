"""Secrets the way operators keep them: `.env` beside reports.yaml, `NAME_FILE`, and the one list.

The CLI runs in a subprocess here: reading `.env` changes the process environment, which a test
in this process must not leave behind for the next one.
"""

from __future__ import annotations

import ast
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.config.environment import VARIABLES, lookup, read_dotenv
from dispatcher.errors import ConfigError
from dispatcher.sandbox import Sandbox, SandboxOptions
from dispatcher.sandbox.options import ENV_PREFIX
from tests.conftest import REPO, make_shop_db, run_cli


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(), port=0) as running:
        yield running


def project(folder: Path, box: Sandbox) -> Path:
    make_shop_db(folder / "shop.db")
    config = folder / "reports.yaml"
    config.write_text(
        f"""\
timezone: Asia/Shanghai
sources:
  shop: sqlite:///shop.db
dingtalk:
  app_key: ${{DINGTALK_APP_KEY}}
  app_secret: ${{DINGTALK_APP_SECRET}}
  agent_id: ${{DINGTALK_AGENT_ID}}
  api_base: {box.url}
recipients:
  admins: {{userids: [oncall01]}}
reports:
  daily:
    title: 每日销售
    schedule: "0 9 * * *"
    source: shop
    sql: SELECT 1 AS x
    to: [admins]
""",
        encoding="utf-8",
    )
    return config


def env_without(*names: str, **values: str) -> dict[str, str]:
    """The test's environment for the CLI: `names` unset (run_cli merges os.environ), `values` set."""
    import os

    return {**{k: v for k, v in os.environ.items() if k not in names}, **values}


def cli(*args: str, env: dict[str, str]):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "dispatcher", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def doctor_checks(config: Path, env: dict[str, str]) -> tuple[int, dict[str, dict[str, str]]]:
    done = cli("doctor", "-c", str(config), "--json", env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)}


CREDS = ("DINGTALK_APP_KEY", "DINGTALK_APP_SECRET", "DINGTALK_AGENT_ID", "DISPATCHER_STATE_URL")
CREDS_FILES = tuple(n + "_FILE" for n in CREDS)


def test_a_dotenv_beside_reports_yaml_gives_doctor_the_credentials(tmp_path, box):
    config = project(tmp_path, box)
    env = env_without(*CREDS, *CREDS_FILES)
    code, checks = doctor_checks(config, env)
    assert checks["credentials"]["status"] == "FAIL"  # nothing set anywhere yet
    (tmp_path / ".env").write_text(
        "# the app's credentials\nDINGTALK_APP_KEY=dingsandboxkey\n"
        "export DINGTALK_APP_SECRET='sandbox-secret'\n"
        "DINGTALK_AGENT_ID=100000001  # the agent\n",
        encoding="utf-8",
    )
    code, checks = doctor_checks(config, env)
    assert checks["credentials"]["status"] == "OK", checks["credentials"]
    assert checks["gettoken"]["status"] == "OK", checks["gettoken"]  # the secret reached DingTalk intact
    assert "agent id 100000001" in checks["credentials"]["detail"]
    assert code == 0


def test_a_variable_set_in_the_environment_wins_over_dotenv(tmp_path, box):
    config = project(tmp_path, box)
    (tmp_path / ".env").write_text(
        "DINGTALK_APP_KEY=dingsandboxkey\nDINGTALK_APP_SECRET=sandbox-secret\nDINGTALK_AGENT_ID=111\n",
        encoding="utf-8",
    )
    env = env_without(*CREDS_FILES, "DISPATCHER_STATE_URL", DINGTALK_AGENT_ID="100000001")
    _, checks = doctor_checks(config, env)
    assert "agent id 100000001" in checks["credentials"]["detail"]


def test_name_file_gives_the_file_content_without_its_trailing_newline(tmp_path, box):
    config = project(tmp_path, box)
    secret = tmp_path / "secret"
    secret.write_text("sandbox-secret\n", encoding="utf-8")
    env = env_without(*CREDS, *CREDS_FILES, DINGTALK_APP_KEY="dingsandboxkey",
                      DINGTALK_APP_SECRET_FILE=str(secret), DINGTALK_AGENT_ID="100000001")  # fmt: skip
    code, checks = doctor_checks(config, env)
    assert checks["gettoken"]["status"] == "OK", checks["gettoken"]
    assert code == 0
    assert "sandbox-secret" not in json.dumps(checks)


def test_setting_both_name_and_name_file_is_an_error_that_says_so(tmp_path, box):
    config = project(tmp_path, box)
    secret = tmp_path / "secret"
    secret.write_text("sandbox-secret\n", encoding="utf-8")
    env = env_without(
        *CREDS_FILES, DINGTALK_APP_SECRET="sandbox-secret", DINGTALK_APP_SECRET_FILE=str(secret)
    )
    done = cli("validate", "-c", str(config), env=env)
    assert done.returncode == 1
    both = "both DINGTALK_APP_SECRET and DINGTALK_APP_SECRET_FILE are set"
    assert f"reports.yaml:6: dingtalk.app_secret: {both}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "sandbox-secret" not in done.stderr


def test_an_unreadable_name_file_is_a_config_problem_naming_the_file(tmp_path, box):
    config = project(tmp_path, box)
    env = env_without(*CREDS, *CREDS_FILES, DINGTALK_APP_KEY_FILE=str(tmp_path / "nowhere"))
    done = cli("validate", "-c", str(config), env=env)
    assert done.returncode == 1
    assert (
        f"reports.yaml:5: dingtalk.app_key: DINGTALK_APP_KEY_FILE names {tmp_path / 'nowhere'}" in done.stderr
    )
    assert "No such file" in done.stderr


def test_the_state_url_can_come_from_a_file_too(tmp_path, box):
    config = project(tmp_path, box)
    store = tmp_path / "elsewhere.db"
    url_file = tmp_path / "state-url"
    url_file.write_text(f"sqlite:///{store}\n", encoding="utf-8")
    env = env_without(*CREDS, *CREDS_FILES, DISPATCHER_STATE_URL_FILE=str(url_file))
    done = cli("history", "-c", str(config), env=env)
    assert done.returncode == 0, done.stderr
    assert store.exists()
    assert sqlite3.connect(store).execute("SELECT value FROM dispatcher_meta").fetchone()
    both = cli("history", "-c", str(config), env={**env, "DISPATCHER_STATE_URL": f"sqlite:///{store}"})
    assert both.returncode == 1
    assert "both DISPATCHER_STATE_URL and DISPATCHER_STATE_URL_FILE are set" in both.stderr


def test_a_broken_dotenv_line_is_reported_with_its_line(tmp_path, box):
    config = project(tmp_path, box)
    (tmp_path / ".env").write_text("DINGTALK_APP_KEY=x\nthis is not a variable\n", encoding="utf-8")
    done = cli("validate", "-c", str(config), env=env_without(*CREDS, *CREDS_FILES))
    assert done.returncode == 1
    assert f"{tmp_path / '.env'}:2: not a NAME=value line" in done.stderr
    assert "Traceback" not in done.stderr


def test_read_dotenv_takes_values_literally_and_lookup_strips_only_newlines(tmp_path):
    path = tmp_path / ".env"
    path.write_text('A=p$ss${HOME}\nB="two words"\nC=x # note\n', encoding="utf-8")
    assert read_dotenv(path) == {"A": "p$ss${HOME}", "B": "two words", "C": "x"}
    assert read_dotenv(tmp_path / "missing") == {}
    (tmp_path / "s").write_text("  spaced  \r\n\n", encoding="utf-8")
    assert lookup("S", {"S_FILE": str(tmp_path / "s")}) == "  spaced  "
    assert lookup("S", {"S": "plain"}) == "plain" and lookup("S", {}) is None
    path.write_text("=x\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        read_dotenv(path)


def test_init_says_dotenv_is_read(tmp_path):
    done = run_cli("init", str(tmp_path / "p"))
    assert done.returncode == 0, done.stderr
    assert ".env" in done.stdout and "is read" in done.stdout
    example = (tmp_path / "p" / ".env.example").read_text(encoding="utf-8")
    assert "reads .env beside reports.yaml" in example and "_FILE" in example


# -- the one list ------------------------------------------------------------------------------------

NAME = re.compile(r"\b(?:DISPATCHER|DINGTALK)_[A-Z0-9_]*[A-Z0-9]\b|\bDISPATCHER_SANDBOX_\b")
WHOLE_ENVIRONMENT = {  # modules that hand the whole environment on, and to what
    "dispatcher/config/yamlfile.py": "any `${NAME}` in reports.yaml",
    "dispatcher/cli/ops.py": "DISPATCHER_SANDBOX_<OPTION>",
    "dispatcher/app.py": "DISPATCHER_SANDBOX_<OPTION>",
    "dispatcher/config/environment.py": "any `${NAME}` in reports.yaml",
    "dispatcher/config/check.py": "DISPATCHER_ROBOT_ALLOWED_HOSTS",  # and DINGTALK_API_BASE, to the checker
    "dispatcher/ops/doctor_robots.py": "DISPATCHER_ROBOT_ALLOWED_HOSTS",  # read by robot.webhook's own name
}


def _code_strings(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def names_in_code(package: Path = REPO / "dispatcher") -> set[str]:
    """Every DISPATCHER_*/DINGTALK_* name in a string of the package, and what reads os.environ whole."""
    found: set[str] = set()
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).as_posix()
        for text in _code_strings(path):
            found |= {m.removesuffix("_FILE") for m in NAME.findall(text)}
        source = path.read_text(encoding="utf-8")
        for line in source.splitlines():
            if re.search(r"os\.environ\b|getenv\(", line) and not re.search(
                r"""os\.environ(?:\.get\(|\[)\s*["'](?:DISPATCHER|DINGTALK)_""", line
            ):
                assert rel in WHOLE_ENVIRONMENT, (
                    f"{rel}: an environment read the list cannot see: {line.strip()}"
                )
                found.add(WHOLE_ENVIRONMENT[rel])
    if "DISPATCHER_SANDBOX_" in found:  # the prefix the sandbox options are read under
        found.discard("DISPATCHER_SANDBOX_")
        found.add("DISPATCHER_SANDBOX_<OPTION>")
    return found


def listed() -> set[str]:
    return {v.name for v in VARIABLES}


def test_every_variable_the_code_reads_is_in_the_list():
    sandbox = {ENV_PREFIX + f.upper() for f in SandboxOptions.__dataclass_fields__}
    in_code = {n if n not in sandbox else "DISPATCHER_SANDBOX_<OPTION>" for n in names_in_code()}
    assert in_code - listed() == set(), (
        "add these to dispatcher.config.environment.VARIABLES, then run tools/gen_docs.py"
    )


def test_the_check_sees_a_new_read_and_a_read_of_the_whole_environment(tmp_path):
    package = tmp_path / "dispatcher"
    package.mkdir()
    (package / "new.py").write_text(
        'import os\nX = os.environ.get("DISPATCHER_NEW_KNOB")\n', encoding="utf-8"
    )
    assert names_in_code(package) == {"DISPATCHER_NEW_KNOB"}
    (package / "new.py").write_text("import os\nX = dict(os.environ)\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="an environment read the list cannot see"):
        names_in_code(package)


def readme_table(page: str = "README.md") -> dict[str, str]:
    """The table of variables in README.md, or in a page of the manual (both generated)."""
    from tests.docs_kit import section as docs_section

    heading = "Environment variables" if page == "README.md" else "Every variable dispatcher reads"
    section = docs_section(page, heading)
    rows = re.findall(r"^\| (.+?) \| (yes|no) \| (.+) \|$", section, re.MULTILINE)
    return {name.strip("`") if name.count("`") == 2 else name: file_form for name, file_form, _ in rows}


@pytest.mark.parametrize("page", ["README.md", "reference/environment.md"])
def test_the_readme_table_lists_exactly_the_variables_with_their_file_form(page):
    table = readme_table(page)
    assert set(table) == listed()
    for v in VARIABLES:
        assert (table[v.name] == "yes") == v.file_form, v.name
