"""Imports in dispatcher/ run one way: no cycles, and the store and the DingTalk client stay low-level.

The graph is read from the source with `ast`: module-level, function-level and TYPE_CHECKING imports
alike, since a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dispatcher"


# The packages from the top of the stack to the bottom. A module may import its own rank and the
# ranks below it, never one above (a lazy import counts). Peers of one rank must not form a cycle.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__", "cli"),
    ("daemon", "ops"),
    ("app",),
    ("run",),
    ("render", "sandbox", "demo"),
    ("dingtalk", "robot", "store", "config", "sources", "templating", "schedule"),
    ("dispatcher", "errors", "clock", "logs", "redact", "words", "leaks"),
)
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}

# Within the bottom rank, the store and the DingTalk client stay low-level: they never load these,
# even through a peer.
LOW_LAYERS = {
    "dispatcher.store": ("dispatcher.dingtalk", "dispatcher.render", "dispatcher.config.model",
                         "dispatcher.config.params", "dispatcher.run", "dispatcher.daemon", "dispatcher.cli",
                         "dispatcher.sandbox", "dispatcher.robot"),
    "dispatcher.dingtalk": ("dispatcher.store", "dispatcher.render", "dispatcher.run", "dispatcher.daemon",
                            "dispatcher.cli", "dispatcher.config", "dispatcher.robot"),
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
        if any(target == f or target.startswith(f"{f}.") for f in LOW_LAYERS[layer])
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


def package_of(module: str) -> str:
    """`dispatcher.run.prepare` -> `run`; a top-level module is its own package; the root is `dispatcher`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(edges: dict[str, set[str]]) -> dict[str, str]:
    return {
        f"{module} -> {target}": f"rank {RANK[package_of(module)]} imports rank {RANK[package_of(target)]}"
        for module, targets in edges.items()
        for target in targets
        if RANK[package_of(target)] < RANK[package_of(module)]
    }


def package_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for module, targets in edges.items():
        found.setdefault(package_of(module), set()).update(
            package_of(t) for t in targets if package_of(t) != package_of(module)
        )
    return found


def test_every_module_belongs_to_a_layer() -> None:
    assert {package_of(m) for m in graph()} - set(RANK) == set(), "add the new package to LAYERS"


def test_imports_run_one_way_down_the_layers() -> None:
    assert upward_imports({m: set(ts) for m, ts in graph().items()}) == {}


def test_packages_of_one_layer_form_no_cycle() -> None:
    assert cycles(package_edges({m: set(ts) for m, ts in graph().items()})) == []


def test_no_private_name_is_imported_from_another_package() -> None:
    crossing = []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dispatcher"):
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
                if private and package_of(node.module) != package_of(name):
                    crossing.append(f"{name}: from {node.module} import {', '.join(private)}")
    assert crossing == []


def test_the_layer_check_sees_a_planted_upward_import(tmp_path: Path) -> None:
    root = tmp_path / "dispatcher"
    for package in ("config", "render", "store"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("", encoding="utf-8")
    (root / "__init__.py").write_text("", encoding="utf-8")
    (root / "render" / "chart.py").write_text("from dispatcher.config.model import X\n", encoding="utf-8")
    (root / "config" / "model.py").write_text(
        "def f():\n    from dispatcher.render import chart\n", encoding="utf-8"
    )
    (root / "store" / "db.py").write_text("from dispatcher.config import model\n", encoding="utf-8")
    edges = {m: set(ts) for m, ts in graph(root).items()}
    assert upward_imports(edges) == {
        "dispatcher.config.model -> dispatcher.render.chart": "rank 5 imports rank 4"
    }
    (root / "config" / "model.py").write_text("from dispatcher.store import db\n", encoding="utf-8")
    assert cycles(package_edges({m: set(ts) for m, ts in graph(root).items()})) == [{"config", "store"}]


def test_each_package_says_what_it_is() -> None:
    """Its one job, its entry points, what it may import: at least a few lines of docstring."""
    thin = [
        str(init.relative_to(PACKAGE))
        for init in PACKAGE.rglob("__init__.py")
        if len((ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or "").splitlines()) < 3
        and init.parent != PACKAGE
    ]
    assert thin == []


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def _function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """From `def` to the last line, the docstring not counted: explaining a function is not length."""
    length = (node.end_lineno or node.lineno) - node.lineno + 1
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        length -= (first.end_lineno or first.lineno) - first.lineno + 1
    return length


def test_no_module_over_400_lines_and_no_function_over_50() -> None:
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(PACKAGE.parent)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = _function_lines(node)
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []
