"""Issue 15: `validate` checks query_timeout's range and source URLs offline, warns about superuser
logins, and a missing database driver names the package to install.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    "value,message",
    [
        ("0.0009", "at least 1s"),
        ("0.5s", "at least 1s"),
        ("0", "greater than zero"),
        ("999999d", "at most 1 day"),
        ("25h", "at most 1 day"),
    ],
)
def test_query_timeout_out_of_range_is_a_config_error_with_line(project, value, message):
    config = project / "reports.yaml"
    text = config.read_text(encoding="utf-8") + f"    query_timeout: {value}\n"
    config.write_text(text, encoding="utf-8")
    done = run_cli("validate", "-c", str(config))
    assert done.returncode == 1
    assert f"reports.yaml:{len(text.splitlines())}" in done.stderr and message in done.stderr


# --- Malformed URLs and missing drivers --------------------------------------------------------


@pytest.mark.parametrize(
    "url,message",
    [
        ("postgres://", "not a usable database URL"),
        ("not a url", "not a usable database URL"),
        ("mysql+nosuchdriver://u:secretpw@h/db", "unknown database driver"),
        ("oracle://u@h/db", "unsupported database"),
    ],
)
def test_malformed_source_urls_are_refused_at_validate_with_line(project, url, message):
    config = project / "reports.yaml"
    text = config.read_text(encoding="utf-8").replace("shop: sqlite:///shop.db", f'shop: "{url}"')
    config.write_text(text, encoding="utf-8")
    done = run_cli("validate", "-c", str(config))
    assert done.returncode == 1, done.stdout
    assert "reports.yaml:3: sources.shop:" in done.stderr and message in done.stderr
    assert "secretpw" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("url", ["postgresql://postgres@db/x", "mysql+pymysql://root:pw@db/x"])
def test_validate_warns_about_superuser_logins_without_connecting(project, url):
    config = project / "reports.yaml"
    text = config.read_text(encoding="utf-8").replace("shop: sqlite:///shop.db", f'shop: "{url}"')
    config.write_text(text, encoding="utf-8")
    done = run_cli("validate", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "warning" in done.stdout and "sources.shop" in done.stdout and "read-only role" in done.stdout
    assert "pw@" not in done.stdout


DRIVER_SHIM = """
import sys
sys.modules[{module!r}] = None
from dispatcher.errors import QueryError
from dispatcher.sources.query import Sources, SourceSpec, run_query
try:
    run_query(Sources({{"db": SourceSpec("db", {url!r})}}), "db", "SELECT 1", {{}}, max_rows=1, timeout=5)
except QueryError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    "module,url,extra",
    [
        ("psycopg", "postgresql+psycopg://u@127.0.0.1:1/x", "dingtalk-report-dispatcher[postgres]"),
        ("pymysql", "mysql+pymysql://u@127.0.0.1:1/x", "dingtalk-report-dispatcher[mysql]"),
    ],
)
def test_a_missing_driver_names_the_extra_to_install(module, url, extra):
    code = DRIVER_SHIM.format(module=module, url=url)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert f"pip install '{extra}'" in done.stdout, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
