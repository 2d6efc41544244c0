"""The design page's layout names every module under dispatcher/, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

from tests.docs_kit import section

PACKAGE = Path(__file__).resolve().parent.parent / "dispatcher"


def _layout() -> str:
    return section("design.md", "Layout").split("```", 2)[1]


def test_the_layout_names_every_module():
    modules = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.parent.name != "sandbox"
        and p.name not in ("__main__.py",)
        and not (p.name == "__init__.py" and p.parent in (PACKAGE, PACKAGE / "dingtalk", PACKAGE / "store"))
    }
    modules = {m for m in modules if not m.startswith("schedule/")}
    layout = _layout()
    assert sorted(m for m in modules if m not in layout) == []


def test_the_layout_names_no_module_that_is_gone():
    named = set(re.findall(r"^  ([\w/]+\.py)", _layout(), flags=re.MULTILINE))
    assert named and sorted(n for n in named if not (PACKAGE / n).is_file()) == []
