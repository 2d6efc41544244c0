"""`dispatcher doctor`: is this deployment ready for its first scheduled run?

Each check says OK, WARN or FAIL and what to do (SKIP: a check it depends on failed). Nothing is
sent unless `send_test`, and the DingTalk checks spend nothing of the monthly quota: gettoken,
user/get and getbymobile are exempt (docs/dingtalk-api.md, "Monthly quota").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatcher import clock
from dispatcher.config.check import check_config
from dispatcher.config.model import ALERT_GROUP, Config
from dispatcher.dingtalk.errors import CREDENTIAL_ERRCODES
from dispatcher.errors import DeliveryError, DispatcherError, Problem
from dispatcher.words import plural

if TYPE_CHECKING:
    from dispatcher.app import App
    from dispatcher.ops.quota import ReportCost

WARN_SHARE = 0.8  # of monthly_quota
CONSOLE = "DingTalk developer console (open-dev.dingtalk.com) → 应用开发 → your app"
WHITELIST_STEPS = (
    f"{CONSOLE} → 开发管理 (Development) → 服务器出口IP (server egress IPs): add this server's public "
    "egress IP (e.g. `curl -s ifconfig.me`), save, and run doctor again"
)
PERMISSION_STEPS = (
    f"{CONSOLE} → 权限管理 (Permissions): apply for 通讯录个人信息读权限 / 成员信息读权限 and "
    "根据手机号获取成员信息的接口访问权限 (the address-book read permissions), then run doctor again"
)
CREDENTIAL_STEPS = (
    "check DINGTALK_APP_KEY and DINGTALK_APP_SECRET (the variables behind dingtalk.app_key and "
    f"app_secret): they must be the AppKey and AppSecret shown in {CONSOLE} → 凭证与基础信息"
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, WARN, FAIL or SKIP
    detail: str
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def doctor(path: Path, *, as_json: bool = False, send_test: bool = False, sandbox: str | None = None) -> int:
    """Run every check, print them, and return the exit code: 1 if any failed.

    `sandbox` (--sandbox): the DingTalk checks and the test message go to the running sandbox at
    that URL ("" for the default port), else to one started here, with the sandbox's fake
    credentials; the state checks read the sandbox's store.
    """
    checks = run_checks(path, send_test=send_test, sandbox=sandbox)
    if as_json:
        print(json.dumps([c.to_dict() for c in checks], ensure_ascii=False, indent=2))
    else:
        print(report_text(checks))
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def run_checks(path: Path, *, send_test: bool = False, sandbox: str | None = None) -> list[Check]:
    config, checks = _config_check(path)
    if config is None:
        return checks
    checks += _source_checks(config)
    state = _state_check(config, sandbox is not None)
    credentials = _credentials_check(config) if sandbox is None else _SANDBOX_CREDENTIALS
    checks += [state, credentials]
    if state.status == "FAIL" or credentials.status != "OK":
        why = "the state store check" if state.status == "FAIL" else "the credentials check"
        why = (
            "a DingTalk app, and no report sends a work notification" if credentials.status == "SKIP" else why
        )
        names = ["gettoken", "whitelist and address book", "recipients"]
        names += ["test message"] if send_test else []
        checks += [Check(n, "SKIP", f"needs {why} to pass") for n in names]
    else:
        checks += list(_dingtalk_checks(config, send_test, sandbox))
    # The robots' test goes to their real webhooks: never under --sandbox.
    checks += _robot_checks(config, send_test and sandbox is None, state.status != "FAIL")
    if state.status != "FAIL":
        checks.append(_quota_check(config, sandbox is not None))
    return checks


_SANDBOX_CREDENTIALS = Check("credentials", "OK", "--sandbox: the sandbox's fake app key and secret")


def _robot_checks(config: Config, send_test: bool, state_ok: bool) -> list[Check]:
    from dispatcher.ops.doctor_robots import robot_checks

    found = robot_checks(config, send_test=send_test, state_ok=state_ok)
    return [Check(f.name, f.status, f.detail, f.hint) for f in found]


def report_text(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        detail = c.detail.replace("\n", "\n" + " " * (width + 8))
        lines.append(f"{c.status:<5} {c.name:<{width}}  {detail}")
        if c.hint:
            lines.append(f"{'':<5} {'':<{width}}  -> {c.hint}")
    counts = {s: sum(c.status == s for c in checks) for s in ("OK", "WARN", "FAIL", "SKIP")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)


# -- config, sources, state store, credentials ----------------------------------------------------


def _config_check(path: Path) -> tuple[Config | None, list[Check]]:
    warnings: list[Problem] = []
    config, problems = check_config(path, warnings=warnings)
    if problems or config is None:
        detail = "\n".join(str(p) for p in problems)
        hint = "fix these; `dispatcher validate` lists the same problems"
        return None, [Check("config", "FAIL", f"{plural(len(problems), 'problem')}:\n{detail}", hint)]
    summary = (
        f"{path}: {plural(len(config.reports), 'report')}, {plural(len(config.sources), 'source')}, "
        f"{plural(len(config.recipients), 'recipient group')}"
    )
    if warnings:
        return config, [Check("config", "WARN", summary + "\n" + "\n".join(map(str, warnings)))]
    return config, [Check("config", "OK", summary)]


def _source_checks(config: Config) -> list[Check]:
    from dispatcher.app import open_sources
    from dispatcher.ops.doctor_sources import check_source, source_timeout

    checks = []
    with open_sources(config) as sources:
        for name in config.sources:
            found = check_source(sources, name, source_timeout(config, name))
            checks.append(Check(f"source {name}", found.status, found.detail, found.hint))
    return checks


def _state_check(config: Config, sandbox: bool = False) -> Check:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from dispatcher.app import open_store
    from dispatcher.store.db import SCHEMA_VERSION, sandbox_state_url, state_url
    from dispatcher.store.schema import meta_table

    where = "the state store"
    try:
        url = (sandbox_state_url if sandbox else state_url)(config.base_dir, config.state)
        where = make_url(url).render_as_string(hide_password=True)
        with open_store(config, sandbox=sandbox) as store:
            assert store is not None
            version = store.schema_version()
            with store.engine.connect() as conn:  # a write that is rolled back: proves the privilege
                tx = conn.begin()
                conn.execute(meta_table.insert().values(key="doctor.probe", value="1"))
                tx.rollback()
    except (DispatcherError, SQLAlchemyError) as exc:
        hint = getattr(exc, "hint", None) or "check DISPATCHER_STATE_URL or state:, and that it is writable"
        return Check("state store", "FAIL", f"{where}: {_message(exc)}", hint)
    return Check(
        "state store", "OK", f"{where}: writable, schema version {version} (this release: {SCHEMA_VERSION})"
    )


def _credentials_check(config: Config) -> Check:
    from dispatcher.run.delivery import credentials_from, needs_app

    try:
        creds = credentials_from(config)
    except DispatcherError as exc:
        if not needs_app(config):  # robots need no app: such a config runs without credentials
            detail = "not needed: every report goes to group robots only, and there is no 'admins' group"
            return Check("credentials", "SKIP", detail)
        return Check(
            "credentials",
            "FAIL",
            exc.message,
            "set them in the service's environment, in .env beside reports.yaml (see .env.example), or "
            "as NAME_FILE naming a file that holds the value; see docs/reference/environment.md",
        )
    return Check(
        "credentials", "OK", f"app key {creds.app_key}, agent id {creds.agent_id}; the secret is set"
    )


def _message(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, DispatcherError) else str(getattr(exc, "orig", None) or exc)
    return " ".join(text.split())[:300]


# -- DingTalk ---------------------------------------------------------------------------------------


def _dingtalk_checks(config: Config, send_test: bool, sandbox: str | None) -> Iterator[Check]:
    import sys

    from dispatcher.app import open_app

    url = sandbox or None
    with open_app(config, sandbox=sandbox is not None, find_sandbox=True, sandbox_url=url) as app:
        if app.sandbox_note:
            print(app.sandbox_note, file=sys.stderr, flush=True)
        token = _token_check(app)
        yield token
        if token.status == "FAIL":
            rest = ["whitelist and address book", "recipients"] + (["test message"] if send_test else [])
            yield from (Check(n, "SKIP", "needs gettoken to pass") for n in rest)
            return
        yield _whitelist_check(app)
        yield _recipients_check(app)
        if send_test:
            yield _send_test(app)


def _token_check(app: App) -> Check:
    try:
        app.client.token()
    except DeliveryError as exc:
        if exc.errcode in CREDENTIAL_ERRCODES:
            detail = f"DingTalk rejected the app credentials (errcode {exc.errcode}: {exc.errmsg})"
            return Check("gettoken", "FAIL", detail, CREDENTIAL_STEPS)
        return _delivery_failure("gettoken", exc)
    return Check("gettoken", "OK", "DingTalk accepts the app key and secret")


def _whitelist_check(app: App) -> Check:
    name = "whitelist and address book"
    userid, mobile = _probe_person(app.config)
    try:
        if userid is not None:
            found = bool(app.client.get_user(userid))
            who = f"user/get of {userid}"
        elif mobile is not None:
            found = bool(app.client.resolve_mobiles([mobile])[0])
            who = "getbymobile of the first mobile"
        else:
            return Check(name, "WARN", "no userid or mobile in any recipient group to look up")
    except DeliveryError as exc:
        if exc.errcode in (33012, 60121, 40104):  # the call got through: IP and permission are fine
            return Check(name, "WARN", f"this server's IP and the address-book permission work, but "
                         f"{userid} is not in the address book (errcode {exc.errcode})",
                         "fix the userid in recipients")  # fmt: skip
        return _delivery_failure(name, exc)
    detail = f"{who} answered: this server's IP is whitelisted and the address-book permission is granted"
    return Check(name, "OK" if found else "WARN", detail if found else f"{who} found nobody")


def _probe_person(config: Config) -> tuple[str | None, str | None]:
    """The first admin's userid (else anyone's), or failing that a mobile: the exempt lookup's subject."""
    groups = [config.recipients[ALERT_GROUP]] if ALERT_GROUP in config.recipients else []
    groups += list(config.recipients.values())
    userid = next((u for g in groups for u in g.userids), None)
    mobile = next((m for g in groups for m in g.mobiles), None)
    return userid, (None if userid else mobile)


