"""The sandbox's media/upload: DingTalk's checks on uploads, the files kept, and media_ids in messages.

`POST /media/upload?access_token=…` takes multipart/form-data with the field `type` (image | voice |
video | file) and the file under `media` [upload-media-files]. image: jpg, gif, png or bmp; file:
doc, docx, xls, xlsx, ppt, pptx, zip, pdf or rar; at most 20 MB, an image at most 1 MB (the 40006
row of DingTalk's error list; its upload page says 20 MB: the stricter one holds), and a file
message may reference at most 10 MB. Error codes (rules.ERRMSG) follow DingTalk's global list.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import PurePath
from typing import Any

from dispatcher.sandbox.rules import Refusal

MAX_UPLOAD = 20 * 1024 * 1024
MAX_IMAGE = 1 * 1024 * 1024
MAX_FILE_MESSAGE = 10 * 1024 * 1024
FORMATS = {
    "image": ("jpg", "gif", "png", "bmp"),  # DingTalk lists these four: a `.jpeg` is refused
    "file": ("doc", "docx", "xls", "xlsx", "ppt", "pptx", "zip", "pdf", "rar"),
    "voice": ("amr", "mp3", "wav"),
    "video": ("mp4",),
}
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
                 "bmp": "image/bmp"}  # fmt: skip


@dataclass(frozen=True)
class Medium:
    media_id: str
    kind: str
    name: str
    content: bytes
    created_at: int

    def content_type(self) -> str:
        ext = PurePath(self.name).suffix.lower().lstrip(".")
        return CONTENT_TYPES.get(ext, "application/octet-stream")


def parse_multipart(raw: bytes, content_type: str) -> dict[str, Any] | None:
    """{"type": text, "media": (file name, bytes)} from a multipart/form-data body; None if not one."""
    if "multipart/form-data" not in content_type.lower():
        return None
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        return None
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        filename = part.get_filename()
        fields[name] = (
            (filename or "", payload) if filename is not None else payload.decode("utf-8", "replace")
        )
    return fields


def summary(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the call log keeps of an upload: the file's name and size, not its bytes."""
    if body is None:
        return None
    out = {k: v for k, v in body.items() if k != "media"}
    media = body.get("media")
    if isinstance(media, tuple):
        out["media"] = {"filename": media[0], "bytes": len(media[1])}
    return out


class MediaStore:
    def __init__(self) -> None:
        self.media: dict[str, Medium] = {}

    def upload(self, body: dict[str, Any], now: float) -> dict[str, Any] | Refusal:
        kind = body.get("type")
        if kind not in FORMATS:
            return Refusal(40004, f"type {str(kind)[:20]!r} is not image, voice, video or file")
        media = body.get("media")
        if not isinstance(media, tuple) or not media[1]:
            return Refusal(41005, "the file must be sent in the multipart field 'media'")
        name, content = media
        ext = PurePath(name).suffix.lower().lstrip(".")
        if ext not in FORMATS[kind]:
            return Refusal(40005, f"{kind} accepts {', '.join(FORMATS[kind])}, not {ext or 'no extension'!r}")
        limit = MAX_IMAGE if kind == "image" else MAX_UPLOAD
        if len(content) > limit:
            return Refusal(40006, f"{len(content)} bytes, at most {limit}")
        media_id = "@lA" + secrets.token_urlsafe(18)
        self.media[media_id] = Medium(media_id, kind, name, content, int(now))
        return {
            "errcode": 0,
            "errmsg": "ok",
            "type": kind,
            "media_id": media_id,
            "created_at": int(now * 1000),
        }

    def check_msg(self, msg: dict[str, Any]) -> Refusal | None:
        """A message's media_id must name an upload of the right type (and a file of at most 10 MB)."""
        kind = msg.get("msgtype")
        if kind in ("image", "file"):
            return self._check(str(msg[kind].get("media_id")), str(kind))
        if kind == "oa":
            body = msg["oa"].get("body")
            image = body.get("image") if isinstance(body, dict) else None
            return self._check(str(image), "image") if image else None
        return None

    def _check(self, media_id: str, kind: str) -> Refusal | None:
        medium = self.media.get(media_id)
        if medium is None or medium.kind != kind:
            return Refusal(40007, f"media_id {media_id[:40]!r} is not an uploaded {kind}")
        if kind == "file" and len(medium.content) > MAX_FILE_MESSAGE:
            return Refusal(40006, f"a file message may reference at most {MAX_FILE_MESSAGE} bytes")
        return None
