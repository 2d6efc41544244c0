"""What each DingTalk errcode means, what the dispatcher does about it, and what the user must do.

Source: the server-API error pages, summarised in docs/dingtalk-api.md sections 1, 2, 6, 7.
The /topapi/* gateway wraps token, throttling, quota and permission errors in errcode 88 with the
real code in `sub_code` or `subCode` (a string or a number; DingTalk's error page spells it
`subCode`) or only in errmsg as `subcode=NNN`: `unwrap` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dispatcher.errors import CredentialsError, DeliveryError, QuotaExhaustedError


@dataclass(frozen=True)
class ErrcodeInfo:
    meaning: str
    action: str  # what the dispatcher does: the manual's error-code table prints it
    hint: str | None = None
    retryable: bool = False


CREDENTIALS_HINT = "check DINGTALK_APP_KEY and DINGTALK_APP_SECRET"
QUOTA_HINT = (
    "the organisation's monthly API quota (5,000 calls on the standard edition, all apps together) "
    "is used up: wait for next month, move to a paid DingTalk edition, or spend fewer calls on "
    "receipts (`receipts: result` or `receipts: off` in reports.yaml); `dispatcher quota` shows the usage"
)
GATEWAY = 88
BAD_PARAMETER = frozenset({40035, 400002})
# A stale, revoked or missing token: fetch a new one and resend the identical request once.
TOKEN_ERRCODES = frozenset({40001, 40014, 41001, 42001})
# gettoken answers these when the AppKey/AppSecret pair is wrong (40089: the legacy corpsecret form).
CREDENTIAL_ERRCODES = frozenset({40001, 40089, 40096})
THROTTLED = 90018  # per app per API: DingTalk advises waiting at least 1 s
THROTTLED_GLOBALLY = 90002  # per API: DingTalk advises backing off 1, 2, 4 s ...
QUOTA_EXHAUSTED = 90020

_RENEW = "renews the token once and resends the identical request"
_FRESH_REJECTED = "a fresh token was rejected too: " + CREDENTIALS_HINT
_STOP = "stops the run (no retry) and shows the hint"
_MASKED = "reports the masked mobile and sends to the others"

ERRCODES: dict[int, ErrcodeInfo] = {
    -1: ErrcodeInfo("DingTalk is busy", "retries with backoff", "a transient fault", retryable=True),
    GATEWAY: ErrcodeInfo(
        "gateway envelope", "unwraps `sub_code` or `subCode` (or `subcode=` in errmsg), follows its row"
    ),
    40001: ErrcodeInfo("access token invalid", _RENEW + "; at gettoken: wrong credentials", _FRESH_REJECTED),
    40014: ErrcodeInfo("access token invalid", _RENEW, _FRESH_REJECTED),
    41001: ErrcodeInfo("access token missing", _RENEW, _FRESH_REJECTED),
    42001: ErrcodeInfo("access token expired", _RENEW, _FRESH_REJECTED),
    40096: ErrcodeInfo("invalid AppKey or AppSecret", "stops at once (no retry)", CREDENTIALS_HINT),
    40089: ErrcodeInfo("invalid AppKey or AppSecret (legacy)", "stops at once (no retry)", CREDENTIALS_HINT),
    40035: ErrcodeInfo("invalid parameter", _STOP + ", which names the field", "fix the named field"),
    400002: ErrcodeInfo("invalid parameter", _STOP + ", which names the field", "fix the named field"),
    40056: ErrcodeInfo("invalid agent_id", _STOP, "check DINGTALK_AGENT_ID (the app's AgentID)"),
    33012: ErrcodeInfo("invalid userid", _STOP, "fix the recipient's userid"),
    40104: ErrcodeInfo("invalid mobile", _MASKED, "fix the recipient's mobile number"),
    60121: ErrcodeInfo("no employee with this mobile", _MASKED, "fix the recipient's mobile number"),
    60011: ErrcodeInfo(
        "the app lacks the permission for this API",
        _STOP,
        "grant the permission to the app in the DingTalk developer console",
    ),
    60020: ErrcodeInfo(
        "the caller's IP is not on the app's whitelist",
        _STOP,
        "add this server's egress IP to the app's IP whitelist in the DingTalk developer console",
    ),
    90002: ErrcodeInfo(
        "DingTalk throttled the API globally",
        "waits 1, 2, 4 s ... and resends the identical request",
        "retried with exponential backoff",
        retryable=True,
    ),
    90018: ErrcodeInfo(
        "the app called this API too often",
        "waits at least 1 s and resends the identical request",
        "retried after at least 1 s",
        retryable=True,
    ),
    # media/upload, and the media_id of image, file and OA messages [upload-media-files]
    40004: ErrcodeInfo("invalid media type", _STOP, "upload as image or file"),
    40005: ErrcodeInfo(
        "file format not accepted", _STOP, "send a csv as `attach: format: csv` (zipped); images as png"
    ),
    40006: ErrcodeInfo(
        "file too large",
        _STOP,
        "an image at most 1 MB, a file message at most 10 MB: draw a smaller chart, or send fewer rows "
        "(`attach: sql:`)",
    ),
    40007: ErrcodeInfo(
        "unknown media_id",
        "fails the run and forgets the cached media_id, so the retry uploads the file again",
        "retried with a fresh upload",
    ),
    41005: ErrcodeInfo("no file in the upload", _STOP, "the file goes in the multipart field `media`"),
    90020: ErrcodeInfo(
        "the organisation's monthly API quota is used up",
        "fails the run at once (no retry) and alerts the admins once",
        QUOTA_HINT,
    ),
}
UNKNOWN = ErrcodeInfo(
    "unexpected error",
    "stops the run and shows `sub_code` and `sub_msg` in the error and in history",
    "read DingTalk's sub_msg; the run can be retried",
)


@dataclass(frozen=True)
class Answer:
    """An errcode answer after unwrapping: `wrapped` when it came inside errcode 88."""

    errcode: int
    errmsg: str
    wrapped: bool = False


def unwrap(payload: dict[str, Any], errcode: int) -> Answer:
    """The real code behind a gateway envelope: `sub_code` or `subCode` (string or number), else
    `subcode=` in errmsg."""
    errmsg = str(payload.get("errmsg", ""))
    if errcode != GATEWAY:
        return Answer(errcode, errmsg)
    sub = _int(payload.get("sub_code"))
    sub = _int(payload.get("subCode")) if sub is None else sub
    if sub is None:
        found = re.search(r"subcode=(-?\d+)", errmsg)
        sub = int(found.group(1)) if found else None
    if sub is None:
        return Answer(GATEWAY, errmsg)
    sub_msg = payload.get("sub_msg") or payload.get("subMsg")
    if not sub_msg:
        found_msg = re.search(r"submsg=([^\]]*)", errmsg)
        sub_msg = found_msg.group(1) if found_msg else errmsg
    return Answer(sub, str(sub_msg), wrapped=True)


def describe(errcode: int) -> ErrcodeInfo:
    return ERRCODES.get(errcode, UNKNOWN)


def is_retryable(errcode: int) -> bool:
    return describe(errcode).retryable


def api_error(
    endpoint: str, errcode: int, errmsg: str, *, fields: Iterable[str] = (), wrapped: bool = False
) -> DeliveryError:
    """The error a user reads for an errcode; `fields` are the request's parameter names."""
    if endpoint == "gettoken" and errcode in CREDENTIAL_ERRCODES:
        return CredentialsError(
            f"DingTalk rejected the app credentials (errcode {errcode})",
            errcode=errcode,
            errmsg=errmsg,
            endpoint=endpoint,
            hint=CREDENTIALS_HINT,
        )
    info = describe(errcode)
    hint = _parameter_hint(errmsg, fields) if errcode in BAD_PARAMETER else info.hint
    code = f"errcode 88, sub_code {errcode}" if wrapped else f"errcode {errcode}"
    text = f"sub_msg {errmsg}" if wrapped else errmsg
    kind = QuotaExhaustedError if errcode == QUOTA_EXHAUSTED else DeliveryError
    return kind(
        f"DingTalk {endpoint} failed: {code} ({info.meaning}): {text}",
        errcode=errcode,
        errmsg=errmsg,
        endpoint=endpoint,
        hint=hint,
        retryable=info.retryable,
    )


def table_rows() -> list[str]:
    """docs/reference/error-codes.md's table, one markdown row per code (tools/gen_docs.py)."""
    rows = [_row(str(code), info) for code, info in ERRCODES.items()]
    return [*rows, _row("any other", UNKNOWN)]


def _row(code: str, info: ErrcodeInfo) -> str:
    return f"| {code} | {info.meaning} | {info.action} | {info.hint or ''} |".replace("|  |", "| |")


def _int(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(str(value).strip())
    except ValueError:
        return None


def _parameter_hint(errmsg: str, fields: Iterable[str]) -> str:
    # DingTalk's errmsg names the field; keep its full path (msg.markdown.title) when given.
    found = (re.search(rf"\b{re.escape(f)}(?:\.\w+)*", errmsg) for f in fields if f)
    named = [m.group(0) for m in found if m]
    if named:
        return f"fix the request field {', '.join(named)} (DingTalk says: {errmsg})"
    return f"fix the parameter DingTalk names: {errmsg or 'no detail given'}"
