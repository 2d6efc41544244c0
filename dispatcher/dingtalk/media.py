"""Media upload: a file becomes a `media_id` that image, file and OA messages reference.

`POST /media/upload?access_token=…`, multipart/form-data with the field `type` and the file under
`media` [upload-media-files]. Each upload counts against the monthly quota, so media_ids are
reused through a cache keyed by the content's hash (and its file name, which the file message
shows) and by a scope, the run's fire time. DingTalk delivers the same content to the same person
once a day and drops a repeat while answering success (143106); an image or file message's content
is its media_id, so an unchanged chart needs a new media_id at each fire time to reach anyone. A
retry of the same fire time reuses its own. Checks DingTalk's format and size limits before
spending a call.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import PurePath
from typing import Protocol

from dispatcher.dingtalk.transport import Transport, Upload
from dispatcher.errors import DeliveryError, TooLargeError

UPLOAD_PATH = "/media/upload"
MB = 1024 * 1024
# DingTalk's pages disagree on images: the upload page says 20 MB, the 40006 error row 1 MB. The
# stricter one holds (a 600x400 chart is far below it); a file *message* may reference 10 MB.
LIMITS = {"image": 1 * MB, "file": 10 * MB}
INVALID_MEDIA_ID = 40007  # a message's media_id is unknown to DingTalk (expired, or another app's)
FORMATS = {
    "image": ("jpg", "gif", "png", "bmp"),  # DingTalk's list: it refuses a `.jpeg` name
    "file": ("doc", "docx", "xls", "xlsx", "ppt", "pptx", "zip", "pdf", "rar"),
}
_OFFICE = "application/vnd.openxmlformats-officedocument"
CONTENT_TYPES = {
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "png": "image/png", "bmp": "image/bmp",
    "doc": "application/msword", "docx": f"{_OFFICE}.wordprocessingml.document",
    "xls": "application/vnd.ms-excel", "xlsx": f"{_OFFICE}.spreadsheetml.sheet",
    "ppt": "application/vnd.ms-powerpoint", "pptx": f"{_OFFICE}.presentationml.presentation",
    "zip": "application/zip", "pdf": "application/pdf", "rar": "application/vnd.rar",
}  # fmt: skip
_FORMAT_HINTS = {
    "csv": "a csv must be zipped (attach: format: csv does that)",
    "jpeg": "name the file .jpg: the content is the same, DingTalk only reads the name",
}
_SMALLER = {
    "image": "draw a smaller chart (fewer points or a simpler kind)",
    "file": "send fewer rows (the attachment's own sql:), or link to the data instead",
}


class MediaCache(Protocol):
    def get_media(self, app_key: str, digest: str, max_age: timedelta) -> str | None: ...

    def put_media(self, app_key: str, digest: str, media_id: str) -> None: ...

    def drop_media(self, app_key: str, digest: str) -> None: ...


def digest(base_url: str, kind: str, name: str, content: bytes, scope: str = "") -> str:
    """The cache key: a media_id belongs to one DingTalk (or sandbox), the file message shows its name,
    and `scope` (a fire time) keeps one run's media_id from being another run's repeat."""
    head = f"{base_url}\0{kind}\0{name}\0{scope}\0".encode()
    return hashlib.sha256(head + content).hexdigest()


def check_upload(kind: str, name: str, content: bytes) -> None:
    """DeliveryError for what DingTalk would refuse: a wrong format, or too large to send."""
    ext = PurePath(name).suffix.lower().lstrip(".")
    allowed = FORMATS.get(kind)
    if allowed is None:
        raise DeliveryError(
            f"media type {kind!r} is not one of {', '.join(FORMATS)}", endpoint="media_upload"
        )
    if ext not in allowed:
        raise DeliveryError(
            f"{name!r}: DingTalk accepts a {kind} only as {', '.join(allowed)}",
            endpoint="media_upload",
            hint=_FORMAT_HINTS.get(ext),
        )
    limit = LIMITS[kind]
    if len(content) > limit:
        what = "an image may be" if kind == "image" else "a file message may carry"
        raise DeliveryError(
            f"{name!r} is {_mb(content)}; {what} at most {limit // MB} MB",
            endpoint="media_upload",
            hint=_SMALLER[kind],
        )


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(PurePath(name).suffix.lower().lstrip("."), "application/octet-stream")


def media_id(
    transport: Transport,
    kind: str,
    name: str,
    content: bytes,
    cache: MediaCache | None,
    max_age: timedelta,
    scope: str = "",
) -> str:
    """The media_id for this content in this scope: from the cache, else one upload (remembered)."""
    check_upload(kind, name, content)
    key = digest(transport.base_url, kind, name, content, scope)
    app_key = transport.credentials.app_key
    if cache is not None:
        cached = cache.get_media(app_key, key, max_age)
        if cached:
            return cached
    upload = Upload(kind, name, content, content_type(name))
    try:
        payload, _ = transport.call("media_upload", UPLOAD_PATH, upload=upload)
    except TooLargeError:
        raise _too_large(kind, name, content) from None
    found = str(payload.get("media_id") or "")
    if not found:
        raise DeliveryError("media/upload answered without a media_id", endpoint="media_upload")
    if cache is not None:
        cache.put_media(app_key, key, found)
    return found


def forget(
    transport: Transport, kind: str, name: str, content: bytes, cache: MediaCache | None, scope: str = ""
) -> None:
    """DingTalk no longer knows this content's media_id: the next send uploads it again."""
    if cache is not None:
        key = digest(transport.base_url, kind, name, content, scope)
        cache.drop_media(transport.credentials.app_key, key)


def _too_large(kind: str, name: str, content: bytes) -> DeliveryError:
    """HTTP 413 (an HTML page, not DingTalk's JSON): the file, its size and the limit, not the URL."""
    what = "an image" if kind == "image" else "a file message"
    return DeliveryError(
        f"{name!r} ({_mb(content)}) was refused as too large (HTTP 413); DingTalk accepts {what} of "
        f"at most {LIMITS[kind] // MB} MB, so a proxy between here and DingTalk may allow less",
        endpoint="media_upload",
        hint=f"{_SMALLER[kind]}; or raise the proxy's request-body limit (nginx: client_max_body_size)",
    )


def _mb(content: bytes) -> str:
    return f"{len(content) / MB:.1f} MB"
