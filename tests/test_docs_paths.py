"""Every `docs/...` file the code and the README cite is in the repository, with the cited section.

Comments cite DingTalk's rules and the project's clarifications as `docs/dingtalk-api.md §5` or
`docs/clarifications.md §2`, never a folder outside the repository, so a reader of a checkout can
follow each one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

CITING = [
    REPO / "README.md",
    *sorted(p for d in ("dispatcher", "tests", "bench", "tools") for p in (REPO / d).rglob("*.py")),
]
DOC_PATH = re.compile(r"\bdocs/[\w./-]*\w")
SECTION = re.compile(r"\b(docs/[\w./-]*\.md) §(\d+)")
OUTSIDE = re.compile(r"(?:/work/shared|\.\./shared)/")


def citations(pattern: re.Pattern[str]) -> list[tuple[str, re.Match[str]]]:
    found = []
    for path in CITING:
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            found.append((str(path.relative_to(REPO)), match))
    return found


def section_numbers(doc: Path) -> set[str]:
    """`## 5. Message types` in dingtalk-api.md, `5. **Start-up race.**` in clarifications.md."""
    text = doc.read_text(encoding="utf-8")
    return set(re.findall(r"^(?:## )?(\d+)\. ", text, flags=re.MULTILINE))


def test_the_code_cites_docs_and_every_cited_path_exists() -> None:
    cited = citations(DOC_PATH)
    missing = sorted({f"{where}: {m.group(0)}" for where, m in cited if not (REPO / m.group(0)).exists()})
    assert missing == []
    assert {m.group(0) for _, m in cited} >= {"docs/dingtalk-api.md", "docs/clarifications.md"}


def test_every_cited_section_exists() -> None:
    cited = citations(SECTION)
    missing = [f"{w}: {m.group(0)}" for w, m in cited if m.group(2) not in section_numbers(REPO / m.group(1))]
    assert cited and missing == []


def test_nothing_cites_a_folder_outside_the_repository() -> None:
    assert [f"{where}: {m.group(0)}" for where, m in citations(OUTSIDE)] == []


@pytest.mark.parametrize("doc", ["dingtalk-api.md", "clarifications.md"])
def test_the_copied_docs_have_their_numbered_sections(doc: str) -> None:
    assert {"1", "2", "3", "5", "7"} <= section_numbers(REPO / "docs" / doc)
