"""Keep the app secret and access tokens out of every log line, whichever library writes it.

urllib3 logs each request line (URL with `?access_token=` or `?appsecret=`) at DEBUG. A filter
on the logger itself runs before any handler, so no handler (pytest's caplog included) ever
sees the raw values.

The exact values to mask (app secrets, access tokens) live on a `Secrets` object that each app
owns (`dispatcher.app`). Logging is process-wide, so the filter masks the values of every app
that is open: the module keeps only weak references to the open apps' `Secrets`, dropped when an
app closes (`release`).
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections import deque
from typing import Any

MASK = "***"
LOGGERS = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.util.retry",
    "requests",
    "dispatcher",
    "dispatcher.dingtalk",
    "dispatcher.dingtalk.client",
)
_QUERY = re.compile(r"(?i)\b(access_token|appsecret)=([^&\s\"'#<>)]+)")
_JSON = re.compile(r'(?i)("(?:access_token|appsecret)"\s*:\s*")([^"]*)(")')
_MIN_SECRET_LEN = 6  # shorter values would mask ordinary words


class Secrets:
    """One app's exact values to mask; tokens rotate every ~2 h, so a bounded set is plenty."""

    def __init__(self) -> None:
        self._values: deque[str] = deque(maxlen=256)
        self._lock = threading.Lock()

    def remember(self, value: str) -> None:
        if len(value) < _MIN_SECRET_LEN:
            return
        with self._lock:
            if value not in self._values:
                self._values.append(value)

    def values(self) -> list[str]:
        with self._lock:
            return list(self._values)

    def __contains__(self, value: object) -> bool:
        with self._lock:
            return value in self._values

    def __repr__(self) -> str:
        return f"Secrets({len(self._values)} values)"


_open: weakref.WeakSet[Secrets] = weakref.WeakSet()  # the open apps' sets, for process-wide logging
_open_lock = threading.Lock()


def remember(value: str, secrets: Secrets) -> None:
    """Mask this exact value wherever it appears, even outside `key=` form, while its app is open."""
    secrets.remember(value)
    with _open_lock:
        _open.add(secrets)


def release(secrets: Secrets) -> None:
    """The app that owns `secrets` closed: its values are no longer looked for."""
    with _open_lock:
        _open.discard(secrets)


def redact(text: str) -> str:
    text = _QUERY.sub(rf"\1={MASK}", text)
    text = _JSON.sub(rf"\1{MASK}\3", text)
    with _open_lock:
        sets = list(_open)
    for value in (v for secrets in sets for v in secrets.values()):
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, args and traceback text; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _clean(record.msg)
        if isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when set, so the raw traceback is never rendered.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()
_install_lock = threading.Lock()


def install(secrets: Secrets | None = None) -> None:
    """Attach the filter to the loggers that can see URLs (and mask `secrets`); safe to call many times."""
    if secrets is not None:
        with _open_lock:
            _open.add(secrets)
    with _install_lock:
        for name in LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, RedactingFilter) for f in logger.filters):
                logger.addFilter(_FILTER)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)
    cleaned = redact(text)
    return cleaned if cleaned != text else value
