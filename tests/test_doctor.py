"""`dispatcher doctor` against the real sandbox, SQLite, PostgreSQL and MariaDB, in process."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dispatcher.cli.main import main
from dispatcher.ops.doctor_sources import GRANTS
from dispatcher.sandbox import Sandbox, SandboxOptions
from tests.conftest import REPO, make_shop_db
from tests.services import unique_name

pytestmark = pytest.mark.calendar  # .ci/calendar runs it again at a month's end, a leap day and a year's end
EXEMPT = {"gettoken", "user_get", "getbymobile"}


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(), port=0) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("DISPATCHER_STATE_URL", "DINGTALK_API_BASE", "DINGTALK_APP_KEY", "DINGTALK_APP_SECRET"):
        monkeypatch.delenv(name, raising=False)


def write_config(
    folder: Path,
    box: Sandbox,
    *,
    sources: dict[str, str] | None = None,
    secret: str = "sandbox-secret",
    mobiles: tuple[str, ...] = ("13800000000",),
    quota: int = 5000,
    extra: str = "",
) -> Path:
    if sources is None:
        make_shop_db(folder / "shop.db")
        sources = {"shop": "sqlite:///shop.db"}
    source_lines = "".join(f"  {name}: {url}\n" for name, url in sources.items())
    first = next(iter(sources))
    text = f"""\
timezone: Asia/Shanghai
sources:
{source_lines}dingtalk:
  app_key: dingsandboxkey
  app_secret: {secret}
  agent_id: 100000001
  api_base: {box.url}
  monthly_quota: {quota}
recipients:
  leads:
    userids: [manager4974]
    mobiles: [{", ".join(f'"{m}"' for m in mobiles)}]
  admins: {{userids: [oncall01]}}
