"""The userid cache: mobile -> DingTalk userid per app, so a lookup is paid once a week, not per run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, select

from dispatcher import clock
from dispatcher.store.db import StateStore
from dispatcher.store.schema import userid_cache


class UseridCache:
    """Implements dispatcher.dingtalk.client.UseridCache over the state store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def get_userids(self, app_key: str, mobiles: Sequence[str], max_age: timedelta) -> dict[str, str]:
        if not mobiles:
            return {}
        query = select(userid_cache.c.mobile, userid_cache.c.userid, userid_cache.c.resolved_at).where(
            userid_cache.c.app_key == app_key, userid_cache.c.mobile.in_(list(mobiles))
        )
        return self._fresh(query, max_age)

    def get_any_app(self, mobiles: Sequence[str], max_age: timedelta) -> dict[str, str]:
        """Whichever app resolved each mobile, newest entry winning: for a dry run without an app key."""
        if not mobiles:
            return {}
        cache = userid_cache.c
        query = select(cache.mobile, cache.userid, cache.resolved_at).where(cache.mobile.in_(list(mobiles)))
        return self._fresh(query.order_by(cache.resolved_at), max_age)

    def put_userids(self, app_key: str, mapping: Mapping[str, str]) -> None:
        if not mapping:
            return
        now = clock.now()
        with self.store.begin() as conn:
            conn.execute(
                delete(userid_cache).where(
                    userid_cache.c.app_key == app_key, userid_cache.c.mobile.in_(list(mapping))
                )
            )
            conn.execute(
                userid_cache.insert(),
                [
                    {"app_key": app_key, "mobile": m, "userid": u, "resolved_at": now}
                    for m, u in mapping.items()
                ],
            )

    def _fresh(self, query: Select[Any], max_age: timedelta) -> dict[str, str]:
        oldest: datetime = clock.now() - max_age
        with self.store.connect() as conn:
            rows = conn.execute(query).all()
        return {m: u for m, u, at in rows if at >= oldest}
