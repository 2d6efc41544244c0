"""Imports in dispatcher/ run one way: no cycles, and the store and the DingTalk client stay low-level.

The graph is read from the source with `ast`: module-level, function-level and TYPE_CHECKING imports
alike, since a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dispatcher"


LOW_LAYERS = {
    "dispatcher.store": ("dispatcher.dingtalk", "dispatcher.render", "dispatcher.params", "dispatcher.runner",
                         "dispatcher.prepare", "dispatcher.outcomes", "dispatcher.services",
                         "dispatcher.daemon", "dispatcher.cli", "dispatcher.delivery", "dispatcher.sandbox"),
    "dispatcher.dingtalk": ("dispatcher.store", "dispatcher.render", "dispatcher.params", "dispatcher.runner",
                            "dispatcher.prepare", "dispatcher.outcomes", "dispatcher.services",
                            "dispatcher.daemon", "dispatcher.cli", "dispatcher.config",
                            "dispatcher.delivery"),
    "dispatcher.redact": ("dispatcher.dingtalk", "dispatcher.store"),
    "dispatcher.logs": ("dispatcher.dingtalk", "dispatcher.store"),
}  # fmt: skip


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, name: str, is_package: bool, known: set[str]) -> dict[str, bool]:
    """dispatcher modules `source` imports -> whether some import of it sits at module level."""
    tree = ast.parse(source)
    top = {id(node) for node in tree.body} | {id(n) for node in tree.body for n in _guarded(node)}
    found: dict[str, bool] = {}
    for node in ast.walk(tree):
        for target in _targets(node, name, is_package, known):
            found[target] = found.get(target, False) or id(node) in top
    found.pop(name, None)
    return found


def graph(root: Path = PACKAGE) -> dict[str, dict[str, bool]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    known = set(files)
    return {
        name: imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", known)
        for name, path in files.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def reachable(edges: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every module `start` loads, directly or not, with the import chain that gets there."""
    paths = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop()
        for child in edges.get(node, ()):
            if child not in paths:
                paths[child] = [*paths[node], child]
                todo.append(child)
    return paths


def test_module_level_imports_have_no_cycle() -> None:
    edges = {m: {t for t, top in ts.items() if top} for m, ts in graph().items()}
    assert cycles(edges) == []


def test_dispatcher_has_no_import_cycle() -> None:
    assert cycles({m: set(ts) for m, ts in graph().items()}) == []


@pytest.mark.parametrize("layer", sorted(LOW_LAYERS))
def test_low_layers_never_load_the_layers_above_them(layer: str) -> None:
    edges = {m: set(ts) for m, ts in graph().items()}
    starts = [m for m in edges if m == layer or m.startswith(f"{layer}.")]
    assert starts, f"{layer} is not in dispatcher/"
    bad = {
        target: " -> ".join(chain)
        for start in starts
        for target, chain in reachable(edges, start).items()
        if any(target == f or target.startswith((f"{f}.", f"{f}_")) for f in LOW_LAYERS[layer])
    }
    assert bad == {}


def test_the_checker_sees_a_daemon_import_added_to_the_store(tmp_path: Path) -> None:
    """The guard above is only as good as the graph: a planted upward import must show up."""
    root = tmp_path / "dispatcher"
    (root / "store").mkdir(parents=True)
    for name in ("__init__.py", "daemon.py", "store/__init__.py"):
        (root / name).write_text("", encoding="utf-8")
    (root / "store" / "db.py").write_text(
        "def f():\n    from dispatcher.daemon import Daemon\n", encoding="utf-8"
    )
    (root / "store" / "ledger.py").write_text("from .db import f\nfrom .. import daemon\n", encoding="utf-8")
    edges = graph(root)
    assert edges["dispatcher.store.db"] == {"dispatcher.daemon": False}
    assert edges["dispatcher.store.ledger"] == {"dispatcher.store.db": True, "dispatcher.daemon": True}
    (root / "daemon.py").write_text("from dispatcher.store.ledger import f\n", encoding="utf-8")
    assert cycles({m: set(ts) for m, ts in graph(root).items()}) != []


def _guarded(node: ast.stmt) -> list[ast.AST]:
    # `if TYPE_CHECKING:` and `try: import x` blocks at module level count as module level.
    if isinstance(node, ast.If | ast.Try):
        return [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
    return []


def _targets(node: ast.AST, name: str, is_package: bool, known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = _absolute(node, name, is_package)
        # `from dispatcher import clock` imports the module dispatcher.clock; `from x import f`, x itself.
        names = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known] or [base]
    else:
        return set()
    return {t for t in (_owner(n, known) for n in names) if t}


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = name.split(".") if is_package else name.split(".")[:-1]
    parts = parts[: len(parts) - node.level + 1]
    return ".".join([*parts, *([node.module] if node.module else [])])


def _owner(name: str, known: set[str]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None