reports:
  daily:
    title: 每日销售
    schedule: "0 9 * * *"
    source: {first}
    sql: SELECT 1 AS x
    to: [leads]
{extra}"""
    path = folder / "reports.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def doctor(config: Path, capsys, *args: str) -> tuple[int, dict[str, dict[str, str]]]:
    code = main(["doctor", "-c", str(config), "--json", *args])
    checks = json.loads(capsys.readouterr().out)
    return code, {c["name"]: c for c in checks}


def statuses(checks: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: c["status"] for name, c in checks.items()}


def test_all_green_on_sqlite_and_the_sandbox_spends_no_quota(tmp_path, box, capsys):
    config = write_config(tmp_path, box)
    code, checks = doctor(config, capsys)
    assert statuses(checks) == {
        "config": "OK", "source shop": "OK", "state store": "OK", "credentials": "OK", "gettoken": "OK",
        "whitelist and address book": "OK", "recipients": "OK", "monthly quota": "OK",
    }  # fmt: skip
    assert code == 0
    assert "138****0000 -> manager4974" in checks["recipients"]["detail"]
    assert "13800000000" not in json.dumps(checks)
    assert "schema version 3" in checks["state store"]["detail"]
    assert {c["endpoint"] for c in box.calls()} <= EXEMPT
    assert box.messages() == []


def test_the_text_output_says_ok_and_what_to_do(tmp_path, box, capsys):
    config = write_config(tmp_path, box, mobiles=("13912345678",))
    assert main(["doctor", "-c", str(config)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^OK +gettoken", out, re.MULTILINE)
    assert re.search(r"^FAIL +recipients", out, re.MULTILINE)
    assert "-> fix or remove these mobiles" in out
    assert out.rstrip().endswith("1 FAIL")


def test_a_second_run_resolves_mobiles_from_the_userid_cache(tmp_path, box, capsys):
    config = write_config(tmp_path, box)
    doctor(config, capsys)
    box.reset()
    code, checks = doctor(config, capsys)
    assert code == 0 and "(1 from the userid cache)" in checks["recipients"]["detail"]
    assert "getbymobile" not in {c["endpoint"] for c in box.calls()}


def test_wrong_credentials_fail_gettoken_naming_the_variables(tmp_path, box, capsys):
    config = write_config(tmp_path, box, secret="not-the-secret")
    code, checks = doctor(config, capsys)
    assert code == 1
    assert checks["gettoken"]["status"] == "FAIL" and "40096" in checks["gettoken"]["detail"]
    assert (
        "DINGTALK_APP_KEY" in checks["gettoken"]["hint"]
        and "DINGTALK_APP_SECRET" in checks["gettoken"]["hint"]
    )
    assert checks["recipients"]["status"] == "SKIP"
    assert "not-the-secret" not in json.dumps(checks)


def test_errcode_40001_at_gettoken_is_a_credentials_failure(tmp_path, box, capsys):
    box.set_options(force_errcode={"gettoken": 40001})
    code, checks = doctor(write_config(tmp_path, box), capsys)
    assert code == 1 and checks["gettoken"]["status"] == "FAIL"
    assert "40001" in checks["gettoken"]["detail"] and "DINGTALK_APP_SECRET" in checks["gettoken"]["hint"]


def test_missing_credential_variables_are_named(tmp_path, box, capsys):
    config = write_config(tmp_path, box)
    text = config.read_text(encoding="utf-8").replace("app_key: dingsandboxkey", "app_key: ${DOCTOR_KEY}")
    config.write_text(text, encoding="utf-8")
    code, checks = doctor(config, capsys)
    assert code == 1 and checks["credentials"]["status"] == "FAIL"
    assert "DOCTOR_KEY" in checks["credentials"]["detail"]
    assert checks["gettoken"]["status"] == "SKIP" and checks["monthly quota"]["status"] == "OK"


@pytest.mark.parametrize("errcode,steps", [(60020, "服务器出口IP"), (60011, "权限管理")])
def test_a_refused_address_book_call_fails_with_the_console_steps(tmp_path, box, capsys, errcode, steps):
    box.set_options(force_errcode={"user_get": errcode})
    code, checks = doctor(write_config(tmp_path, box), capsys)
    check = checks["whitelist and address book"]
    assert code == 1 and check["status"] == "FAIL"
    assert str(errcode) in check["detail"] and steps in check["hint"]


def test_a_mobile_that_resolves_to_nobody_fails_masked(tmp_path, box, capsys):
    config = write_config(tmp_path, box, mobiles=("13800000000", "13912345678"))
    code, checks = doctor(config, capsys)
    assert code == 1
    assert checks["recipients"]["status"] == "FAIL"
    assert "139****5678: no employee with this mobile (errcode 60121)" in checks["recipients"]["detail"]
    assert "13912345678" not in json.dumps(checks)


def test_an_unknown_admin_userid_is_a_warning_not_a_whitelist_failure(tmp_path, box, capsys):
    config = write_config(tmp_path, box)
    config.write_text(config.read_text("utf-8").replace("[oncall01]", "[nobody42]"), encoding="utf-8")
    code, checks = doctor(config, capsys)
    assert code == 0
    check = checks["whitelist and address book"]
    assert check["status"] == "WARN" and "nobody42" in check["detail"] and "33012" in check["detail"]


def test_a_source_that_cannot_connect_fails(tmp_path, box, capsys):
    sources = {"warehouse": "postgresql+psycopg://reader:pw@127.0.0.1:1/shop"}
    code, checks = doctor(write_config(tmp_path, box, sources=sources), capsys)
    assert code == 1
    check = checks["source warehouse"]
    assert check["status"] == "FAIL" and "cannot connect" in check["detail"]
    assert ":pw@" not in json.dumps(checks)
    assert checks["gettoken"]["status"] == "OK", "a failing source does not hide the other checks"


def test_a_source_that_never_answers_fails_after_its_query_timeout(tmp_path, box, capsys):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"postgresql+psycopg://reader@127.0.0.1:{silent.getsockname()[1]}/shop"
        config = write_config(tmp_path, box, sources={"slow": url}, extra="    query_timeout: 1s\n")
        code, checks = doctor(config, capsys)
    assert code == 1 and checks["source slow"]["status"] == "FAIL"
    assert "no answer within 1s" in checks["source slow"]["detail"]


def test_an_unreachable_state_store_fails_and_skips_what_needs_it(tmp_path, box, capsys):
    config = write_config(
        tmp_path, box, extra="state: postgresql+psycopg://keeper:hunter2@127.0.0.1:1/state\n"
    )
    code, checks = doctor(config, capsys)
    assert code == 1 and checks["state store"]["status"] == "FAIL"
    assert "DISPATCHER_STATE_URL" in checks["state store"]["hint"]
    assert checks["gettoken"]["status"] == "SKIP" and "monthly quota" not in checks
    assert "hunter2" not in json.dumps(checks)


def test_a_config_problem_fails_with_file_and_line(tmp_path, box, capsys):
    config = write_config(tmp_path, box, extra="    on_emtpy: send\n")
    code, checks = doctor(config, capsys)
    assert code == 1 and list(checks) == ["config"]
    assert re.search(r"reports\.yaml:\d+: reports\.daily\.on_emtpy", checks["config"]["detail"])


def test_a_forecast_above_80_percent_of_the_quota_warns(tmp_path, box, capsys):
    from zoneinfo import ZoneInfo

    from dispatcher.store.apicalls import ApiCounter
    from dispatcher.store.db import StateStore

    (tmp_path / ".dispatcher").mkdir()
    store = StateStore(f"sqlite:///{tmp_path / '.dispatcher' / 'state.db'}")
    try:
        for _ in range(9):  # calls already made this month: 90% of a quota of 10, whatever the date
            ApiCounter(store, ZoneInfo("Asia/Shanghai"), 0).count("asyncsend_v2")
    finally:
        store.close()
    code, checks = doctor(write_config(tmp_path, box, quota=10), capsys)
    assert code == 0
    check = checks["monthly quota"]
    assert check["status"] == "WARN" and "9 calls used" in check["detail"] and "receipts" in check["hint"]


def test_a_forecast_below_80_percent_is_ok(tmp_path, box, capsys):
    code, checks = doctor(write_config(tmp_path, box, quota=100_000), capsys)
    assert checks["monthly quota"]["status"] == "OK" and "of 100,000" in checks["monthly quota"]["detail"]


def test_send_test_sends_one_message_to_admins(tmp_path, box, capsys):
    code, checks = doctor(write_config(tmp_path, box), capsys, "--send-test")
    assert code == 0 and checks["test message"]["status"] == "OK"
    messages = box.messages("oncall01")
    assert len(messages) == 1 and messages[0]["msg"]["msgtype"] == "markdown"
    assert "dispatcher doctor" in messages[0]["msg"]["markdown"]["title"]
    assert [c["endpoint"] for c in box.calls() if c["endpoint"] not in EXEMPT] == ["asyncsend_v2"]


def test_the_warning_grants_are_the_readmes():
    """The grants doctor prints are the manual's read-only role (docs/security.md)."""
    role = (REPO / "docs" / "security.md").read_text(encoding="utf-8")
    for grants in GRANTS.values():
        for statement in grants.split("; "):
            assert statement.rstrip(";") in role, statement


