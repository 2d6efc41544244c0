"""The manual's generated parts, from the code that they describe, so that they cannot drift from it.

Run `.venv/bin/python tools/gen_docs.py` after changing the config models, the CLI's parser, the
errcode tables or `VARIABLES`; tests/test_docs_generated.py fails while a page is stale.

A generated part sits between two markers in a page (or in README.md):

    <!-- generated: NAME -->
    ...
    <!-- end generated: NAME -->

Everything outside the markers is written by hand. Kept out of the package: the docs are not
something an installed dispatcher needs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

COMMAND = ".venv/bin/python tools/gen_docs.py"
BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end generated: \2 -->)", re.DOTALL)
PAGES = ("README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md")))


# -- environment variables ------------------------------------------------------------------------


def env_table() -> str:
    from dispatcher.config.environment import VARIABLES

    rows = ["| variable | `NAME_FILE` | meaning |", "|---|---|---|"]
    for v in VARIABLES:
        name = v.name if "`" in v.name else f"`{v.name}`"
        rows.append(f"| {name} | {'yes' if v.file_form else 'no'} | {v.meaning} |")
    return "\n".join(rows)


# -- error codes ----------------------------------------------------------------------------------


def errcode_table() -> str:
    from dispatcher.dingtalk import errors

    head = ["| errcode | meaning | what the dispatcher does | what you do |", "|---|---|---|---|"]
    return "\n".join([*head, *errors.table_rows()])


def robot_errcode_table() -> str:
    from dispatcher.robot import errors

    head = ["| errcode | meaning | what the client does | what you do |", "|---|---|---|---|"]
    return "\n".join([*head, *errors.table_rows()])


# -- the command line -----------------------------------------------------------------------------


def commands() -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
    """(`send`, its parser, its one-line help), ..., `demo` and then `demo load`, in the parser's order."""
    from dispatcher.cli.main import build_parser

    def walk(
        parser: argparse.ArgumentParser, prefix: str
    ) -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help or "" for a in action._choices_actions}
                for name, child in action.choices.items():
                    full = f"{prefix} {name}".strip()
                    yield full, child, helps[name]
                    yield from walk(child, full)

    yield from walk(build_parser(), "")


def anchor(command: str) -> str:
    """The command's section in reference/cli.md: `demo load` -> `demo-load`."""
    return command.replace(" ", "-")


def cli_reference() -> str:
    parts = []
    for name, parser, summary in commands():
        text = summary[:1].upper() + summary[1:]
        parts.append(f"## {name}\n\n{text}.\n\n```text\n{_usage(parser)}\n```\n")
        rows = [r for r in (_option_row(a) for a in parser._actions) if r]
        if rows:
            parts.append("| argument | meaning |\n|---|---|\n" + "\n".join(rows) + "\n")
    return "\n".join(parts).rstrip()


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _option_row(action: argparse.Action) -> str:
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return ""
    if action.option_strings:
        metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
        if action.choices and not action.metavar:
            metavar = " {" + ",".join(map(str, action.choices)) + "}"
        names = ", ".join(f"`{o}{metavar}`" for o in action.option_strings)
    else:
        names = f"`{action.metavar or action.dest}`"
    if isinstance(action, argparse._SubParsersAction):
        return f"| {names} | one of: " + ", ".join(f"`{c}`" for c in action.choices) + " |"
    return f"| {names} | {_cell(action.help or '—')} |"


# -- reports.yaml ---------------------------------------------------------------------------------


def reports_yaml_reference() -> str:
    from dispatcher.config.schema import generate

    schema = generate()
    defs = schema["$defs"]
    sections = list(_model_paths(schema, defs))
    where = {model: path for path, model in sections}
    out = []
    for path, model in sections:
        node = schema if model == "Config" else defs[model]
        title = "Top level" if model == "Config" else f"`{path}`"
        out.append(f"## {title}\n")
        out.append("| key | type | default | meaning |\n|---|---|---|---|")
        for key, prop in node["properties"].items():
            typ, default = _type(prop, where), _default(prop)
            out.append(f"| `{key}` | {typ} | {default} | {_cell(prop.get('description', ''))} |")
        out.append("")
    return "\n".join(out).rstrip()


