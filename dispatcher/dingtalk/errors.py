"""What each DingTalk errcode means, whether retrying can help, and what the user must do.

Source: the server-API error pages, summarised in docs/dingtalk-api.md sections 1, 2, 6, 7.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from dispatcher.errors import CredentialsError, DeliveryError


@dataclass(frozen=True)
class ErrcodeInfo:
    meaning: str
    hint: str | None = None
    retryable: bool = False


CREDENTIALS_HINT = "check DINGTALK_APP_KEY and DINGTALK_APP_SECRET"
BAD_PARAMETER = frozenset({40035, 400002})
# A stale or revoked token: fetch a new one and retry the call once.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
# gettoken answers these when the AppKey/AppSecret pair is wrong.
CREDENTIAL_ERRCODES = frozenset({40001, 40089})
THROTTLED = 90018  # per app per API: DingTalk advises waiting at least 1 s

ERRCODES: dict[int, ErrcodeInfo] = {
    -1: ErrcodeInfo("DingTalk is busy", "a transient fault; retried automatically", retryable=True),
    40001: ErrcodeInfo("access token invalid", "a fresh token was rejected too: " + CREDENTIALS_HINT),
    40014: ErrcodeInfo("access token invalid", "a fresh token was rejected too: " + CREDENTIALS_HINT),
    42001: ErrcodeInfo("access token expired", "a fresh token was rejected too: " + CREDENTIALS_HINT),
    40089: ErrcodeInfo("invalid AppKey or AppSecret", CREDENTIALS_HINT),
    40035: ErrcodeInfo("invalid parameter"),
    400002: ErrcodeInfo("invalid parameter"),
    40056: ErrcodeInfo("invalid agent_id", "check DINGTALK_AGENT_ID (the app's AgentID)"),
    33012: ErrcodeInfo("invalid userid", "fix the recipient's userid"),
    40104: ErrcodeInfo("invalid mobile", "fix the recipient's mobile number"),
    60121: ErrcodeInfo("no employee with this mobile", "fix the recipient's mobile number"),
    60011: ErrcodeInfo(
        "the app lacks the permission for this API",
        "grant the permission to the app in the DingTalk developer console",
    ),
    60020: ErrcodeInfo(
        "the caller's IP is not on the app's whitelist",
        "add this server's egress IP to the app's IP whitelist in the DingTalk developer console",
    ),
    90002: ErrcodeInfo("DingTalk throttled the API globally", "retried with backoff", retryable=True),
    90018: ErrcodeInfo("the app called this API too often", "retried after 1 s", retryable=True),
    90020: ErrcodeInfo(
        "the organisation's monthly API quota is used up",
        "wait for next month's quota or upgrade the DingTalk plan",
    ),
}


def describe(errcode: int) -> ErrcodeInfo:
    return ERRCODES.get(errcode, ErrcodeInfo("unexpected error"))


def is_retryable(errcode: int) -> bool:
    return describe(errcode).retryable


def api_error(endpoint: str, errcode: int, errmsg: str, *, fields: Iterable[str] = ()) -> DeliveryError:
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
    return DeliveryError(
        f"DingTalk {endpoint} failed: errcode {errcode} ({info.meaning}): {errmsg}",
        errcode=errcode,
        errmsg=errmsg,
        endpoint=endpoint,
        hint=hint,
        retryable=info.retryable,
    )


def _parameter_hint(errmsg: str, fields: Iterable[str]) -> str:
    # DingTalk's errmsg names the field; keep its full path (msg.markdown.title) when given.
    found = (re.search(rf"\b{re.escape(f)}(?:\.\w+)*", errmsg) for f in fields if f)
    named = [m.group(0) for m in found if m]
    if named:
        return f"fix the request field {', '.join(named)} (DingTalk says: {errmsg})"
    return f"fix the parameter DingTalk names: {errmsg or 'no detail given'}"
