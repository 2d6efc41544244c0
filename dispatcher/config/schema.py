"""The JSON Schema (draft 2020-12) of reports.yaml, generated from the pydantic models in config.py.

pydantic describes what the models hold; YAML may say more than that, so the schema is widened
where the loader accepts more: `${VAR}` in place of any number, boolean or fixed word (it is
interpolated before validation), durations and sizes as text where a field has a before-validator
(`90s`, `64MB`), and YAML 1.1's `off` for a fixed set of words. Descriptions come from config_docs.
The package ships the result as reports.schema.json; a test keeps the two equal.
"""

from __future__ import annotations

import json
import typing
from importlib import resources
from typing import Any

from pydantic import BaseModel

from dispatcher.config.docs import DESCRIPTIONS, INPUTS, INTERNAL
from dispatcher.config.model import Config

SCHEMA_FILE = "reports.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
# `${VAR}`, `${VAR:-default}`: any string holding one passes where the YAML needs a number or a word.
VARIABLE = {"type": "string", "pattern": r"\$\{[^}]+\}"}
_KEEP = ("description", "default", "title", "examples")


def models(root: type[BaseModel] = Config) -> dict[str, type[BaseModel]]:
    """Every model reachable from `root` through its fields, by class name (pydantic's $defs keys)."""
    found: dict[str, type[BaseModel]] = {}
    pending: list[Any] = [root]
    while pending:
        item = pending.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            if item.__name__ not in found:
                found[item.__name__] = item
                pending += [f.annotation for f in item.model_fields.values()]
        else:
            pending += list(typing.get_args(item))
    return found


def generate() -> dict[str, Any]:
    """The schema as `dispatcher schema` prints it."""
    raw = Config.model_json_schema(mode="validation")
    defs = raw.pop("$defs", {})
    for name, model in models().items():
        node = raw if model is Config else defs[name]
        _finish_model(model, node)
    return {
        "$schema": DIALECT,
        "title": "dispatcher reports.yaml",
        "description": "Scheduled SQL reports delivered as DingTalk work notifications (see README.md).",
        **{k: v for k, v in raw.items() if k != "title"},
        "$defs": defs,
    }


def missing_descriptions() -> list[str]:
    """Model fields with no line in config_docs.DESCRIPTIONS."""
    return [key for key in field_keys() if key not in DESCRIPTIONS]


def field_keys() -> list[str]:
    """`Model.field` for every key a user may write."""
    keys = [f"{name}.{field}" for name, model in models().items() for field in model.model_fields]
    return [k for k in keys if k not in INTERNAL]


def _finish_model(model: type[BaseModel], node: dict[str, Any]) -> None:
    node.pop("title", None)
    node["additionalProperties"] = False
    props: dict[str, Any] = node.get("properties", {})
    loose = _before_validated(model)
    for field in list(props):
        key = f"{model.__name__}.{field}"
        if key in INTERNAL:
            del props[field]
            continue
        prop = props[field]
        prop.pop("title", None)
        prop.pop("writeOnly", None)
        if "$ref" in prop:
            prop.pop("default", None)  # a section's keys carry their own defaults
        if key in INPUTS:
            prop = {**INPUTS[key], **{k: prop[k] for k in _KEEP if k in prop}}
        elif field in loose:
            prop = _loosen(prop)
        prop = _allow_variables(prop)
        if key in DESCRIPTIONS:
            prop["description"] = DESCRIPTIONS[key]
        props[field] = prop
    if "required" in node:
        node["required"] = [r for r in node["required"] if f"{model.__name__}.{r}" not in INTERNAL]


def _before_validated(model: type[BaseModel]) -> set[str]:
    """Fields whose validator sees the raw YAML value first: they accept more than their type."""
    fields: set[str] = set()
    for decorator in model.__pydantic_decorators__.field_validators.values():
        if decorator.info.mode == "before":
            fields.update(decorator.info.fields)
    return fields


def _loosen(prop: dict[str, Any]) -> dict[str, Any]:
    """A number also as text (a duration, a size); a fixed word also as YAML 1.1's on/off."""
    branches = prop.get("anyOf", [prop])
    extra: list[dict[str, Any]] = []
    for branch in branches:
        if branch.get("type") in ("number", "integer"):
            extra.append({"type": "string", "minLength": 1})
        if "enum" in branch:
            extra.append({"type": "boolean"})
    if not extra:
        return prop
    meta = {k: prop[k] for k in _KEEP if k in prop}
    core = [{k: v for k, v in b.items() if k not in _KEEP} for b in branches]
    return {**meta, "anyOf": core + _unique(extra)}


def _allow_variables(node: dict[str, Any]) -> dict[str, Any]:
    """Let `${VAR}` stand wherever YAML needs a number, a boolean or a word from a list."""
    if "anyOf" in node:
        branches = [_children(b) for b in node["anyOf"]]
        if any(_needs_variable(b) for b in branches) and not any(map(_any_text, branches)):
            branches.append(VARIABLE)
        return {**node, "anyOf": branches}
    node = _children(node)
    if not _needs_variable(node):
        return node
    meta = {k: node[k] for k in _KEEP if k in node}
    core = {k: v for k, v in node.items() if k not in _KEEP}
    return {**meta, "anyOf": [core, VARIABLE]}


def _children(node: dict[str, Any]) -> dict[str, Any]:
    """`node` with `_allow_variables` applied to the schemas of its items, values and properties."""
    out = dict(node)
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _allow_variables(out[key])
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _allow_variables(v) for k, v in out["properties"].items()}
    return out


def _needs_variable(node: dict[str, Any]) -> bool:
    kinds = node.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    scalar = any(k in ("number", "integer", "boolean") for k in kinds) and "string" not in kinds
    return scalar or "enum" in node or "const" in node


def _any_text(node: dict[str, Any]) -> bool:
    return node.get("type") == "string" and not ({"enum", "const", "pattern"} & set(node))


def _unique(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, ensure_ascii=False, indent=2) + "\n"


def shipped() -> str:
    """The schema file in the package, as text."""
    return resources.files("dispatcher.config").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
