"""The reports.yaml model: loading, interpolation and validation with file:line for every problem."""

from __future__ import annotations

import difflib
import functools
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from dispatcher import yamlfile
from dispatcher.errors import ConfigError, Problem, ReportNotFound, ScheduleError
from dispatcher.schedule import Schedule, parse_duration, parse_schedule, to_zone
from dispatcher.source_url import (
    DEFAULT_MAX_BYTES,
    parse_size,
    query_timeout_in_range,
    state_url_problem,
    superuser_warning,
    url_problem,
)

DEFAULT_TIMEZONE = "Asia/Shanghai"
MOBILE = re.compile(r"1[3-9]\d{9}\Z")  # mainland mobile, the only kind getbymobile resolves
ALERT_GROUP = "admins"
ReceiptsMode = Literal["full", "result", "off"]


def _receipts_mode(value: Any) -> Any:
    # YAML 1.1 reads a bare `off` as false (and `on` as true).
    return {False: "off", True: "full"}.get(value, value) if isinstance(value, bool) else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def _duration(value: Any) -> float:
    try:
        return parse_duration(value)
    except ScheduleError as exc:
        raise ValueError(exc.message) from None


class RecipientGroup(_Model):
    userids: list[str] = []
    mobiles: list[str] = []
    dept_ids: list[int] = []

    @field_validator("userids", mode="before")
    @classmethod
    def _userids_are_text(cls, value: Any) -> Any:
        # Long numeric userids (0147282552401293909) must stay text; an unquoted one would lose its 0.
        if isinstance(value, list):
            for item in value:
                if isinstance(item, int | float) and not isinstance(item, bool):
                    raise ValueError(f'userid {item!r} must be quoted, e.g. "{item}"')
        return value

    @field_validator("mobiles", mode="before")
    @classmethod
    def _mobiles_are_mobiles(cls, value: Any) -> Any:
        if isinstance(value, list):
            value = [normalize_mobile(v) for v in value]
            bad = [v for v in value if not MOBILE.match(v)]
            if bad:
                raise ValueError(f"{bad[0]!r} is not an 11-digit mainland mobile number")
        return value

    def is_empty(self) -> bool:
        return not (self.userids or self.mobiles or self.dept_ids)


def normalize_mobile(value: Any) -> str:
    """Accept `138 0000 0000`, `138-0000-0000` and `+86…`; DingTalk wants the bare 11 digits."""
    text = re.sub(r"[\s-]", "", str(value))
    return text[3:] if text.startswith("+86") else text


