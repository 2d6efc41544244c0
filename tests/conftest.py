from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent

# Shared fixtures, available to every test file without importing them: `postgres_url`, `mysql_url`
# (real servers, a private schema or database each) and `sandbox`, `state_url`, `daemons` (real
# daemon processes). A test file that defines a fixture of the same name overrides it for itself.
pytest_plugins = ["tests.services", "tests.daemon_harness", "tests.clock_edge"]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` run first: on xdist workers they then overlap the many short ones.

    The tests of the demo shop share one xdist worker, which builds it once per session
    (`demo_sqlite`, `demo_server_url`) instead of once on every worker.
    """
    for item in items:
        if {"demo_sqlite", "demo_server_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("demo_shop"))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: order kept otherwise


@pytest.fixture(autouse=True)
def _private_sandbox_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--sandbox` commands deliver to a sandbox already running on the default port (8765): every
    test gets a default port of its own, with nothing on it, so a developer's sandbox (or another
    test's) is never used by accident. Tests of that reuse start a sandbox on this port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("DISPATCHER_SANDBOX_PORT", str(sock.getsockname()[1]))


DEMO_END = date(2026, 11, 28)  # a Saturday: the end date of every demo shop the tests build

BASE_CONFIG = """\
timezone: Asia/Shanghai
sources:
  shop: sqlite:///shop.db
dingtalk:
  app_key: ${TEST_DT_KEY:-}
  app_secret: ${TEST_DT_SECRET:-}
  agent_id: ${TEST_DT_AGENT:-}
recipients:
  leads:
    userids: [manager4974, "0147282552401293909"]
    mobiles: ["13800000000"]
  admins: {userids: [oncall01]}
reports:
  daily:
    title: 每日销售
    schedule: "0 9 * * *"
    source: shop
    query: daily.sql
    params: {day: "{{ yesterday }}"}
    to: [leads]
    on_empty: send
"""


def make_shop_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE orders (id INTEGER PRIMARY KEY, day TEXT, region TEXT, amount REAL);
        INSERT INTO orders (day, region, amount) VALUES
          ('2026-11-27', '华东', 1200.5), ('2026-11-27', '华南', 800.25),
          ('2026-11-27', '华东', 99.25), ('2026-11-26', '华北', 10.0);
        """
    )
    conn.commit()
    conn.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A config folder with reports.yaml, queries/ and a small real SQLite database."""
    (tmp_path / "queries").mkdir()
    (tmp_path / "queries" / "daily.sql").write_text(
        "SELECT region, SUM(amount) AS sales, COUNT(*) AS orders FROM orders "
        "WHERE day = :day GROUP BY region ORDER BY sales DESC\n",
        encoding="utf-8",
    )
    make_shop_db(tmp_path / "shop.db")
    (tmp_path / "reports.yaml").write_text(BASE_CONFIG, encoding="utf-8")
    return tmp_path


def quick_receipts(config: Path) -> Path:
    """Read receipts 0.1 s after a send, not the default 5 s: the sandbox's tasks finish at once.

    Added to the written file, not to BASE_CONFIG, whose line numbers tests/test_validate.py checks.
    """
    text = config.read_text(encoding="utf-8")
    agent = "  agent_id: ${TEST_DT_AGENT:-}\n"
    assert agent in text and "receipt_wait" not in text, text
    config.write_text(text.replace(agent, agent + "  receipt_wait: 0.1s\n"), encoding="utf-8")
    return config


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120):
    """Run the real CLI entry point in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session", params=["postgres", "mysql"])
def demo_server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A private PostgreSQL schema or MariaDB database holding the demo shop up to DEMO_END.

    Loaded once per session (a load takes several seconds) and shared: tests only read it.
    """
    from dispatcher.demo import shop as demo
    from tests.services import private_mysql, private_postgres  # after pytest_plugins has loaded it

    with (private_postgres if request.param == "postgres" else private_mysql)() as url:
        engine = sa.create_engine(url)
        try:
            demo.load_demo(engine, DEMO_END)
        finally:
            engine.dispose()
        yield url


@pytest.fixture(scope="session")
def demo_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SQLite demo shop up to DEMO_END, built once per session; tests only read it (or copy it)."""
    from dispatcher.demo import shop as demo

    path = tmp_path_factory.mktemp("demo") / demo.DEMO_FILENAME
    assert demo.ensure_demo_sqlite(path, DEMO_END) is True
    return path


def pytest_configure(config: pytest.Config) -> None:
    """One run id for the whole session, set before xdist starts its workers so they inherit it."""
    if not hasattr(config, "workerinput"):
        from tests.services import RUN_ENV, prefix

        prefix()  # a bad DISPATCHER_TEST_DB_PREFIX stops the run here, with the rule it broke
        os.environ[RUN_ENV] = os.environ.get(RUN_ENV) or __import__("uuid").uuid4().hex[:6]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller drops this run's leftovers once every worker is done (tests/services.sweep)."""
    if not hasattr(session.config, "workerinput"):
        from tests.services import sweep

        left = sweep()
        if left:
            print(f"\ndropped {len(left)} database object(s) this run left behind: {', '.join(left)}")