def _recipients_check(app: App) -> Check:
    from dispatcher.dingtalk.client import USERID_MAX_AGE
    from dispatcher.dingtalk.results import mask_mobile
    from dispatcher.store.userids import UseridCache

    mobiles = list(dict.fromkeys(m for g in app.config.recipients.values() for m in g.mobiles))
    if not mobiles:
        return Check("recipients", "OK", "no mobiles to resolve (userids and dept_ids are used as they are)")
    cached = UseridCache(app.store).get_userids(app.client.credentials.app_key, mobiles, USERID_MAX_AGE)
    try:
        found, problems = app.client.resolve_mobiles(mobiles)
    except DeliveryError as exc:
        return _delivery_failure("recipients", exc)
    resolved = ", ".join(f"{mask_mobile(m)} -> {u}" for m, u in found.items())
    detail = f"mobiles resolved: {len(found)} of {len(mobiles)} ({len(cached)} from the userid cache)"
    detail += f": {resolved}" if resolved else ""
    if problems:
        hint = "fix or remove these mobiles in recipients: the person may have left or changed number"
        return Check("recipients", "FAIL", detail + "\n" + "\n".join(problems), hint)
    return Check("recipients", "OK", detail)


def _quota_check(config: Config, sandbox: bool = False) -> Check:
    from dispatcher.app import open_store
    from dispatcher.ops.quota import store_forecast

    quota = config.dingtalk.monthly_quota
    with open_store(config, sandbox=sandbox) as store:
        assert store is not None
        f = store_forecast(config, store)
    detail = f"{f.month}: {plural(f.used_total, 'call')} used, {f.forecast:,} forecast by the month's end"
    detail += _alerts_basis(f.reports)
    if not quota:
        return Check("monthly quota", "OK", detail + " (monthly_quota: 0, unlimited)")
    share = f.forecast / quota
    detail += f", {share:.0%} of {quota:,}"
    if share > WARN_SHARE:
        hint = (
            "fewer receipt calls (receipts: result or off), fewer runs or recipients; over the quota "
            "DingTalk answers 90020 and reports stop until next month. `dispatcher quota` names the costliest"
        )
        return Check("monthly quota", "WARN", detail, hint)
    return Check("monthly quota", "OK", detail)


