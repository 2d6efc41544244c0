"""The manual's Security page names real tests: every `test_file.py::test_name` it cites exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.docs_kit import page

TESTS = Path(__file__).resolve().parent


def _section() -> str:
    return page("security.md")


def _cited() -> list[tuple[str, str | None]]:
    """(file, test name or None) for each citation; `::name` alone refers to the file cited before it."""
    cited: list[tuple[str, str | None]] = []
    for cell in re.findall(r"^\|.*\| ([^|]*test[^|]*) \|$", _section(), flags=re.MULTILINE):
        current = None
        for file, name in re.findall(r"`(test_\w+\.py)?(?:::(test_\w+))?`", cell):
            current = file or current
            assert current, f"a test name without a file in: {cell}"
            cited.append((current, name or None))
    return cited


def _functions(file: str) -> set[str]:
    tree = ast.parse((TESTS / file).read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_the_security_section_cites_tests():
    assert len(_cited()) >= 20


def test_every_test_the_security_section_cites_exists():
    missing = [f"{file}::{name}" for file, name in _cited() if name and name not in _functions(file)]
    missing += [file for file, _ in _cited() if not (TESTS / file).is_file()]
    assert missing == []
