"""A run's recorded message made ready to send again: its shape checked, then marked and fitted.

The state store is a file or a database that others can write to, so what it holds is untrusted:
only the msgtypes and keys the renderer writes pass (markdown, text, action_card, oa, each with
exactly its own fields as strings, links that `validate` would accept), within DingTalk's 2048
bytes. The copy carries a "（重发于 …）" line (DingTalk drops identical content to the same person
the same day, 143106) and is fitted to the byte budget with that line included: whole lines are
left out from the end of the body, above the footer, and a note says how many.
"""

from __future__ import annotations

import json
from typing import Any

from dispatcher.config.model import link_url
from dispatcher.dingtalk.message import MAX_MSG_BYTES, msg_bytes
from dispatcher.errors import DispatcherError
from dispatcher.words import plural

_FIELDS: dict[str, tuple[str, ...]] = {
    "markdown": ("title", "text"),
    "text": ("content",),
    "action_card": ("title", "markdown", "single_title", "single_url"),
}
_TEXT_FIELD = {"markdown": "text", "text": "content", "action_card": "markdown"}
HINT = "the state store holds a message dispatcher never writes: check who changed dispatcher_run_messages"


def shape_problem(msg: Any) -> str | None:
    """Why `msg` is not a message dispatcher records, or None."""
    if not isinstance(msg, dict):
        return "it is not a JSON object"
    kind = msg.get("msgtype")
    if kind not in (*_FIELDS, "oa"):
        return f"msgtype {str(kind)[:40]!r} is not one dispatcher sends (markdown, text, action_card, oa)"
    if set(msg) != {"msgtype", kind}:
        extra = sorted(set(msg) - {"msgtype", kind}) or [kind]
        return f"it holds {', '.join(repr(k) for k in extra)} beside the msgtype's own body"
    problem = _oa_problem(msg["oa"]) if kind == "oa" else _fields_problem(kind, msg[kind], _FIELDS[kind])
    if problem is None and kind == "action_card":
        problem = _link_problem("action_card.single_url", msg[kind]["single_url"])
    if problem is None and msg_bytes(msg) > MAX_MSG_BYTES:
        return f"it is {msg_bytes(msg)} bytes; DingTalk accepts at most {MAX_MSG_BYTES}"
    return problem


def _fields_problem(
    where: str, body: Any, fields: tuple[str, ...], optional: tuple[str, ...] = ()
) -> str | None:
    """`body` holds every one of `fields` and maybe `optional` ones, all text, and nothing else."""
    if not isinstance(body, dict):
        return f"{where} is not an object"
    extra = sorted(set(body) - {*fields, *optional})
    if extra:
        return f"{where}.{extra[0]} is not a field dispatcher writes"
    for name in (*fields, *(o for o in optional if o in body)):
        if not isinstance(body.get(name), str):
            return f"{where}.{name} is missing or not text"
    return None


def _oa_problem(oa: Any) -> str | None:
    if not isinstance(oa, dict) or set(oa) != {"message_url", "head", "body"}:
        return "oa must hold exactly message_url, head and body"
    body = oa["body"]
    if not isinstance(body, dict):
        return "oa.body is not an object"
    form = body.get("form", [])
    if not isinstance(form, list):
        return "oa.body.form is not a list"
    checks = [
        ("oa.head", oa["head"], ("bgcolor", "text"), ()),
        ("oa.body", {k: v for k, v in body.items() if k not in ("form", "rich")}, ("title", "content"),
         ("image",)),
        ("oa.body.rich", body.get("rich", {"num": ""}), ("num",), ("unit",)),
        *((f"oa.body.form.{i}", row, ("key", "value"), ()) for i, row in enumerate(form)),
    ]  # fmt: skip
    for where, part, fields, optional in checks:
        if problem := _fields_problem(where, part, fields, optional):
            return problem
    return _link_problem("oa.message_url", oa["message_url"])


def _link_problem(where: str, url: str) -> str | None:
    try:
        link_url(url if isinstance(url, str) else "")
    except ValueError:
        return f"{where} is not an http(s) or DingTalk link"
    return None


def checked(unit: str, msg: Any) -> dict[str, Any]:
    """`msg` when it is a message dispatcher records; a DispatcherError naming what is wrong if not."""
    problem = shape_problem(msg)
    if problem is not None:
        raise DispatcherError(f"the recorded message of {_unit(unit)} was not resent: {problem}", hint=HINT)
    assert isinstance(msg, dict)
    return msg


def marked(unit: str, msg: dict[str, Any], marker: str, limit: int) -> dict[str, Any]:
    """A copy of a checked `msg` ending with the line `marker`, fitted to `limit` bytes."""
    kind = msg["msgtype"]
    if kind == "oa":
        body = msg["oa"]["body"]
        copy = {**msg, "oa": {**msg["oa"], "body": {**body, "content": f"{body['content']}\n{marker}"}}}
        return _within(unit, copy, limit)
    field = _TEXT_FIELD[kind]

    def with_text(text: str) -> dict[str, Any]:
        return {**msg, kind: {**msg[kind], field: text}}

    text = str(msg[kind][field])
    whole = with_text(f"{text}\n\n{marker}")
    if msg_bytes(whole) <= limit:
        return whole
    body, tail = _split_tail(text)
    lines = body.split("\n")

    def attempt(keep: int) -> dict[str, Any]:
        left_out = sum(1 for line in lines[keep:] if line.strip())
        kept = "\n".join(lines[:keep]).rstrip()
        note = f"…… 重发时省略 {left_out} 行"
        return with_text("\n\n".join(p for p in (kept, note, tail, marker) if p))

    lo, hi = 0, len(lines) - 1
    while lo < hi:  # fewer lines kept, fewer bytes: the largest `keep` that fits
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if msg_bytes(attempt(mid)) <= limit else (lo, mid - 1)
    return _within(unit, attempt(lo), limit)


def _split_tail(text: str) -> tuple[str, str]:
    """The body, and the tail that stays: the footer, with the renderer's "…… 另有 …" note before it."""
    body, _, footer = text.rpartition("\n\n")
    rest, _, note = body.rpartition("\n\n")
    if note.startswith("……"):
        return rest, f"{note}\n\n{footer}"
    return body, footer


def _within(unit: str, msg: dict[str, Any], limit: int) -> dict[str, Any]:
    size = msg_bytes(msg)
    if size > limit:
        raise DispatcherError(
            f"the recorded message of {_unit(unit)} was not resent: with the resend line it is {size} bytes,"
            f" and the limit is {plural(limit, 'byte')}",
            hint="send the report again instead: dispatcher send REPORT_ID",
        )
    return msg


def _unit(unit: str) -> str:
    return f"unit {unit!r}" if unit else "the report"


def parsed(unit: str, text: str) -> Any:
    """The stored JSON text of one unit's message; a DispatcherError when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        raise DispatcherError(
            f"the recorded message of {_unit(unit)} was not resent: it is not JSON", hint=HINT
        ) from None
