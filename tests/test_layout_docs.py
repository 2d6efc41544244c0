"""The design page's layout names every package and top-level module of dispatcher/, and nothing gone."""

from __future__ import annotations

import re
from pathlib import Path

from tests.docs_kit import section

PACKAGE = Path(__file__).resolve().parent.parent / "dispatcher"


def _layout() -> dict[str, int]:
    """Each name in the layout (`cli/`, `app.py`) -> its layer rank."""
    block = section("design.md", "Layout").split("```", 2)[1]
    found = re.findall(r"^  (\w+/|\w+\.py) +(\d) ", block, re.MULTILINE)
    return {name: int(rank) for name, rank in found}


def _actual() -> set[str]:
    packages = {f"{p.parent.name}/" for p in PACKAGE.glob("*/__init__.py")}
    modules = {p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    return packages | modules


def test_the_layout_names_every_package_and_top_level_module():
    assert sorted(_actual() - set(_layout())) == []


def test_the_layout_names_nothing_that_is_gone():
    assert _layout() and sorted(set(_layout()) - _actual()) == []


def test_the_layout_lists_packages_in_layer_order():
    ranks = list(_layout().values())
    assert ranks == sorted(ranks) and ranks[0] == 0


def test_the_layout_gives_each_package_the_rank_the_import_check_enforces():
    from tests.test_import_layers import RANK

    stated = {name.removesuffix("/").removesuffix(".py"): rank for name, rank in _layout().items()}
    assert {name: RANK[name] for name in stated} == stated
