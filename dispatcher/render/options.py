"""What a render takes and gives: the options of one message and the rendered result.

Its own module so that the package's parts can share these types without importing the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dispatcher.dingtalk.message import MAX_MSG_BYTES

MSGTYPES = ("markdown", "text", "action_card")


@dataclass(frozen=True)
class RenderOptions:
    title: str
    fire_time: datetime  # aware, already in the report's timezone
    footer_seconds: bool = False  # the schedule can fire more than once a minute
    period: str | None = None
    template: str | None = None  # author-written Jinja2 markdown: untrusted, runs sandboxed
    formats: Mapping[str, str] = field(default_factory=dict)  # column -> one of format.KINDS
    labels: Mapping[str, str] = field(default_factory=dict)  # column -> display label
    msgtype: str = "markdown"
    action_url: str | None = None
    action_title: str = "查看详情"
    max_msg_bytes: int = MAX_MSG_BYTES
    query_truncated: bool = False
    macros: Mapping[str, str] = field(default_factory=dict)
    currency_symbol: str = "¥"
    oa: Any = None  # msgtype oa: the report's config_rich.OaCard (its link is action_url)


@dataclass(frozen=True)
class Rendered:
    title: str
    markdown: str  # the body as sent (the content, for the text msgtype)
    msg: dict[str, Any]
    msg_bytes: int
    rows: int
    rows_shown: int
    truncated: bool
