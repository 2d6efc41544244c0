"""Keep the app secret and access tokens out of every log line, whichever library writes it.

urllib3 logs each request line (URL with `?access_token=` or `?appsecret=`) at DEBUG. A filter
on the logger itself runs before any handler, so no handler (pytest's caplog included) ever
sees the raw values.
"""

from __future__ import annotations

import logging
import re
import threading
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
_known: deque[str] = deque(maxlen=256)  # tokens rotate every ~2 h: bounded is plenty
_known_lock = threading.Lock()


def remember(value: str) -> None:
    """Mask this exact value wherever it appears, even outside `key=` form."""
    if len(value) < _MIN_SECRET_LEN:
        return
    with _known_lock:
        if value not in _known:
            _known.append(value)


def redact(text: str) -> str:
    text = _QUERY.sub(rf"\1={MASK}", text)
    text = _JSON.sub(rf"\1{MASK}\3", text)
    with _known_lock:
        values = list(_known)
    for value in values:
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


def install() -> None:
    """Attach the filter to the loggers that can see URLs; safe to call many times."""
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