class DingTalkConfig(_Model):
    app_key: str | None = None
    app_secret: SecretStr | None = None
    agent_id: int | None = None
    api_base: str | None = None
    calls_per_second: float = Field(default=20.0, gt=0, le=20)
    recipients_per_minute: int = Field(default=5000, gt=0)
    max_msg_bytes: int = Field(default=2048, ge=256, le=2048)
    # The organisation's monthly API quota (5000 on the standard edition); 0: unlimited (paid editions).
    monthly_quota: int = Field(default=5000, ge=0)
    receipts: ReceiptsMode = "result"
    receipt_wait: float = 5.0
    # Filled from the interpolation pass, not from YAML: which env vars were unset.
    missing_vars: tuple[str, ...] = ()

    @field_validator("app_key", "app_secret", "agent_id", "api_base", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("receipt_wait", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float:
        return _duration(value)

    @field_validator("receipts", mode="before")
    @classmethod
    def _receipts(cls, value: Any) -> Any:
        return _receipts_mode(value)


MAX_LINK_CHARS = 500  # an action card's button URL [message-types-and-data-format]
_LINK = re.compile(r"(https?://|dingtalk://dingtalkclient/)\S+\Z", re.IGNORECASE)


def link_url(value: str) -> str:
    """A link a message may carry: http(s), or a DingTalk client link that opens inside the app."""
    if not _LINK.match(value):
        raise ValueError(f"{value!r} is not an http(s) URL or a dingtalk://dingtalkclient/ link")
    if len(value) > MAX_LINK_CHARS:
        raise ValueError(
            f"a link of {len(value)} characters is not accepted; DingTalk allows {MAX_LINK_CHARS}"
            " (shorten it, e.g. with fewer query parameters)"
        )
    return value


class Report(_Model):
    id: str = ""
    title: str = Field(min_length=1, max_length=64)
    schedule: str | dict[str, Any]
    timezone: str | None = None
    source: str
    query: str | None = None
    sql: str | None = None
    params: dict[str, str | int | float | bool | None] = {}
    to: list[str] = Field(min_length=1)
    on_empty: Literal["skip", "send", "error"] = "skip"
    template: str | None = None
    period: str | None = None
    msgtype: Literal["markdown", "text", "action_card"] = "markdown"
    action_url: str | None = None
    action_title: str = Field(default="查看详情", min_length=1, max_length=20)
    formats: dict[str, Literal["number", "integer", "percent", "currency", "text", "date"]] = {}
    labels: dict[str, str] = {}
    query_timeout: float = 60.0
    max_rows: int = Field(default=10_000, gt=0, le=10_000_000)
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1024, le=16 * 1024**3)
    enabled: bool = True
    # The daemon's keys (dispatcher run):
    catchup: Literal["last", "all", "none"] = "last"
    grace: float = 3600.0
    retries: int = Field(default=3, ge=0, le=20)
    retry_delay: float = 60.0
    run_timeout: float = 600.0
    run_on_start: bool = False
    receipts: ReceiptsMode | None = None  # None: the dingtalk section's mode

    @field_validator("schedule")
    @classmethod
    def _schedule_parses(cls, value: Any) -> Any:
        try:
            parse_schedule(value)
        except ScheduleError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                to_zone(value)
            except ScheduleError as exc:
                raise ValueError(exc.message) from None
        return value

    @field_validator("query_timeout", "grace", "retry_delay", "run_timeout", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float:
        return _duration(value)

    @field_validator("query_timeout")
    @classmethod
    def _timeout_in_range(cls, value: float) -> float:
        return query_timeout_in_range(value)

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        return parse_size(value)

    @field_validator("action_url")
    @classmethod
    def _link(cls, value: str | None) -> str | None:
        return None if value is None else link_url(value)

    @field_validator("receipts", mode="before")
    @classmethod
    def _receipts(cls, value: Any) -> Any:
        return _receipts_mode(value)

    def parsed_schedule(self) -> Schedule:
        return parse_schedule(self.schedule)


class DaemonConfig(_Model):
    workers: int = Field(default=8, ge=1, le=256)
    source_concurrency: int = Field(default=4, ge=1, le=256)
    retention: float = 90 * 86400.0
    alert_interval: float = 3600.0
    shutdown_timeout: float = 30.0
    heartbeat: float = Field(default=600.0, gt=0)
    max_wait: float = Field(default=60.0, gt=0)

    @field_validator(
        "retention", "alert_interval", "shutdown_timeout", "heartbeat", "max_wait", mode="before"
    )
    @classmethod
    def _durations(cls, value: Any) -> float:
        return _duration(value)


class Config(_Model):
    timezone: str = DEFAULT_TIMEZONE
    sources: dict[str, str] = {}
    dingtalk: DingTalkConfig = DingTalkConfig()
    recipients: dict[str, RecipientGroup] = {}
    reports: dict[str, Report] = {}
    state: str | None = None
    daemon: DaemonConfig = DaemonConfig()
    path: Path = Path("reports.yaml")

    @property
    def base_dir(self) -> Path:
        return self.path.resolve().parent

    @property
    def queries_dir(self) -> Path:
        return self.base_dir / "queries"

    def report(self, report_id: str) -> Report:
        try:
            return self.reports[report_id]
        except KeyError:
            raise ReportNotFound(report_id, list(self.reports)) from None

    def report_timezone(self, report: Report) -> str:
        return report.timezone or self.timezone

    def report_zone(self, report: Report) -> ZoneInfo:
        return to_zone(self.report_timezone(report))

    def query_text(self, report: Report) -> str:
        if report.sql is not None:
            return report.sql
        assert report.query is not None
        return (self.queries_dir / report.query).read_text(encoding="utf-8")


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> Config:
    """Load and validate; raise ConfigError listing every problem at once."""
    config, problems = check_config(Path(path), env)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def check_config(
    path: Path, env: dict[str, str] | None = None, warnings: list[Problem] | None = None
) -> tuple[Config | None, list[Problem]]:
    """Every problem of the file; findings that do not stop it (a superuser login) go to `warnings`."""
    doc = yamlfile.load(path)
    if doc.problems and doc.data is None:
        return None, doc.problems
    if not isinstance(doc.data, dict):
        doc.problems.append(doc.problem((), "the file must be a mapping with reports: at the top"))
        return None, doc.problems
    interp = yamlfile.interpolate(doc.data, env)
    data, missing = interp.value, interp.missing
    for keypath, names in missing.items():
        if keypath[:1] != ("dingtalk",):
            doc.problems.append(doc.problem(keypath, _unset_message(names)))
    checker = _Checker(doc, path, data, missing)
    result = checker.run()
    if warnings is not None:
        warnings.extend(checker.warnings)
    return result


def _unset_message(names: list[str]) -> str:
    return f"environment variable {', '.join(names)} is not set (set it, or write ${{VAR:-default}})"


Model = TypeVar("Model", bound=BaseModel)


class _Checker:
    """Validates section by section so one bad report does not hide the problems of the others."""

    def __init__(
        self,
        doc: yamlfile.Document,
        path: Path,
        data: dict[str, Any],
        missing: dict[tuple[str, ...], list[str]],
    ) -> None:
        self.doc = doc
        self.path = path
        self.data = data
        self.missing = missing
        self.warnings: list[Problem] = []

    def run(self) -> tuple[Config | None, list[Problem]]:
        top = {k: v for k, v in self.data.items() if k not in ("reports", "recipients", "dingtalk")}
        top["path"] = self.path
        top["dingtalk"] = self._dingtalk()
        top["recipients"] = self._each("recipients", RecipientGroup)
        top["reports"] = self._each("reports", Report)
        config = self._validate(Config, top, ())
        self._cross_check(config)
        problems = self.doc.problems
        return (config if not problems else None), problems

    def _dingtalk(self) -> DingTalkConfig | None:
        raw = self.data.get("dingtalk") or {}
        if not isinstance(raw, dict):
            return self._validate(DingTalkConfig, raw, ("dingtalk",))
        names = sorted({n for kp, ns in self.missing.items() if kp[:1] == ("dingtalk",) for n in ns})
        return self._validate(DingTalkConfig, {**raw, "missing_vars": tuple(names)}, ("dingtalk",))

    def _each(self, section: str, model: type[_Model]) -> dict[str, Any]:
        raw = self.data.get(section) or {}
        if not isinstance(raw, dict):
            self.doc.problems.append(self.doc.problem((section,), "must be a mapping of name -> entry"))
            return {}
        out = {}
        for name, entry in raw.items():
            if model is Report and isinstance(entry, dict):
                entry = {**entry, "id": name}
            out[name] = self._validate(model, entry, (section, name))
        return {k: v for k, v in out.items() if v is not None}

    def _validate(self, model: type[Model], raw: Any, keypath: tuple[str, ...]) -> Model | None:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                self._add_pydantic(model, keypath, err)
            return None

    def _add_pydantic(self, model: type[Any], keypath: tuple[str, ...], err: Any) -> None:
        loc = tuple(str(p) for p in err["loc"])
        if loc and loc[0] in ("reports", "recipients", "dingtalk") and keypath == ():
            return  # those sections were validated (and reported) on their own
        full = (*keypath, *loc)
        if full in self.missing:
            return  # already reported as an unset variable
        kind = err["type"]
        if kind == "extra_forbidden":
            message = _unknown_key(model, keypath, loc)
        elif kind == "missing":
            message = f"required key {loc[-1]!r} is missing"
            full = full[:-1]
            self.doc.problems.append(self.doc.problem(full, message))
            return
        else:
            message = err["msg"].removeprefix("Value error, ")
            if not isinstance(err.get("input"), dict | list) and "is not" not in message:
                message = f"{err.get('input')!r}: {message}"
        self.doc.problems.append(self.doc.problem(full, message))

    def _cross_check(self, config: Config | None) -> None:
        if config is not None:
            self._check_zone(config)
        for name, url in self._section("sources").items():
            self._check_source(name, url)
        state = self.data.get("state")
        if (
            isinstance(state, str)
            and ("state",) not in self.missing
            and (problem := state_url_problem(state))
        ):
            self._problem(("state",), problem)
        for name, group in self._section("recipients").items():
            if isinstance(group, dict) and not any(group.get(k) for k in ("userids", "mobiles", "dept_ids")):
                self._problem(("recipients", name), "group has no userids, mobiles or dept_ids")
        for report_id, entry in self._section("reports").items():
            if isinstance(entry, dict):
                self._check_report(report_id, entry)

    def _section(self, name: str) -> dict[str, Any]:
        raw = self.data.get(name)
        return raw if isinstance(raw, dict) else {}

    def _check_zone(self, config: Config) -> None:
        try:
            to_zone(config.timezone)
        except ScheduleError as exc:
            self._problem(("timezone",), exc.message)

    def _check_source(self, name: str, url: Any) -> None:
        """A URL SQLAlchemy cannot use fails here, not at the first run; judged offline, without a driver."""
        keypath = ("sources", name)
        if not isinstance(url, str) or keypath in self.missing:
            return
        problem = url_problem(url)
        if problem:
            self._problem(keypath, problem)
        elif warning := superuser_warning(url):
            self.warnings.append(self.doc.problem(keypath, warning))

    def _check_report(self, report_id: str, entry: dict[str, Any]) -> None:
        """Cross-references, checked on the raw entry so they show even when it has other faults."""
        kp = ("reports", report_id)
        sources, groups = self._section("sources"), self._section("recipients")
        source = entry.get("source")
        if isinstance(source, str) and source not in sources:
            self._problem((*kp, "source"), _unknown_name("source", source, sources))
        to = entry.get("to")
        for i, group in enumerate(to if isinstance(to, list) else []):
            if isinstance(group, str) and group not in groups:
                self._problem((*kp, "to", str(i)), _unknown_name("recipient group", group, groups))
        query, sql = entry.get("query"), entry.get("sql")
        if (query is None) == (sql is None):
            self._problem(kp, "give exactly one of 'query' (a file under queries/) or 'sql' (inline)")
        elif isinstance(query, str):
            problem = query_path_problem(self.path.resolve().parent / "queries", query)
            if problem:
                self._problem((*kp, "query"), problem)
        if entry.get("msgtype") == "action_card" and not entry.get("action_url"):
            self._problem((*kp, "action_url"), "msgtype action_card needs an action_url")
        self._check_templates(kp, entry)

    def _check_templates(self, kp: tuple[str, ...], entry: dict[str, Any]) -> None:
        """Catch `{{ yesterdy }}` and template syntax errors now, not at 09:00 tomorrow."""
        from jinja2 import Environment, TemplateSyntaxError

        macros = sample_macros()
        params = entry.get("params")
        for name, value in params.items() if isinstance(params, dict) else []:
            self._try_render((*kp, "params", name), value, macros)
        self._try_render((*kp, "period"), entry.get("period"), macros)
        template = entry.get("template")
        if isinstance(template, str):
            try:
                Environment().parse(template)
            except TemplateSyntaxError as exc:
                self._problem((*kp, "template"), f"template line {exc.lineno}: {exc.message}")

    def _try_render(self, keypath: tuple[str, ...], value: Any, macros: dict[str, str]) -> None:
        from dispatcher.params import render_value

        try:
            render_value(value, macros, ".".join(keypath), self.path.name)
        except ConfigError as exc:
            self._problem(keypath, exc.problems[0].message)

    def _problem(self, keypath: tuple[str, ...], message: str) -> None:
        self.doc.problems.append(self.doc.problem(keypath, message))


def sample_macros() -> dict[str, str]:
    """Date macros for an arbitrary fire time: enough to check that expressions render."""
    return dict(_sample_macros())


@functools.lru_cache(maxsize=1)  # the same for every report: computed once, not 5,000 times
def _sample_macros() -> dict[str, str]:
    from datetime import datetime

    from dispatcher.schedule import date_macros

    zone = to_zone(DEFAULT_TIMEZONE)
    return date_macros(datetime(2026, 1, 5, 9, 0, tzinfo=zone), zone)


def query_path_problem(queries_dir: Path, name: str) -> str | None:
    """Why `name` is not an acceptable query file, or None. Files must stay inside queries/."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or re.match(r"[A-Za-z]:", name) or ".." in pure.parts:
        return f"{name!r} must be a path inside queries/ (no absolute paths, no '..')"
    target = (queries_dir / pure).resolve()
    if not target.is_relative_to(queries_dir.resolve()):
        return f"{name!r} resolves outside queries/"
    if not target.is_file():
        return f"query file queries/{pure} does not exist"
    return None


def _unknown_key(model: type[Any], keypath: tuple[str, ...], loc: tuple[str, ...]) -> str:
    fields = [f for f in getattr(model, "model_fields", {}) if f not in ("id", "path", "missing_vars")]
    guess = difflib.get_close_matches(loc[-1], fields, n=1)
    tail = f"; did you mean {guess[0]!r}?" if guess else f"; allowed: {', '.join(fields)}"
    return f"unknown key {loc[-1]!r}{tail}"


def _unknown_name(kind: str, name: str, known: dict[str, Any]) -> str:
    guess = difflib.get_close_matches(name, list(known), n=1)
    if guess:
        return f"unknown {kind} {name!r}; did you mean {guess[0]!r}?"
    listed = ", ".join(sorted(known)) or "none defined"
    return f"unknown {kind} {name!r} (defined: {listed})"
