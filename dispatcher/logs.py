"""One line per event, with the report id and fire time; `--log-format json` for machines."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any

from dispatcher.redact import RedactingFilter

log = logging.getLogger("dispatcher.daemon")
# The zone of a line's timestamp, given the report it is about (None: none); `--log-tz`.
ZoneOf = Callable[[str | None], tzinfo]
_zone_of: ZoneOf = lambda _report: UTC  # noqa: E731
# Libraries whose info and warnings are about themselves, not about reports: matplotlib's
# "building the font cache" and fontTools' parsing notes would read as the daemon's problems.
QUIET_LOGGERS = ("matplotlib", "fontTools", "PIL")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event: `event("run.sent", report="daily", fire_time=..., rows=3)`."""
    log.log(level, name, extra={"event_fields": fields})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, "event_fields", {}) or {})
    fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and k != "event_fields"})
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in fields.items() if v is not None}


def _time(record: logging.LogRecord) -> str:
    report = (getattr(record, "event_fields", None) or {}).get("report", getattr(record, "report", None))
    zone = _zone_of(report if isinstance(report, str) else None)
    return datetime.fromtimestamp(record.created, zone).isoformat(timespec="milliseconds")


def use_zone(zone: tzinfo | ZoneOf) -> None:
    """Timestamps from now on in `zone`, or in the zone `zone(report_id)` gives for each event."""
    global _zone_of
    _zone_of = zone if callable(zone) and not isinstance(zone, tzinfo) else (lambda _report: zone)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [_time(record), record.levelname.ljust(7), record.getMessage()]
        parts += [f"{k}={_text(v)}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += " error=" + _text(" | ".join(self.formatException(record.exc_info).splitlines()[-3:]))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {"ts": _time(record), "level": record.levelname.lower(), "event": record.getMessage()}
        payload.update(_fields(record))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False, default=str)


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(str(text).split())
    return json.dumps(text, ensure_ascii=False) if (" " in text or not text) else text


def setup(fmt: str = "text", level: int = logging.INFO, zone: tzinfo | ZoneOf = UTC) -> None:
    """Log to stderr; secrets are redacted on the handler, so every logger's records pass the filter."""
    use_zone(zone)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
