"""The rich-report keys of reports.yaml: the OA card (`oa:`), the chart (`chart:`), the file (`attach:`).

Kept apart from config.py so the report model stays readable; config.py adds these as fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ATTACH_SUFFIX = {"xlsx": ".xlsx", "csv": ".zip"}  # csv travels zipped: DingTalk refuses a .csv upload
_ARGB = re.compile(r"[0-9A-Fa-f]{8}\Z")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
NAME_CHARS, NAME_BYTES = 120, 255  # 255 bytes: the longest file name most file systems hold
ParamValue = str | int | float | bool | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OaRich(_Model):
    num: str = Field(min_length=1)
    unit: str = ""


class OaCard(_Model):
    """msgtype oa: a KPI card. Values are Jinja templates over the first row (`row`)."""

    head_color: str = "FF1E88E5"
    rich: OaRich | None = None
    form: dict[str, str] = {}
    content: str | None = None
    url: str | None = None

    @field_validator("head_color")
    @classmethod
    def _argb(cls, value: str) -> str:
        if not _ARGB.match(value):
            raise ValueError(f"{value!r} is not an ARGB colour of 8 hex digits, e.g. FF1E88E5")
        return value.upper()

    @field_validator("form")
    @classmethod
    def _six_rows(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 6:  # the phone shows six form rows [message-types-and-data-format]
            raise ValueError(f"{len(value)} form rows; DingTalk shows at most 6")
        return value


class ChartSpec(_Model):
    """A chart from the report's rows, or from its own query (`sql` or a `query` file)."""

    sql: str | None = None
    query: str | None = None
    params: dict[str, ParamValue] = {}
    kind: Literal["line", "bar", "barh"] = "line"
    x: str
    y: list[str] = Field(min_length=1)
    title: str | None = None

    @field_validator("y", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class AttachSpec(_Model):
    """The rows as a file: xlsx, or csv sent as a zip. Default rows: the report's whole result."""

    format: Literal["xlsx", "csv"] = "xlsx"
    name: str = Field(min_length=1, max_length=NAME_CHARS)
    sql: str | None = None
    query: str | None = None
    params: dict[str, ParamValue] = {}


def name_problem(fmt: str, name: str) -> str | None:
    """Why `name` (rendered) does not fit `fmt`, or None. validate checks the name at a sample fire
    time and every run checks it again: a name may depend on the fire time."""
    suffix = ATTACH_SUFFIX.get(fmt, "")
    if not name.lower().endswith(suffix):
        why = " (a csv attachment is sent zipped: DingTalk refuses .csv uploads)" if fmt == "csv" else ""
        return f"attach.name {name!r} must end in {suffix} for format {fmt}{why}"
    if "/" in name or "\\" in name:
        return f"attach.name {name!r} must be a file name, not a path"
    if _CONTROL.search(name):
        return f"attach.name {name!r} must not hold control characters"
    if len(name) > NAME_CHARS or len(name.encode("utf-8")) > NAME_BYTES:
        return f"attach.name {name!r} is too long: at most {NAME_CHARS} characters and {NAME_BYTES} bytes"
    return None


def rich_problems(
    entry: dict[str, Any], macros: dict[str, str], link_url: Callable[[str], str]
) -> list[tuple[tuple[str, ...], str]]:
    """Cross-key problems of one raw report entry: (key path under the report, message).
    `link_url` is config's check of a link a message may carry (it raises ValueError)."""
    from dispatcher.config.params import render_value
    from dispatcher.errors import ConfigError

    out: list[tuple[tuple[str, ...], str]] = []
    if entry.get("oa") is not None and entry.get("msgtype") != "oa":
        out.append((("oa",), "an oa: block needs msgtype: oa"))
    if entry.get("msgtype") == "oa":
        oa = entry["oa"] if isinstance(entry.get("oa"), dict) else {}
        if not oa.get("url") and not entry.get("action_url"):
            out.append((("oa",), "msgtype oa needs oa.url: DingTalk requires the card's message_url"))
        elif isinstance(oa.get("url"), str):
            try:
                link_url(oa["url"])
            except ValueError as exc:
                out.append((("oa", "url"), str(exc)))
    for key in ("chart", "attach"):
        block = entry.get(key)
        if isinstance(block, dict) and block.get("sql") is not None and block.get("query") is not None:
            out.append(((key,), "give at most one of 'sql' and 'query'"))
    attach = entry.get("attach")
    if isinstance(attach, dict) and isinstance(attach.get("name"), str):
        try:
            name = str(render_value(attach["name"], macros, "attach.name"))
        except ConfigError as exc:
            return [*out, (("attach", "name"), exc.problems[0].message)]
        problem = name_problem(str(attach.get("format", "xlsx")), name)
        if problem:
            out.append((("attach", "name"), problem))
    return out