# -- PostgreSQL and MariaDB ----------------------------------------------------------------------


@pytest.fixture
def pg_readonly(postgres_url) -> Iterator[str]:
    """The manual's read-only role (docs/security.md) on the test's schema."""
    role = unique_name("ro_")
    base = make_url(postgres_url)
    schema = base.query["options"].split("=", 1)[1]
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {schema}.orders (id integer)")
        for statement in (
            f"CREATE ROLE {role} LOGIN PASSWORD 'pw' NOSUPERUSER NOCREATEDB NOCREATEROLE",
            f"GRANT CONNECT ON DATABASE {base.database} TO {role}",
            f"GRANT USAGE ON SCHEMA {schema} TO {role}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
        ):
            conn.exec_driver_sql(statement)
    try:
        yield base.set(username=role, password="pw").render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


@pytest.fixture
def mysql_readonly(mysql_url) -> Iterator[str]:
    user = unique_name("ro_")
    base = make_url(mysql_url)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE orders (id integer)")
        conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY 'pw'")
        conn.exec_driver_sql(f"GRANT SELECT ON {base.database}.* TO '{user}'@'%%'")
    try:
        yield base.set(username=user, password="pw").render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")
        admin.dispose()


def test_all_green_with_read_only_roles_on_postgres_and_mariadb(
    tmp_path, box, capsys, pg_readonly, mysql_readonly
):
    config = write_config(tmp_path, box, sources={"pg": pg_readonly, "maria": mysql_readonly})
    code, checks = doctor(config, capsys)
    for name in ("source pg", "source maria"):
        assert checks[name]["status"] == "OK", checks[name]
        assert "a write was refused; the role is read-only" in checks[name]["detail"]
    assert code == 0


def test_a_writable_role_warns_with_the_grants(tmp_path, box, capsys, postgres_url, mysql_url):
    admin = sa.create_engine(mysql_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE orders (id integer)")
        conn.exec_driver_sql("INSERT INTO orders VALUES (1)")
    config = write_config(tmp_path, box, sources={"pg": postgres_url, "maria": mysql_url})
    code, checks = doctor(config, capsys)
    assert code == 0
    pg, maria = checks["source pg"], checks["source maria"]
    assert pg["status"] == "WARN" and "superuser" in pg["detail"] and "a write was refused" in pg["detail"]
    assert "GRANT SELECT ON ALL TABLES IN SCHEMA public TO dispatcher_ro" in pg["hint"]
    assert maria["status"] == "WARN" and "a write was refused" in maria["detail"]
    assert re.search(r"(INSERT|DELETE|DROP) on \*\.\*", maria["detail"]), maria["detail"]
    assert "GRANT SELECT ON shop.* TO 'dispatcher_ro'@'%'" in maria["hint"]
    with admin.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM orders").scalar() == 1, "the probe changed nothing"
    admin.dispose()