def _model_paths(schema: dict[str, Any], defs: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(path as written in reports.yaml, model name), breadth first from the top level."""
    queue, seen = [("", "Config")], set()
    while queue:
        path, model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        yield path, model
        node = schema if model == "Config" else defs[model]
        for key, prop in node["properties"].items():
            for ref, suffix in _refs(prop):
                queue.append((f"{path}.{key}{suffix}".lstrip("."), ref))


def _refs(prop: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for alt in [prop, *prop.get("anyOf", [])]:
        if "$ref" in alt:
            yield alt["$ref"].rsplit("/", 1)[1], ""
        values = alt.get("additionalProperties")
        if isinstance(values, dict) and "$ref" in values:
            yield values["$ref"].rsplit("/", 1)[1], ".NAME"


def _type(prop: dict[str, Any], where: dict[str, str]) -> str:
    alts = [a for a in prop.get("anyOf", [prop]) if not _variable_or_null(a)]
    words = [_one_type(a, where) for a in alts]
    return " or ".join(dict.fromkeys(w for w in words if w)) or "text"


def _variable_or_null(alt: dict[str, Any]) -> bool:
    return alt.get("type") == "null" or "\\$\\{" in str(alt.get("pattern", ""))


def _one_type(alt: dict[str, Any], where: dict[str, str]) -> str:
    if "$ref" in alt:
        model = alt["$ref"].rsplit("/", 1)[1]
        return f"[a mapping](#{_slug(where[model])})"
    if "enum" in alt:
        return " \\| ".join(f"`{v}`" for v in alt["enum"])
    kind = alt.get("type")
    if kind == "array":
        return f"list of {_one_type(alt.get('items', {}), where)}"
    if kind == "object":
        values = alt.get("additionalProperties")
        if isinstance(values, dict):
            return f"mapping of name → {_type(values, where)}"
        return "mapping: " + ", ".join(f"`{k}`" for k in alt.get("properties", {}))
    if isinstance(kind, list):
        return " or ".join(_BASIC.get(k, k) for k in kind)
    return _BASIC.get(kind or "", "any") + _bounds(alt)


_BASIC = {"string": "text", "integer": "integer", "number": "number", "boolean": "boolean"}


def _bounds(alt: dict[str, Any]) -> str:
    low, high = alt.get("minimum"), alt.get("maximum")
    if low is not None and high is not None:
        return f" {low} to {high}"
    return f" ≥ {low}" if low is not None else (f" ≤ {high}" if high is not None else "")


def _default(prop: dict[str, Any]) -> str:
    if "default" not in prop or prop["default"] is None:
        return ""
    return f"`{json.dumps(prop['default'], ensure_ascii=False)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _slug(path: str) -> str:
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", path).strip().lower())


# -- the pages ------------------------------------------------------------------------------------

GENERATORS: dict[str, Callable[[], str]] = {
    "env-table": env_table,
    "errcodes": errcode_table,
    "robot-errcodes": robot_errcode_table,
    "cli": cli_reference,
    "reports-yaml": reports_yaml_reference,
}


def regenerate(text: str) -> str:
    """`text` with every generated block written afresh; an unknown block name is an error."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in GENERATORS:
            raise SystemExit(f"unknown generated block {name!r}; known: {', '.join(GENERATORS)}")
        return f"{match.group(1)}{GENERATORS[name]()}\n{match.group(4)}"

    return BLOCK.sub(fill, text)


def stale_pages() -> list[str]:
    """The pages whose generated blocks differ from what the code gives now."""
    stale = []
    for page in PAGES:
        text = (REPO / page).read_text(encoding="utf-8")
        if regenerate(text) != text:
            stale.append(page)
    return stale


def main() -> int:
    for page in PAGES:
        path = REPO / page
        text = path.read_text(encoding="utf-8")
        new = regenerate(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"regenerated {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
