"""Reports an earlier load of this process validated cleanly, reused by the next load (issue 28).

The daemon re-reads the whole file when it changes; validating 5,000 reports again, for a title
changed in one, was most of a reload. A report is reused only when everything its checks read is
the same: its own entry after `${VAR}` interpolation (compared as its `repr`, so `1` and `"1"` and
`1.0` differ), its id, and every other section of the file (sources, recipient groups, robots,
dingtalk, the defaults), compared as one fingerprint. Its query files are checked again on every
load (they live on disk, not in the file). Only a report that gave no problem and no warning is
kept, so every message, with its file:line, comes from a fresh check.

What is reused is the frozen `Report` model itself (pydantic `frozen=True`: its fields cannot be
reassigned); nothing in the project changes a report's lists or mappings in place.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from dispatcher.config.model import Report

Key = tuple[str, str, str]


def shared_fingerprint(data: dict[str, Any]) -> str:
    """Every section but the reports, as one digest: a change anywhere in them re-checks every report.

    A digest, not the text itself: each report's key holds it, and equal keys compare it in full
    (the text of 500 groups is most of a megabyte).
    """
    text = repr([(k, v) for k, v in data.items() if k != "reports"])
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def report_key(report_id: str, entry: Any, shared: str) -> Key:
    return (report_id, repr(entry), shared)


class ValidatedReports:
    """Per process. Each load reads from the previous load's clean reports and leaves its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[Key, Report] = {}

    def get(self, key: Key) -> Report | None:
        with self._lock:
            return self._kept.get(key)

    def replace(self, clean: dict[Key, Report]) -> None:
        """The reports of the load just finished; those of older loads are dropped (memory stays
        one config's worth, however many reloads)."""
        with self._lock:
            self._kept = dict(clean)

    def clear(self) -> None:
        self.replace({})


VALIDATED = ValidatedReports()
