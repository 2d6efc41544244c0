"""HTTP to DingTalk: one pooled session, the shared access token, pacing and retries per call.

Tokens and pacers are shared through a `Registry`, which the composition root (`dispatcher.app`)
owns: one per app, never a module global, so two apps in one process never share a token cache.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

from dispatcher import redact
from dispatcher.dingtalk.errors import TOKEN_ERRCODES
from dispatcher.dingtalk.http import NoRedirectSession, redirect_target
from dispatcher.dingtalk.message import dumps
from dispatcher.dingtalk.pacing import Pacer, Pacing, SharedUnits
from dispatcher.dingtalk.retry import (
    Backoff,
    Outcome,
    RetryPolicy,
    give_up,
    judge_exception,
    judge_response,
    redirected,
)
from dispatcher.leaks import refuse, unlabelled

log = logging.getLogger(__name__)

OnCall = Callable[[str, int | None, float], None]


@dataclass(frozen=True)
class Credentials:
    app_key: str
    app_secret: SecretStr | str  # stored as SecretStr, so repr() shows '**********'
    agent_id: int

    def __post_init__(self) -> None:
        if not isinstance(self.app_secret, SecretStr):
            object.__setattr__(self, "app_secret", SecretStr(self.app_secret))

    def secret(self) -> str:
        s = self.app_secret
        return s.get_secret_value() if isinstance(s, SecretStr) else s


@dataclass(frozen=True)
class Upload:
    """A media/upload body: the `type` field and the file under the field name `media`, whose part
    carries the file's Content-Type as DingTalk's own client sends it."""

    kind: str
    name: str
    content: bytes
    content_type: str = "application/octet-stream"


@dataclass
class _Token:
    value: str
    fresh_until: float


class Registry:
    """Tokens, token locks and pacers shared by every client of one app, per (base URL, app key).

    DingTalk throttles gettoken, and its rate limits count per app, not per client object.
    """

    def __init__(self, secrets: redact.Secrets | None = None) -> None:
        self.secrets = secrets if secrets is not None else redact.Secrets()
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._token_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._pacers: dict[tuple[Any, ...], Pacer] = {}
        self._shared: SharedUnits | None = None

    def cached(self, key: tuple[str, str, str]) -> _Token | None:
        with self._lock:
            return self._tokens.get(key)

    def store(self, key: tuple[str, str, str], token: _Token) -> None:
        with self._lock:
            self._tokens[key] = token

    def drop(self, key: tuple[str, str, str], stale: str) -> None:
        with self._lock:
            cached = self._tokens.get(key)
            if cached and cached.value == stale:  # another thread may already hold a new one
                del self._tokens[key]

    def token_lock(self, key: tuple[str, str, str]) -> threading.Lock:
        with self._lock:
            return self._token_locks.setdefault(key, threading.Lock())

    def share_pacing(self, units: SharedUnits) -> None:
        """Pace through the state store's windows, which every replica of the app shares."""
        with self._lock:
            self._shared = units

    def pacer(self, key: tuple[Any, ...], pacing: Pacing) -> Pacer:
        base_url, app_key, *_, monotonic, sleep = key
        # A fake clock (tests) keeps the window in this process: the store's runs on wall time.
        real = monotonic is time.monotonic and sleep is time.sleep
        scope = f"{hashlib.sha256(base_url.encode()).hexdigest()[:8]}:{app_key}"
        with self._lock:
            pacer = self._pacers.get(key)
            if pacer is None:
                shared = self._shared if real else None
                pacer = Pacer(pacing, monotonic=monotonic, sleep=sleep, shared=shared, scope=scope)
                self._pacers[key] = pacer
            return pacer

    def forget_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()


