"""What a run needs besides its report, built once per daemon (or per command) and shared by its runs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dispatcher.config.model import Config
from dispatcher.sources.query import Sources

if TYPE_CHECKING:
    from dispatcher.dingtalk.client import DingTalkClient
    from dispatcher.run.metrics import Metrics
    from dispatcher.run.robots import RobotSender
    from dispatcher.store.ledger import Ledger


@dataclass
class Services:
    """What a run needs besides its report: shared by every run of one daemon."""

    config: Config
    sources: Sources
    client: DingTalkClient
    ledger: Ledger
    metrics: Metrics
    owner: str
    robots: RobotSender | None = None  # the group robots, when the config has any
    source_slots: dict[str, threading.BoundedSemaphore] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def slot(self, source: str) -> threading.BoundedSemaphore:
        """A slow source holds up only its own reports: each source has a concurrency limit."""
        with self._lock:
            if source not in self.source_slots:
                limit = self.config.daemon.source_concurrency
                self.source_slots[source] = threading.BoundedSemaphore(limit)
            return self.source_slots[source]
