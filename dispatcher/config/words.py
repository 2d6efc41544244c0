"""The validation library's findings in the project's own words: the key, the form it expects, and
what it got ("retries should be at most 20, got 50"), never pydantic's "Input should be ...".

Its own module so that `config_check` stays about what is checked, not how it is phrased.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

# pydantic error type -> the expected form; `{...}` are filled from the error's ctx.
_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list, e.g. [a, b]",
    "tuple_type": "a list, e.g. [a, b]",
    "set_type": "a list, e.g. [a, b]",
    "dict_type": "a mapping of key: value",
    "model_type": "a mapping of key: value",
    "model_attributes_type": "a mapping of key: value",
    "none_required": "empty",
    "literal_error": "one of {expected}",
    "enum": "one of {expected}",
    "greater_than": "greater than {gt}",
    "greater_than_equal": "at least {ge}",
    "less_than": "less than {lt}",
    "less_than_equal": "at most {le}",
    "multiple_of": "a multiple of {multiple_of}",
    "too_short": "a list of at least {min_length} items",
    "too_long": "a list of at most {max_length} items",
    "string_too_long": "at most {max_length} characters",
    "url_parsing": "a URL",
    "url_scheme": "a URL starting with {expected_schemes}",
}
# In a list of alternatives "true or false" would read as two of them.
_IN_UNION = {"true or false": "true/false"}
_UNION_TAGS = {"str", "int", "float", "bool", "none"}


def merge_unions(errors: Iterable[Any]) -> list[dict[str, Any]]:
    """One finding per key: a value matching none of a union's types fails once per type, with the
    type's name appended to its location (`params.day.str`, `params.day.int`, ...)."""
    merged: list[dict[str, Any]] = []
    by_loc: dict[tuple[Any, ...], dict[str, Any]] = {}
    for err in errors:
        loc = tuple(err["loc"])
        tagged = len(loc) > 1 and str(loc[-1]) in _UNION_TAGS and err["type"] in _EXPECTED
        if not tagged:
            merged.append(dict(err))
            continue
        head = loc[:-1]
        if head in by_loc:
            by_loc[head]["alternatives"].append(err["type"])
            continue
        by_loc[head] = {**err, "loc": head, "alternatives": [err["type"]]}
        merged.append(by_loc[head])
    return merged


def plain_message(err: dict[str, Any]) -> str:
    """What is wrong with one key, in plain words naming the key and the form it expects."""
    key = str(err["loc"][-1]) if err["loc"] else "the value"
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "value_error":  # the project's own validators already speak its words
        message = str(err["msg"]).removeprefix("Value error, ")
        said = isinstance(value, dict | list) or "is not" in message or repr(value) in message
        return message if said else f"{value!r}: {message}"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return f"{key} should not be empty"
    if kind == "string_too_short":
        return f"{key} should have at least {ctx['min_length']} characters, got {len(str(value))}"
    if kind == "string_too_long":
        return f"{key} should have at most {ctx['max_length']} characters, got {len(str(value))}"
    alternatives = err.get("alternatives")
    if alternatives and len(alternatives) > 1:
        words = [_IN_UNION.get(w, w) for w in dict.fromkeys(_EXPECTED[a] for a in alternatives)]
        expected = f"{', '.join(words[:-1])} or {words[-1]}"
    elif kind in _EXPECTED:
        expected = _EXPECTED[kind].format(**{k: _ctx_text(v) for k, v in ctx.items()})
    else:  # a rarer type: keep the library's sentence, in the same shape
        return f"{key}: {str(err['msg']).replace('Input should be', 'should be')}, got {_got(value)}"
    return f"{key} should be {expected}, got {_got(value)}"


def _ctx_text(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list | tuple | set) else str(value)


def _got(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "nothing" if value is None else repr(value)


def unknown_key(model: type[Any], loc: tuple[str, ...]) -> str:
    """`loc`'s last key is not one of its model's: the closest one, or the list of allowed keys."""
    model = _nested_model(model, loc[:-1])
    fields = [f for f in getattr(model, "model_fields", {}) if f not in ("id", "path", "missing_vars")]
    guess = difflib.get_close_matches(loc[-1], fields, n=1)
    tail = f"; did you mean {guess[0]!r}?" if guess else f"; allowed: {', '.join(fields)}"
    return f"unknown key {loc[-1]!r}{tail}"


def _nested_model(model: type[Any], loc: tuple[str, ...]) -> type[Any]:
    """The model an unknown key sits in (`oa:` inside a report), so the hint lists its own keys."""
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        annotation = getattr(field, "annotation", None)
        options = getattr(annotation, "__args__", (annotation,))
        found = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        if not found:
            return model
        model = found[0]
    return model
