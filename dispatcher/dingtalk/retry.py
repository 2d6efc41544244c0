"""What one HTTP answer from DingTalk means (done, retry, give up) and how long to wait.

Every DingTalk answer is HTTP 200 with an `errcode`; only the errcode says whether a call
worked. The per-IP block answers HTML or `{"status":1111,"wait":5}` instead
[call-frequency-limit].
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

from dispatcher.dingtalk import errors
from dispatcher.errors import DeliveryError, TooLargeError
from dispatcher.redact import redact

IP_BLOCKED = 1111
TOO_LARGE = 413  # a server or proxy refusing the body, usually with an HTML page
_PERMANENT_TRANSPORT = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    max_total_seconds: float = 60.0
    base_delay: float = 0.5
    max_delay: float = 8.0
    throttle_min_delay: float = 1.0  # errcode 90018: DingTalk asks for at least 1 s


@dataclass(frozen=True)
class Outcome:
    """One attempt's verdict: a payload, or an error that may be worth retrying."""

    payload: dict[str, Any] | None = None
    error: DeliveryError | None = None
    errcode: int | None = None
    retryable: bool = False
    min_delay: float = 0.0
    exponential: bool = False  # 90002: the minimum wait doubles with each attempt (1, 2, 4 s ...)


class Backoff:
    """One call's retry budget: full-jitter exponential delays within attempts and total time."""

    def __init__(
        self, policy: RetryPolicy, monotonic: Callable[[], float], rng: random.Random | None = None
    ) -> None:
        self.policy = policy
        self.attempts = 1
        self._monotonic = monotonic
        self._started = monotonic()
        self._rng = rng or random.Random()

    def next_delay(self, min_delay: float = 0.0, exponential: bool = False) -> float | None:
        """Seconds to wait before the next attempt, or None when the budget is spent."""
        p = self.policy
        if self.attempts >= p.max_attempts:
            return None
        if exponential:
            min_delay *= 2 ** (self.attempts - 1)
        cap = min(p.max_delay, p.base_delay * 2 ** (self.attempts - 1))
        delay = max(self._rng.uniform(0.0, cap), min_delay)
        if self._monotonic() - self._started + delay > p.max_total_seconds:
            return None
        self.attempts += 1
        return delay


def judge_response(
    endpoint: str, status: int, content: bytes, policy: RetryPolicy, fields: Iterable[str] = ()
) -> Outcome:
    if status == TOO_LARGE:
        hint = "a proxy between here and DingTalk may limit request bodies (nginx: client_max_body_size)"
        too_large = TooLargeError(
            f"DingTalk {endpoint}: the request is too large (HTTP 413)", endpoint=endpoint, hint=hint
        )
        return Outcome(error=too_large)
    payload = _json_object(content)
    if payload is None:
        return _not_json(endpoint, status, policy)
    if payload.get("status") == IP_BLOCKED and "errcode" not in payload:
        wait = _number(payload.get("wait"), 5.0)
        return _transient(endpoint, f"this IP is blocked for calling too often (wait {wait:g} s)", wait)
    if status >= 500:
        return _transient(endpoint, f"HTTP {status}", 0.0, errcode=_errcode(payload))
    errcode = _errcode(payload)
    if errcode == 0:
        return Outcome(payload=payload)
    if errcode is None:
        return Outcome(error=DeliveryError(f"DingTalk {endpoint} answered without an errcode"))
    answer = errors.unwrap(payload, errcode)
    errmsg = redact(answer.errmsg)
    error = errors.api_error(endpoint, answer.errcode, errmsg, fields=fields, wrapped=answer.wrapped)
    throttled = answer.errcode in (errors.THROTTLED, errors.THROTTLED_GLOBALLY)
    return Outcome(
        error=error,
        errcode=answer.errcode,
        retryable=error.retryable,
        min_delay=policy.throttle_min_delay if throttled else 0.0,
        exponential=answer.errcode == errors.THROTTLED_GLOBALLY,
    )


def judge_exception(endpoint: str, exc: requests.RequestException) -> Outcome:
    """A transport failure. The exception's text holds the full URL: only its redaction is kept."""
    detail = redact(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, _PERMANENT_TRANSPORT):
        error = DeliveryError(
            f"DingTalk {endpoint}: bad URL: {detail}",
            endpoint=endpoint,
            hint="check DINGTALK_API_BASE",
        )
        return Outcome(error=error)
    return _transient(endpoint, f"could not reach DingTalk: {detail}", 0.0)


def redirected(endpoint: str, status: int, where: str) -> Outcome:
    """A 3xx answer: never followed, never retried (see dispatcher.dingtalk.http)."""
    error = DeliveryError(
        f"DingTalk {endpoint}: HTTP {status}, a redirect to {where}; redirects are never followed",
        endpoint=endpoint,
        hint="DingTalk never redirects: check DINGTALK_API_BASE and any proxy in between",
    )
    return Outcome(error=error, errcode=-1)


def give_up(outcome: Outcome, attempts: int) -> DeliveryError:
    error = outcome.error
    assert error is not None
    return DeliveryError(
        f"{error.message} (gave up after {attempts} attempt{'s' if attempts > 1 else ''})",
        errcode=error.errcode,
        errmsg=error.errmsg,
        endpoint=error.endpoint,
        hint=error.hint or "DingTalk kept failing; the run can be retried later",
        retryable=True,
    )


def _transient(endpoint: str, what: str, min_delay: float, errcode: int | None = None) -> Outcome:
    error = DeliveryError(f"DingTalk {endpoint}: {what}", endpoint=endpoint, retryable=True)
    return Outcome(error=error, errcode=errcode, retryable=True, min_delay=min_delay)


def _not_json(endpoint: str, status: int, policy: RetryPolicy) -> Outcome:
    if status >= 500:
        return _transient(endpoint, f"HTTP {status}", 0.0)
    if status in (200, 403, 429):
        # DingTalk's per-IP block answers an HTML page instead of JSON.
        return _transient(endpoint, f"non-JSON answer (HTTP {status})", policy.throttle_min_delay)
    error = DeliveryError(
        f"DingTalk {endpoint}: unexpected HTTP {status} with a non-JSON body",
        endpoint=endpoint,
        hint="check DINGTALK_API_BASE points at the DingTalk API",
    )
    return Outcome(error=error)


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(content)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _errcode(payload: dict[str, Any]) -> int | None:
    value = payload.get("errcode")
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default
