"""The reports.yaml model: every key, its default and its own check (loading and the checks across
keys are `config_check`'s)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from dispatcher.config.rich import AttachSpec, ChartSpec, OaCard
from dispatcher.errors import ReportNotFound, ScheduleError
from dispatcher.schedule import Schedule, parse_duration, parse_schedule, to_zone
from dispatcher.sources.url import (
    DEFAULT_MAX_BYTES,
    parse_size,
    query_timeout_in_range,
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


def _empty(kind: type[list[Any]] | type[dict[Any, Any]], **constraints: Any) -> Any:
    """An empty list or dict as a field's default, made new for each model rather than deep-copied
    from one: pydantic's deepcopy of a report's defaults was two thirds of validating 5,000 reports
    (bench scenario 7), and each report's `mention` and each group's unused lists still cost 10,500
    copies in a team's config (issue 28). The schema shows the default as before."""
    return Field(default_factory=kind, json_schema_extra={"default": kind()}, **constraints)


def _duration(value: Any) -> float:
    try:
        return parse_duration(value)
    except ScheduleError as exc:
        raise ValueError(exc.message) from None


class RecipientGroup(_Model):
    userids: list[str] = _empty(list)
    mobiles: list[str] = _empty(list)
    dept_ids: list[int] = _empty(list)

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
    media_cache: float = 86400.0  # how long an uploaded file's media_id is reused (rich reports)
    # Filled from the interpolation pass, not from YAML: which env vars were unset.
    missing_vars: tuple[str, ...] = ()

    @field_validator("app_key", "app_secret", "agent_id", "api_base", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("receipt_wait", "media_cache", mode="before")
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


class AlertSpec(_Model):
    """`alert:`: rows > 0 means firing; the state lives in the state store (see dispatcher.run.alerting)."""

    repeat: float | None = None  # remind at most this often while firing; None: never
    recovery: bool = False
    recovery_template: str = "✅ {{ title }} 已恢复（持续 {{ duration }}）"

    @field_validator("repeat", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float | None:
        return None if value is None else _duration(value)


class SplitBy(_Model):
    """`split_by:`: one message per distinct value of `column`, rendered from only its rows."""

    column: str = Field(min_length=1)
    kind: Literal["userid", "mobile"] = "userid"
    max_slices: int = Field(default=2000, ge=1, le=100_000)


class RobotConfig(_Model):
    """A group's custom robot; the webhook (its access_token) and the secret are secrets."""

    webhook: SecretStr | None = None
    secret: SecretStr | None = None
    keyword: str | None = Field(default=None, min_length=1)
    # The robot's message budget: far above a work notification's 2048 B, so a group gets more rows.
    max_msg_bytes: int = Field(default=20000, ge=256, le=20000)
    # Filled from the interpolation pass, not from YAML: which env vars were unset.
    missing_vars: tuple[str, ...] = ()

    @field_validator("webhook", "secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value


MAX_MENTIONS = 50  # atUserIds / atMobiles [custom-robots-send-group-messages]


class Mention(_Model):
    """Who a report's group message @mentions."""

    mobiles: list[str] = _empty(list, max_length=MAX_MENTIONS)
    userids: list[str] = _empty(list, max_length=MAX_MENTIONS)
    all: bool = False

    @field_validator("mobiles", mode="before")
    @classmethod
    def _mobiles_are_mobiles(cls, value: Any) -> Any:
        return RecipientGroup._mobiles_are_mobiles(value)

    @field_validator("userids", mode="before")
    @classmethod
    def _userids_are_text(cls, value: Any) -> Any:
        return RecipientGroup._userids_are_text(value)


class Report(_Model):
    id: str = ""
    title: str = Field(min_length=1, max_length=64)
    schedule: str | dict[str, Any]
    timezone: str | None = None
    source: str
    query: str | None = None
    sql: str | None = None
    params: dict[str, str | int | float | bool | None] = _empty(dict)
    to: list[str] = _empty(list)  # work-notification groups; optional with split_by or robots
    robots: list[str] = _empty(list)  # group robots, by name from the top-level `robots:`
    mention: Mention = Field(default_factory=Mention)  # a $ref: the schema shows no default
    on_empty: Literal["skip", "send", "error"] = "skip"
    template: str | None = None
    period: str | None = None
    msgtype: Literal["markdown", "text", "action_card", "oa"] = "markdown"
    action_url: str | None = None
    action_title: str = Field(default="查看详情", min_length=1, max_length=20)
    formats: dict[str, Literal["number", "integer", "percent", "currency", "text", "date"]] = _empty(dict)
    labels: dict[str, str] = _empty(dict)
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
    alert: AlertSpec | None = None
    split_by: SplitBy | None = None
    # Rich reports (config/rich.py):
    oa: OaCard | None = None
    chart: ChartSpec | None = None
    attach: AttachSpec | None = None

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
    robots: dict[str, RobotConfig] = {}
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


def sample_macros() -> dict[str, str]:
    """Date macros for an arbitrary fire time: enough to check that expressions render."""
    return dict(_sample_macros())


@functools.lru_cache(maxsize=1)  # the same for every report: computed once, not 5,000 times
def _sample_macros() -> dict[str, str]:
    from datetime import datetime

    from dispatcher.schedule import date_macros

    zone = to_zone(DEFAULT_TIMEZONE)
    return date_macros(datetime(2026, 1, 5, 9, 0, tzinfo=zone), zone)
