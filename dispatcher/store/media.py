"""The media cache: (app, content hash) -> media_id, so the same chart or file is uploaded once per
fire time (the hash covers the fire time: dispatcher.dingtalk.media). Rows older than `keep` are
deleted as new ones arrive: each fire time of a report with a chart adds one."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, select

from dispatcher import clock
from dispatcher.errors import StateError
from dispatcher.store.db import StateStore
from dispatcher.store.schema import media_cache

log = logging.getLogger(__name__)


class MediaCache:
    """Implements dispatcher.dingtalk.media.MediaCache over the state store."""

    def __init__(self, store: StateStore, keep: timedelta = timedelta(days=2)) -> None:
        self.store = store
        self.keep = keep

    def get_media(self, app_key: str, digest: str, max_age: timedelta) -> str | None:
        query = select(media_cache.c.media_id, media_cache.c.uploaded_at).where(
            media_cache.c.app_key == app_key, media_cache.c.digest == digest
        )
        with self.store.connect() as conn:
            row = conn.execute(query).first()
        if row is None or row.uploaded_at < clock.now() - max_age:
            return None
        return str(row.media_id)

    def put_media(self, app_key: str, digest: str, media_id: str) -> None:
        where = (media_cache.c.app_key == app_key, media_cache.c.digest == digest)
        now = clock.now()
        row = {"app_key": app_key, "digest": digest, "media_id": media_id, "uploaded_at": now}
        expired = (media_cache.c.app_key == app_key, media_cache.c.uploaded_at < now - self.keep)
        try:
            with self.store.begin() as conn:
                conn.execute(delete(media_cache).where(*where))
                conn.execute(delete(media_cache).where(*expired))
                conn.execute(media_cache.insert().values(row))
        except StateError as exc:  # a concurrent upload of the same content won: either id works
            log.warning("could not cache a media_id: %s", exc)

    def drop_media(self, app_key: str, digest: str) -> None:
        where = (media_cache.c.app_key == app_key, media_cache.c.digest == digest)
        with self.store.begin() as conn:
            conn.execute(delete(media_cache).where(*where))
