"""The README's layout names every package and top-level module under dispatcher/, and nothing
that is gone; each package's own `__init__.py` lists its modules (tests/test_import_layers.py)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_docs import README

PACKAGE = Path(__file__).resolve().parent.parent / "dispatcher"


def _layout() -> str:
    return README.split("### Layout", 1)[1].split("```", 2)[1]


def _named() -> set[str]:
    """`cli/`, `app.py` and the top-level modules listed together on one line."""
    return set(re.findall(r"(?<![\w/])(\w+/|\w+\.py)(?=\s)", _layout()))


def test_the_layout_names_every_package_and_top_level_module():
    present = {f"{p.parent.name}/" for p in PACKAGE.glob("*/__init__.py")}
    present |= {p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    assert sorted(present - _named()) == []


def test_the_layout_names_nothing_that_is_gone():
    gone = [n for n in _named() if n != "dispatcher/" and not (PACKAGE / n.rstrip("/")).exists()]
    assert _named() and gone == []