class Transport:
    def __init__(
        self,
        credentials: Credentials,
        base_url: str,
        *,
        pacing: Pacing,
        retry: RetryPolicy,
        timeout: tuple[float, float],
        on_call: OnCall | None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        registry: Registry | None = None,
    ) -> None:
        # Without an app's registry a transport shares nothing: a bare client is its own app.
        self.registry = registry if registry is not None else Registry()
        redact.install(self.registry.secrets)
        redact.remember(credentials.secret(), self.registry.secrets)
        self.credentials = credentials
        self.base_url = base_url
        self.retry = retry
        self.timeout = timeout
        self._on_call = on_call
        self._sleep = sleep
        self._monotonic = monotonic
        # The secret's digest is in the key so a wrong or rotated secret never reuses a token.
        digest = hashlib.sha256(credentials.secret().encode()).hexdigest()[:16]
        self._key = (base_url, credentials.app_key, digest)
        self.pacer = self.registry.pacer((base_url, credentials.app_key, pacing, monotonic, sleep), pacing)
        self._session = NoRedirectSession()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)

    def close(self) -> None:
        self._session.close()

    # -- token -------------------------------------------------------------------------------

    def token(self) -> str:
        """A valid access token; one gettoken at a time per app, however many threads ask."""
        cached = self._cached_token()
        if cached:
            return cached
        with self._token_lock():
            cached = self._cached_token()
            if cached:
                return cached
            payload, _ = self.call("gettoken", "/gettoken", method="GET", auth=False)
            value = str(payload["access_token"])
            redact.remember(value, self.registry.secrets)
            fresh_for = cache_seconds(payload.get("expires_in"))
            self.registry.store(self._key, _Token(value, self._monotonic() + fresh_for))
            return value

    def _cached_token(self) -> str | None:
        cached = self.registry.cached(self._key)
        if cached and self._monotonic() < cached.fresh_until:
            return cached.value
        return None

    def _drop_token(self, stale: str) -> None:
        self.registry.drop(self._key, stale)

    def _token_lock(self) -> threading.Lock:
        return self.registry.token_lock(self._key)

    # -- calls -------------------------------------------------------------------------------

    def call(
        self,
        endpoint: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        method: str = "POST",
        auth: bool = True,
        upload: Upload | None = None,
        retry: RetryPolicy | None = None,
    ) -> tuple[dict[str, Any], int]:
        """One API call with retries; returns the payload and the number of HTTP attempts.

        Every attempt sends the same bytes: if a response was lost, DingTalk's same-content
        rule turns the resend into a no-op instead of a second notification. `upload` sends a
        multipart/form-data body (media/upload) instead of JSON; `retry` overrides the policy.
        """
        # The last line of defence: no request body (a message, a file) carries a secret this app knows.
        what = f"the file {upload.name!r}" if upload is not None else f"the {endpoint} request"
        sent = [upload.name, upload.content] if upload is not None else body
        refuse(sent, unlabelled(self.registry.secrets.values()), what)
        data: bytes | Upload | None = (
            upload if upload is not None else (None if body is None else dumps(body).encode("utf-8"))
        )
        fields = list(body) if body else (["type", "media"] if upload is not None else [])
        backoff = Backoff(retry or self.retry, self._monotonic)
        renewed, attempts = False, 0
        while True:
            token = self.token() if auth else None
            attempts += 1
            outcome = self._attempt(endpoint, method, path, data, token, fields)
            if outcome.payload is not None:
                return outcome.payload, attempts
            if token and outcome.errcode in TOKEN_ERRCODES and not renewed:
                log.info("%s: token rejected (errcode %s), renewing", endpoint, outcome.errcode)
                self._drop_token(token)
                renewed = True
                continue
            assert outcome.error is not None
            if not outcome.retryable:
                raise outcome.error
            delay = backoff.next_delay(outcome.min_delay, outcome.exponential)
            if delay is None:
                raise give_up(outcome, backoff.attempts)
            log.warning("%s; retrying in %.2f s", outcome.error.message, delay)
            self._sleep(delay)

    def _attempt(
        self,
        endpoint: str,
        method: str,
        path: str,
        data: bytes | Upload | None,
        token: str | None,
        fields: list[str],
    ) -> Outcome:
        if token:
            params = {"access_token": token}
        else:
            params = {"appkey": self.credentials.app_key, "appsecret": self.credentials.secret()}
        body: dict[str, Any] = {"data": data}
        if isinstance(data, Upload):  # requests writes the multipart body and its boundary header
            body = {
                "data": {"type": data.kind},
                "files": {"media": (data.name, data.content, data.content_type)},
            }
        elif data is not None:
            body["headers"] = {"Content-Type": "application/json; charset=utf-8"}
        with self.pacer.endpoint(endpoint).reserve():
            started = self._monotonic()
            try:
                response = self._session.request(
                    method, self.base_url + path, params=params, timeout=self.timeout,
                    allow_redirects=False, **body,
                )  # fmt: skip
            except requests.RequestException as exc:
                outcome = judge_exception(endpoint, exc)
            else:
                outcome = self._judge(endpoint, response, fields)
        self._report(endpoint, outcome.errcode if outcome.error else 0, self._monotonic() - started)
        return outcome

    def _judge(self, endpoint: str, response: requests.Response, fields: list[str]) -> Outcome:
        if (where := redirect_target(response)) is not None:
            return redirected(endpoint, response.status_code, where)
        return judge_response(endpoint, response.status_code, response.content, self.retry, fields)

    def _report(self, endpoint: str, errcode: int | None, seconds: float) -> None:
        if self._on_call is None:
            return
        try:
            self._on_call(endpoint, errcode, seconds)
        except Exception:  # a broken metrics hook must never stop a delivery
            log.exception("on_call hook failed for %s", endpoint)


def cache_seconds(expires_in: Any) -> float:
    """Keep a token until 5 minutes before it expires; half its life if it is shorter than that."""
    try:
        ttl = float(expires_in or 0)
    except (TypeError, ValueError):
        ttl = 0.0
    ttl = ttl if ttl > 0 else 7200.0
    return ttl / 2 if ttl <= 300 else ttl - 300
