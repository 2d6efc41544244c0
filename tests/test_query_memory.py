"""Issue 15, part 4: memory is bounded by max_rows and max_bytes, not by what the query could return.

Each case runs `dispatcher preview` as its own process and reads that process's peak RSS from wait4.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bench.common import clean_env, dispatcher_cmd, run_child
from dispatcher.cli.main import main
from dispatcher.config.check import load_config
from tests.conftest import run_cli, write

PEAK_MB = 400  # pandas and the interpreter take ~150 MB; 10,000 capped rows take a few more

BLOBS = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) "
    "SELECT i, zeroblob(200000) AS blob FROM n"
)


def project(folder: Path, url: str, sql: str, extra: str = "") -> Path:
    return write(
        folder / "reports.yaml",
        f"""\
        sources: {{db: "{url}"}}
        recipients: {{team: {{userids: [u1]}}}}
        reports:
          big:
            title: big
            schedule: "0 9 * * *"
            source: db
            sql: "{sql}"
            to: [team]
            {extra}
        """,
    )


def preview(config: Path):
    return run_child(dispatcher_cmd("preview", "big", "-c", str(config), "--json"), env=clean_env())


@pytest.fixture(params=["postgres", "mysql"])
def huge_series(request) -> tuple[str, str]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        # In the select list generate_series streams; in FROM PostgreSQL first materialises all
        # 20 M rows (seconds) before the first one reaches the client. Both are 20 M rows to it.
        return url, "SELECT g, md5(g::text) AS h FROM (SELECT generate_series(1, 20000000) AS g) AS s"
    url = request.getfixturevalue("mysql_url")
    return url, "SELECT seq, MD5(seq) AS h FROM seq_1_to_10000000"


def test_a_huge_server_result_is_read_only_up_to_the_row_cap(huge_series, tmp_path):
    url, sql = huge_series
    child = preview(project(tmp_path, url, sql))
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout)["rows"] == 10_000
    assert child.peak_rss_mb < PEAK_MB, f"peak RSS {child.peak_rss_mb:.0f} MB"


def test_big_blobs_stop_at_max_bytes_with_a_clear_error(tmp_path):
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    child = preview(project(tmp_path, "sqlite:///empty.db", BLOBS))
    assert child.returncode == 1, child.stdout
    assert "report 'big'" in child.stderr and "max_bytes (64MB)" in child.stderr
    assert "Traceback" not in child.stderr
    assert child.peak_rss_mb < PEAK_MB, f"peak RSS {child.peak_rss_mb:.0f} MB"


def test_max_bytes_takes_sizes_and_a_raised_cap_lets_the_result_through(tmp_path, capsys):
    """In-process: this one measures no memory, and a process start costs seconds."""
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    small = BLOBS.replace("i < 10000", "i < 20")  # 20 × 200 KB = 4 MB
    refused = project(tmp_path, "sqlite:///empty.db", small, "max_bytes: 1MB")
    assert main(["preview", "big", "-c", str(refused), "--json"]) == 1
    assert "max_bytes (1MB)" in capsys.readouterr().err
    allowed = project(tmp_path, "sqlite:///empty.db", small, "max_bytes: 8 MB")
    assert load_config(allowed).reports["big"].max_bytes == 8 * 1024 * 1024
    assert main(["preview", "big", "-c", str(allowed), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 20


def test_a_bad_max_bytes_is_a_config_error_with_line(tmp_path):
    config = project(tmp_path, "sqlite:///empty.db", "SELECT 1", "max_bytes: lots")
    done = run_cli("validate", "-c", str(config))
    assert done.returncode == 1
    assert "reports.yaml:10: reports.big.max_bytes" in done.stderr and "64MB" in done.stderr


@pytest.mark.parametrize(
    "fixture,sql",
    [
        ("postgres_url", "SELECT g, repeat('x', 1000) AS {alias} FROM generate_series(1, 10000000) AS g"),
        ("mysql_url", "SELECT seq, REPEAT('x', 1000) AS {alias} FROM seq_1_to_10000000"),
    ],
)
def test_max_bytes_stops_a_server_result_without_reading_the_rest(request, fixture, sql):
    import uuid

    from dispatcher.errors import QueryError
    from dispatcher.sources.query import Sources, SourceSpec, run_query
    from tests.daemon_harness import wait_until
    from tests.test_query_servers import still_running

    url = request.getfixturevalue(fixture)
    # The alias tells this test's query apart from other sessions' on the same server.
    alias = f"pad_{uuid.uuid4().hex[:12]}"
    sources = Sources({"db": SourceSpec("db", url)})
    try:
        with pytest.raises(QueryError, match="max_bytes"):
            run_query(
                sources,
                "db",
                sql.format(alias=alias),
                {},
                max_rows=10_000_000,
                max_bytes=1024 * 1024,
                timeout=600,
                report="r",
            )
        # Stopping means the server no longer produces the other 10 GB, not that the client
        # read them all and then complained.
        wait_until(lambda: not still_running(url, alias), "the server to stop the query", timeout=60)
        assert run_query(sources, "db", "SELECT 1 AS one", {}, max_rows=1, timeout=10).rows == 1
    finally:
        sources.dispose()
