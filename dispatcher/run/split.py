"""Per-recipient reports (`split_by:`): one query, one message per distinct value of a column.

Each slice is rendered from only its rows with the report's own template, `split_value` set to
its value. Rows whose value is empty are counted and never sent to anybody. More distinct values
than `max_slices` fail the run before anything is sent: a wrong column must not message the
whole company.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dispatcher.config.model import MOBILE, SplitBy, normalize_mobile
from dispatcher.errors import QueryError, SplitError

if TYPE_CHECKING:
    import pandas as pd

    from dispatcher.render import Rendered

UNIT_PREFIX = "slice:"
# One DingTalk userid: 1 to 64 characters [user-information-creation], and never a comma or a space,
# since asyncsend_v2's userid_list is comma-separated: "a,b" would reach both a and b.
USERID = re.compile(r"[^\s,]{1,64}\Z")


@dataclass(frozen=True)
class Slice:
    key: str  # the column's value: a userid, or an 11-digit mobile
    rows: int
    rendered: Rendered


@dataclass(frozen=True)
class Slicing:
    slices: tuple[Slice, ...]
    empty_rows: int  # rows whose value is empty, or not one userid (or, for mobiles, one mobile number)

    def find(self, value: str, kind: str) -> Slice | None:
        wanted = normalize_mobile(value) if kind == "mobile" else value.strip()
        return next((s for s in self.slices if s.key == wanted), None)


def slice_frame(frame: pd.DataFrame, spec: SplitBy, report_id: str) -> tuple[dict[str, pd.DataFrame], int]:
    """The rows of each distinct value, in first-seen order, and how many rows had no usable value."""
    if spec.column not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise QueryError(
            f"split_by.column {spec.column!r} is not a column of the result (columns: {columns})",
            report=report_id,
        )
    keys = [_key(v, spec.kind) for v in frame[spec.column].tolist()]
    distinct = [k for k in dict.fromkeys(keys) if k is not None]
    if len(distinct) > spec.max_slices:
        raise SplitError(
            f"report {report_id!r}: split_by.column {spec.column!r} has {len(distinct)} distinct values, "
            f"more than max_slices ({spec.max_slices}); nothing was sent",
            hint="check the column (a wrong one could message the whole company), or raise max_slices",
        )
    groups = {k: frame[[key == k for key in keys]] for k in distinct}
    return groups, sum(1 for k in keys if k is None)


def build(
    frame: pd.DataFrame, spec: SplitBy, report_id: str, render: Callable[[pd.DataFrame, str], Rendered]
) -> Slicing:
    groups, empty = slice_frame(frame, spec, report_id)
    slices = tuple(
        Slice(key, len(rows), render(rows.reset_index(drop=True), key)) for key, rows in groups.items()
    )
    return Slicing(slices, empty)


def _key(value: Any, kind: str) -> str | None:
    """A cell as a recipient key; None for an empty cell, or one that is not one userid (or mobile)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a numeric column with gaps reads 13800000000 as 13800000000.0
    text = str(value).strip()
    if kind == "mobile":
        text = normalize_mobile(text)
        return text if MOBILE.match(text) else None
    return text if USERID.match(text) else None


def summary(slicing: Slicing) -> list[dict[str, Any]]:
    """`preview --json`'s list of slices."""
    return [{"value": s.key, "rows": s.rows, "msg_bytes": s.rendered.msg_bytes} for s in slicing.slices]


def by_content(
    pairs: Mapping[str, tuple[str, dict[str, Any]]],
) -> list[tuple[dict[str, Any], list[tuple[str, str]]]]:
    """(unit -> (userid, msg)) grouped by identical msg: recipients of identical content share a batch."""
    from dispatcher.dingtalk.message import dumps

    groups: dict[str, tuple[dict[str, Any], list[tuple[str, str]]]] = {}
    for unit, (userid, msg) in pairs.items():
        groups.setdefault(dumps(msg), (msg, []))[1].append((unit, userid))
    return list(groups.values())
