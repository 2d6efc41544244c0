"""Alert state: when each report last alerted, so replicas together send at most one alert per period."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from dispatcher.store.db import StateStore
from dispatcher.store.schema import alerts


def alert_allowed(store: StateStore, report_id: str, now: datetime, every: timedelta) -> bool:
    """True (and remembered) for at most one caller per report per `every`, across processes."""
    # The WHERE makes the update a compare-and-set: of two racing callers only one matches.
    refresh = (
        update(alerts)
        .where(alerts.c.report_id == report_id, alerts.c.last_alert_at <= now - every)
        .values(last_alert_at=now)
    )
    with store.connect() as conn:
        with conn.begin():
            if conn.execute(refresh).rowcount == 1:
                return True
        try:
            with conn.begin():
                conn.execute(alerts.insert().values(report_id=report_id, last_alert_at=now))
        except IntegrityError:
            return False
    return True