def _alerts_basis(costs: list[ReportCost]) -> str:
    from dispatcher.ops.quota import ALERTS_COUNTED

    alerts = [c for c in costs if c.basis != "schedule"]
    if not alerts:
        return ""
    estimated = [c.id for c in alerts if c.basis == "estimate"]
    found = f"{len(alerts) - len(estimated)} from their history"
    found += f", {len(estimated)} estimated (no history yet: {', '.join(estimated)})" if estimated else ""
    return f" ({ALERTS_COUNTED}: {found})"


def _send_test(app: App) -> Check:
    from dispatcher.dingtalk.message import markdown_msg
    from dispatcher.run.delivery import deliver, recipients_for

    if ALERT_GROUP not in app.config.recipients:
        hint = f"add a recipients: {ALERT_GROUP}: group (it also receives the failure alerts)"
        return Check("test message", "FAIL", f"no {ALERT_GROUP!r} recipient group to send to", hint)
    at = clock.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
    text = f"### dispatcher doctor\n\n测试消息 {at}：工作通知权限和 AgentID 正常。"
    msg = markdown_msg("dispatcher doctor 测试消息", text)
    try:
        result = deliver(app.client, msg, recipients_for(app.config, [ALERT_GROUP]), receipts="off")
    except DeliveryError as exc:
        return _delivery_failure("test message", exc)
    if result.refused or not result.accepted:
        return Check("test message", "FAIL", f"DingTalk refused it: {result.refused or 'no batch accepted'}")
    detail = f"sent to {ALERT_GROUP} (task {', '.join(map(str, result.task_ids))})"
    if result.unresolved_mobiles:
        return Check("test message", "WARN", detail + "; not to " + ", ".join(result.unresolved_mobiles))
    return Check("test message", "OK", detail)


def _delivery_failure(name: str, exc: DeliveryError) -> Check:
    steps = {60020: WHITELIST_STEPS, 60011: PERMISSION_STEPS}
    hint = steps.get(exc.errcode or 0) or (
        CREDENTIAL_STEPS if exc.errcode in CREDENTIAL_ERRCODES else exc.hint
    )
    return Check(name, "FAIL", exc.message, hint)
