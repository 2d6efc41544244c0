"""The last line of defence against a secret leaving: a message, a file or a stored row that holds a
known secret value is refused, and the error never quotes the value.

`validate` keeps credential variables in their own fields (`config_secrets`); this catches what
arrives another way, above all through data: a query that returns the app secret, a robot's token
in a column. The values looked for are the app's credentials (the app secret, each robot's webhook
token and signing secret) and the access tokens the app fetched.

Text is compared after NFKC normalisation, because escaping swaps markdown characters for their
full-width look-alikes (`_` becomes `＿`) that read the same on a phone. A value longer than a
table cell (64 characters) is looked for by its first 32 characters too, since a cell cut short
still shows those. Values under 6 characters are not looked for: they would match ordinary text
(the same floor as `redact`).
"""

from __future__ import annotations

import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from io import BytesIO
from typing import Any

from dispatcher.errors import SecretLeakError

MIN_CHARS = 6
PREFIX_CHARS = 32
_ZIP = b"PK\x03\x04"
_CHUNK = 1 << 20

Labelled = Iterable[tuple[str, str]]  # (what the secret is, its value)


def unlabelled(values: Iterable[str]) -> list[tuple[str, str]]:
    """Values whose kind is not known here (the client's own set): named as a group in errors."""
    return [
        ("a credential (the app secret, an access token or a robot's token or secret)", v) for v in values
    ]


def _needles(secrets: Labelled) -> list[tuple[str, str]]:
    out = []
    for label, value in secrets:
        value = unicodedata.normalize("NFKC", value or "")
        if len(value) < MIN_CHARS:
            continue
        out.append((label, value))
        if len(value) > 2 * PREFIX_CHARS:
            out.append((label, value[:PREFIX_CHARS]))
    return out


def find(value: Any, secrets: Labelled) -> str | None:
    """The label of the first secret `value` holds (a message, a file's bytes, nested data), or None."""
    needles = _needles(secrets)
    if not needles:
        return None
    for text in _texts(value):
        if isinstance(text, bytes):
            found = _in_bytes(text, needles)
        else:
            normal = unicodedata.normalize("NFKC", text)
            found = next((label for label, needle in needles if needle in normal), None)
        if found is not None:
            return found
    return None


def refuse(value: Any, secrets: Labelled, what: str) -> None:
    """Raise SecretLeakError when `value` holds one of `secrets`; `what` names the message or file."""
    label = find(value, secrets)
    if label is not None:
        raise SecretLeakError(
            f"{what} holds {label}; it was refused and not sent or stored",
            hint="the value came from the report's data or config: keep credentials out of the query's"
            " result and the template (rotate the credential if it was shown anywhere)",
        )


def _texts(value: Any) -> Iterator[str | bytes]:
    if isinstance(value, str | bytes):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(key)
            yield from _texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)
    elif value is not None:
        yield str(value)


def _in_bytes(data: bytes, needles: list[tuple[str, str]]) -> str | None:
    """In the bytes as they are, and inside each member of a zip (an xlsx, a zipped csv)."""
    encoded = [(label, needle.encode("utf-8")) for label, needle in needles]
    found = next((label for label, needle in encoded if needle in data), None)
    if found is not None or not data.startswith(_ZIP):
        return found
    try:
        with zipfile.ZipFile(BytesIO(data)) as archive:
            for member in archive.infolist():
                with archive.open(member) as stream:
                    if (found := _in_stream(stream, encoded)) is not None:
                        return found
    except (zipfile.BadZipFile, OSError, RuntimeError):
        return None  # not a zip after all: its raw bytes were searched above
    return None


def _in_stream(stream: Any, needles: list[tuple[str, bytes]]) -> str | None:
    """Chunk by chunk, each chunk joined to the end of the last so a value split between them is seen."""
    overlap = max(len(n) for _, n in needles) - 1
    tail = b""
    while chunk := stream.read(_CHUNK):
        window = tail + chunk
        found = next((label for label, needle in needles if needle in window), None)
        if found is not None:
            return found
        tail = window[-overlap:] if overlap else b""
    return None
