"""The manual as the tests read it: README.md and every page under docs/, and the sections in them."""

from __future__ import annotations

import re

from tests.conftest import REPO

DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


def page(name: str) -> str:
    """A page's text: `README.md`, or a path under docs/ such as `writing/schedules.md`."""
    path = REPO / name if name == "README.md" else DOCS / name
    return path.read_text(encoding="utf-8")


def manual() -> str:
    """Every page together, for checks that a fact is written down somewhere."""
    return "\n".join(p.read_text(encoding="utf-8") for p in PAGES)


def section(name: str, heading: str) -> str:
    """The text under `heading` (any level) up to the next heading of the same or a higher level."""
    text = page(name)
    match = re.search(rf"^(#+) {re.escape(heading)}\n", text, flags=re.MULTILINE)
    assert match, f"no heading {heading!r} in {name}"
    level = len(match.group(1))
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", _outside_fences(rest), flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


def _outside_fences(text: str) -> str:
    """`text` with the lines inside ``` fences blanked (same length), so a `# comment` is no heading."""
    out, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        out.append(" " * len(line) if fenced and not line.lstrip().startswith("```") else line)
    return "\n".join(out)


def fenced_blocks(language: str) -> list[tuple[str, int, str, str]]:
    """(page, line, text, the HTML comment right above it or "") of every ```language block."""
    found = []
    for path in PAGES:
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            if line.strip() == f"```{language}":
                end = next(i for i in range(n + 1, len(lines)) if lines[i].strip() == "```")
                indent = len(line) - len(line.lstrip())
                body = "\n".join(row[indent:] for row in lines[n + 1 : end]) + "\n"
                above = lines[n - 1].strip() if n and lines[n - 1].strip().startswith("<!--") else ""
                found.append((str(path.relative_to(REPO)), n + 1, body, above))
    return found
