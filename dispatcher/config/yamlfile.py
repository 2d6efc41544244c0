"""Safe YAML loading that remembers the line of every key, and `${VAR}` interpolation.

Why not `yaml.safe_load`: validation messages must say `reports.yaml:14: reports.x.schedule: …`,
so we walk the composed node tree ourselves and record each key path's line.
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dispatcher.config.environment import SecretFileError, lookup
from dispatcher.errors import Problem

KeyPath = tuple[str, ...]

MAX_FILE_BYTES = 2 * 1024 * 1024  # a config larger than this is a mistake, not a config
MAX_DEPTH = 32  # deeper than any real config; stops recursion bombs
MAX_NODES = 200_000  # stops alias ("billion laughs") expansion

# libyaml's parser when PyYAML has it: the pure-Python one spent 5 of the 6 s of validating a
# 5,000-report file (bench scenario 7). Both give the same nodes and line marks.
# A file libyaml refuses is parsed again by the pure-Python loader, whose messages the README and
# the tests know (libyaml says "did not find expected node content" where it means "too deep").
_LOADERS: tuple[Any, ...] = (*([yaml.CSafeLoader] if yaml.__with_libyaml__ else []), yaml.SafeLoader)


def _cached_resolver(loader_class: Any) -> Any:
    """`loader_class` with its implicit-tag resolution memoised per distinct scalar.

    libyaml calls the Python resolver once per scalar, and its regular expressions were a fifth of
    parsing a 5,000-report file, whose 150,000 scalars are mostly the same userids again and again
    (bench scenario 7). The tag depends only on the arguments, so a per-loader cache is exact.
    """

    class Cached(loader_class):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._tags: dict[str, str] = {}

        def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
            if kind is not yaml.ScalarNode or implicit is None or self.yaml_path_resolvers:
                return str(super().resolve(kind, value, implicit))
            if not implicit[0]:
                return _STR  # quoted (or block) text: no implicit type, as the base class says
            # A plain scalar's tag is decided by its text alone (no path resolvers in a safe loader).
            tag = self._tags.get(value)
            if tag is None:
                tag = self._tags[value] = str(super().resolve(kind, value, implicit))
            return tag

    Cached.__name__ = f"Cached{loader_class.__name__}"
    return Cached


_STR = "tag:yaml.org,2002:str"
_SCALAR_NODE, _TEXT = {yaml.ScalarNode}, {str}
_LOADERS = tuple(_cached_resolver(loader) for loader in _LOADERS)

_VAR = re.compile(r"\$\$|\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class Document:
    """A loaded YAML file: plain data plus where each key path came from."""

    path: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    # The lists of scalars (userids, `to`) by key path: their items' lines are looked up when a
    # problem needs one, not recorded for all 80,000 userids of a big file (bench scenario 7).
    # Several nodes at one path only after a duplicate key; the first with that index answers.
    scalar_lists: dict[KeyPath, list[yaml.SequenceNode]] = field(default_factory=dict)

    def line(self, keypath: KeyPath) -> int | None:
        """Line of the longest known prefix of `keypath` (a missing key points at its parent)."""
        for end in range(len(keypath), -1, -1):
            found = self.lines.get(tuple(keypath[:end])) or self._item_line(tuple(keypath[:end]))
            if found:
                return found
        return None

    def _item_line(self, keypath: KeyPath) -> int | None:
        if not keypath or not keypath[-1].isdecimal():
            return None
        index = int(keypath[-1])
        for node in self.scalar_lists.get(keypath[:-1], ()):
            if index < len(node.value):
                return int(node.value[index].start_mark.line) + 1
        return None

    def problem(self, keypath: KeyPath, message: str) -> Problem:
        return Problem(self.path.name, self.line(keypath), ".".join(keypath), message)


def load(path: Path) -> Document:
    """Read and parse `path`; every failure becomes a Problem, never an exception."""
    doc = Document(path=path, data=None)
    text = _read_text(path, doc)
    if text is None:
        return doc
    for loader_class in _LOADERS:
        doc.problems.clear()
        doc.lines.clear()
        doc.scalar_lists.clear()
        try:
            doc.data = _parse(loader_class, text, doc)
            return doc
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            what = exc.problem or exc.context or "invalid YAML"
            doc.problems.append(Problem(path.name, line, "", f"YAML syntax error: {what}"))
        except yaml.YAMLError as exc:
            doc.problems.append(Problem(path.name, None, "", f"YAML error: {_one_line(exc)}"))
        except RecursionError:
            doc.problems.append(Problem(path.name, None, "", "YAML is nested too deeply"))
        doc.data = None
    return doc


def _parse(loader_class: Any, text: str, doc: Document) -> Any:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return _Walker(loader, doc).walk(node, ()) if node is not None else {}
    finally:
        loader.dispose()


def _read_text(path: Path, doc: Document) -> str | None:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ValueError(f"file is {size} bytes; a config file is at most {MAX_FILE_BYTES}")
        raw = path.read_bytes()
        if b"\x00" in raw:
            raise ValueError("file contains NUL bytes; it is not a YAML text file")
        return raw.decode("utf-8-sig")
    except FileNotFoundError:
        msg = "config file not found (pass -c PATH, or run from the folder holding reports.yaml)"
    except IsADirectoryError:
        msg = "is a directory, not a config file"
    except UnicodeDecodeError as exc:
        msg = f"not UTF-8 text (invalid byte at offset {exc.start})"
    except (OSError, ValueError) as exc:
        msg = _one_line(exc)
    doc.problems.append(Problem(str(path), None, "", msg))
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class _Walker:
    def __init__(self, loader: Any, doc: Document) -> None:
        self.loader = loader
        self.doc = doc
        self.nodes = 0
        self.scalars: dict[tuple[str, str], Any] = {}

    def walk(self, node: yaml.Node, keypath: KeyPath) -> Any:
        self.nodes += 1
        if len(keypath) > MAX_DEPTH or self.nodes > MAX_NODES:
            raise yaml.YAMLError("the document is nested too deeply or expands too many aliases")
        self.doc.lines.setdefault(keypath, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, keypath)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node, keypath)
        return self._scalar(node)

    def _sequence(self, node: yaml.SequenceNode, keypath: KeyPath) -> list[Any]:
        items = node.value
        if not set(map(type, items)) <= _SCALAR_NODE:  # map(type): no Python call per item
            return [self.walk(item, (*keypath, str(i))) for i, item in enumerate(items)]
        # A list of scalars, the bulk of a big file: no walk (and no key path) per item.
        self.nodes += len(items)
        if items and (len(keypath) + 1 > MAX_DEPTH or self.nodes > MAX_NODES):
            raise yaml.YAMLError("the document is nested too deeply or expands too many aliases")
        self.doc.scalar_lists.setdefault(keypath, []).append(node)
        # Text is the node's own value (what the constructor returns): no call per userid.
        return [item.value if item.tag == _STR else self._scalar(item) for item in items]

    def _scalar(self, node: yaml.Node) -> Any:
        """Scalars repeat (the same userids in many groups) and construct to immutable values."""
        if node.tag == _STR and type(node) is yaml.ScalarNode:
            return node.value  # what SafeConstructor.construct_yaml_str returns
        if not isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node, deep=True)
        key = (node.tag, node.value)
        if key not in self.scalars:
            self.scalars[key] = self.loader.construct_object(node, deep=True)
        return self.scalars[key]

    def _mapping(self, node: yaml.MappingNode, keypath: KeyPath) -> dict[str, Any]:
        self.loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node)
            if not isinstance(key, str | int | float | bool) or key is None:
                self.doc.problems.append(self.doc.problem(keypath, "keys must be plain scalars"))
                continue
            key = str(key)
            child = (*keypath, key)
            if key in out:
                where = Problem(self.doc.path.name, key_node.start_mark.line + 1, ".".join(child), "")
                self.doc.problems.append(
                    Problem(where.file, where.line, where.key, "duplicate key (the later one would win)")
                )
            self.doc.lines[child] = key_node.start_mark.line + 1
            out[key] = self.walk(value_node, child)
        return out


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a big file becomes nodes, data and models.

    Those are hundreds of thousands of objects that all stay alive, and each collection walks them
    all again: it was over half of libyaml's composing time for a 5,000-report file (bench
    scenario 7). Reference counting still frees what is dropped; cycles wait until the end.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class Interpolated:
    value: Any
    missing: dict[KeyPath, list[str]] = field(default_factory=dict)
    # Every variable each key path names, set or not: where a credential's variable may go is
    # checked by name (`config_secrets`), so a default or an unset variable does not hide it.
    used: dict[KeyPath, list[str]] = field(default_factory=dict)
    # `NAME_FILE` that cannot be used (both set, or unreadable): a problem wherever it is
    errors: dict[KeyPath, list[str]] = field(default_factory=dict)


def interpolate(data: Any, env: Mapping[str, str] | None = None) -> Interpolated:
    """Replace `${VAR}` and `${VAR:-default}` in every string; `$$` is a literal `$`.

    Unset variables become "" and are collected by key path rather than raised, because whether
    that is an error depends on where they are (delivery credentials are only needed to deliver).
    `VAR_FILE` stands in for an unset `VAR` (dispatcher.config.environment.lookup).
    """
    env = os.environ if env is None else env
    result = Interpolated(value=None)
    result.value = _interp(data, (), env, result)
    return result


def _interp(data: Any, keypath: KeyPath, env: Mapping[str, str], result: Interpolated) -> Any:
    if isinstance(data, dict):
        return {k: _interp(v, (*keypath, k), env, result) for k, v in data.items()}
    if isinstance(data, list):
        if set(map(type, data)) <= _TEXT and "$" not in "".join(data):
            return list(data)  # the userid lists of a big file: nothing to replace, no key paths
        return [_interp(v, (*keypath, str(i)), env, result) for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data
    unset: list[str] = []
    used: list[str] = []
    errors: list[str] = []

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, sep, default = match.group(1).partition(":-")
        if not _NAME.match(name):
            unset.append(f"${{{match.group(1)}}} (not a valid variable name)")
            return ""
        used.append(name)
        try:
            value = lookup(name, env)
        except SecretFileError as exc:
            errors.append(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
            return ""
        if value:
            return value
        if sep:
            return default
        if value is None:
            unset.append(name)
        return ""

    text = _VAR.sub(sub, data)
    if unset:
        result.missing[keypath] = unset
    if used:
        result.used[keypath] = used
    if errors:
        result.errors[keypath] = errors
    return text
