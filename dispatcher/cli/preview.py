"""`dispatcher preview`: one report's message as its run would send it, sending nothing.

Its own module so that `cli` stays the parser; it imports nothing of `cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from dispatcher.cli.common import instant, load, prepare_report, print_message
from dispatcher.words import plural

if TYPE_CHECKING:
    from dispatcher.run.prepare import Prepared


def cmd_preview(args: argparse.Namespace) -> int:
    from dispatcher.cli.views import as_recipient, split_lines
    from dispatcher.run.prepare import fire_time_at

    config = load(args)
    report = config.report(args.report_id)
    prepared = prepare_report(config, report, fire_time_at(config, report, instant(config, args.at)))
    split = split_lines(prepared, args.as_value)
    if args.as_value is not None:
        prepared = as_recipient(prepared, args.as_value)
    from dispatcher.cli.robots import group_previews, print_groups

    out = preview_dict(prepared)
    groups = group_previews(config, prepared)
    if args.json:
        print(json.dumps(out | ({"robots": groups} if groups else {}), ensure_ascii=False, indent=2))
    else:
        _print_preview(out, config.dingtalk.max_msg_bytes, split)
        print_groups(groups)
    if args.out is not None:
        from dispatcher.cli.preview_parts import write_preview

        for path in write_preview(prepared, args.out):
            print(f"wrote      {path}", file=sys.stderr if args.json else sys.stdout)
    return 1 if out["errors"] else 0  # the run would be partial: a part would not be sent


def preview_dict(prepared: Prepared) -> dict[str, Any]:
    from dispatcher.cli.preview_parts import parts_listing
    from dispatcher.run.split import summary

    rendered = prepared.rendered
    slicing = prepared.slicing
    extra = {"slices": summary(slicing), "empty_rows": slicing.empty_rows} if slicing is not None else {}
    return extra | {
        "id": prepared.report.id,
        "title": rendered.title if rendered else prepared.report.title,
        "fire_time": prepared.fire_time.isoformat(),
        "params": prepared.params,
        "rows": prepared.result.rows,
        "truncated": bool(prepared.result.truncated or (rendered and rendered.truncated)),
        "action": prepared.action,
        "msgtype": rendered.msg["msgtype"] if rendered else None,
        "markdown": rendered.markdown if rendered else None,
        "msg": rendered.msg if rendered else None,
        "msg_bytes": rendered.msg_bytes if rendered else 0,
        "rows_shown": rendered.rows_shown if rendered else 0,
        "parts": parts_listing(prepared),
        "warnings": list(prepared.rich.warnings) if prepared.rich else [],
        "errors": [prepared.rich.attach_error] if prepared.rich and prepared.rich.attach_error else [],
    }


def _print_preview(out: dict[str, Any], limit: int, split: list[str]) -> None:
    print(f"report     {out['id']}")
    print(f"fire time  {out['fire_time']}")
    print(f"params     {json.dumps(out['params'], ensure_ascii=False)}")
    print(f"rows       {out['rows']}{' (truncated)' if out['truncated'] else ''}")
    if out["action"] == "skip":
        print("result     no rows and on_empty is 'skip': this run would send nothing")
        return
    print(f"message    {out['msgtype']}, {out['msg_bytes']} of {plural(limit, 'byte')}, "
          f"{plural(out['rows_shown'], 'row')} shown")  # fmt: skip
    print(f"title      {out['title']}")
    for line in split:  # a split_by report: its slices, and which message is shown below
        print(line)
    for part in [p for p in out["parts"] if p["unit"] or p["files"]]:
        files = ", ".join(f"{f['name']} ({plural(f['bytes'], 'byte')})" for f in part["files"])
        print(f"part       {part['msgtype']}, {plural(part['msg_bytes'], 'byte')}: {files}")
    for warning in out["warnings"]:
        print(f"warning    {warning}")
    for error in out["errors"]:
        print(f"error      {error}")
    print_message(out["markdown"])
