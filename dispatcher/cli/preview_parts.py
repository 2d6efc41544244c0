"""`preview`'s view of a run's messages: each part with its size, and `--out DIR` to look at the files.

Nothing is uploaded: where a message will carry a media_id, the preview shows a placeholder naming
the file it stands for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatcher.dingtalk.message import msg_bytes
from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from dispatcher.run.parts import Part
    from dispatcher.run.prepare import Prepared


def preview_parts(prepared: Prepared) -> list[Part]:
    from dispatcher.run.parts import build_parts

    if prepared.rendered is None:
        return []
    return build_parts(prepared.rendered.msg, prepared.rich, lambda kind, name, *_: f"<media_id of {name}>")


def files_of(prepared: Prepared) -> dict[str, bytes]:
    """File name -> content of what the run uploads (the chart) or attaches (even when too large)."""
    from dispatcher.run.rich import CHART_NAME

    rich = prepared.rich
    out: dict[str, bytes] = {}
    if rich is not None and rich.chart is not None:
        out[CHART_NAME] = rich.chart
    if rich is not None and rich.attachment is not None:
        out[rich.attachment.name] = rich.attachment.data
    return out


def parts_listing(prepared: Prepared) -> list[dict[str, Any]]:
    """Every message in sending order, with its size, and the files it carries (name and size)."""
    files = files_of(prepared)
    listing = []
    for part in preview_parts(prepared):
        carried = [
            name for name in files if f"<media_id of {name}>" in json.dumps(part.msg, ensure_ascii=False)
        ]
        listing.append(
            {
                "unit": part.unit,
                "msgtype": part.msg["msgtype"],
                "msg_bytes": msg_bytes(part.msg),
                "files": [{"name": name, "bytes": len(files[name])} for name in carried],
            }
        )
    return listing


def write_preview(prepared: Prepared, out: Path) -> list[Path]:
    """Each message's JSON (01-oa.json, 02-image.json, …), the PNG and the attachment, into `out`."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for i, part in enumerate(preview_parts(prepared), start=1):
            path = out / f"{i:02d}-{part.msg['msgtype']}.json"
            path.write_text(json.dumps(part.msg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            written.append(path)
        for name, data in files_of(prepared).items():
            (out / name).write_bytes(data)
            written.append(out / name)
        return written
    except OSError as exc:
        raise DispatcherError(
            f"cannot write the preview into {out}: {exc.strerror}", hint="choose a writable --out folder"
        ) from None
