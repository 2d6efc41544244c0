"""The manual is checked like code: generated pages are fresh, examples validate and run, help points at it.

- A page's generated blocks are what tools/gen_docs.py writes from the code today.
- Every ```yaml block in README.md and docs/ is a part of reports.yaml: merged over the shipped
  reports.yaml, `validate`'s own loader finds no problem. A block that cannot stand on its own is
  marked `<!-- yaml: fragment -->` on the line above and is checked against the JSON Schema only.
- Every ```console block runs: each `$ dispatcher …` line in a fresh folder, its output compared
  line by line with the lines below it (a line `...` stands for any lines).
- `mkdocs build --strict` (CI runs it after the tests) finds the broken links, anchors and orphan
  pages; the nav test here says which page is missing from mkdocs.yml before the build does.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from dispatcher.cli.main import build_parser
from dispatcher.config import schema as config_schema
from dispatcher.config.check import check_config
from tests.conftest import REPO, run_cli
from tests.docs_kit import DOCS, PAGES, fenced_blocks, manual, page

sys.path.insert(0, str(REPO / "tools"))
import gen_docs  # noqa: E402

REGENERATE = gen_docs.COMMAND
FRAGMENT = "<!-- yaml: fragment -->"
USER_PAGES = [
    p
    for p in PAGES
    if p.name not in ("security.md", "design.md", "development.md", "benchmarks.md")
    and p.name not in ("dingtalk-api.md", "clarifications.md")
]


# -- generated pages ------------------------------------------------------------------------------


def test_no_generated_page_is_stale():
    assert gen_docs.stale_pages() == [], f"regenerate them: {REGENERATE}"


def test_the_generated_blocks_are_where_they_belong():
    blocks = {p: re.findall(r"<!-- generated: ([\w-]+) -->", page(p)) for p in ("README.md",)}
    assert blocks["README.md"] == ["env-table"]
    assert re.findall(r"<!-- generated: ([\w-]+) -->", page("reference/error-codes.md")) == [
        "errcodes",
        "robot-errcodes",
    ]
    for name, block in (("reference/cli.md", "cli"), ("reference/reports-yaml.md", "reports-yaml"),
                        ("reference/environment.md", "env-table")):  # fmt: skip
        assert f"<!-- generated: {block} -->" in page(name)


def test_a_stale_block_is_found_and_regenerated_in_memory():
    text = "x\n<!-- generated: env-table -->\nold\n<!-- end generated: env-table -->\n"
    fresh = gen_docs.regenerate(text)
    assert fresh != text and "DISPATCHER_STATE_URL" in fresh
    assert gen_docs.regenerate(fresh) == fresh


def test_the_cli_reference_has_a_section_for_every_command_and_option():
    reference = page("reference/cli.md")
    for name, parser, _help in gen_docs.commands():
        assert f"\n## {name}\n" in reference
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in reference, (name, option)


def test_the_reports_yaml_reference_names_every_key():
    reference = page("reference/reports-yaml.md")
    missing = [key for key in config_schema.field_keys() if f"| `{key.split('.', 1)[1]}` |" not in reference]
    assert missing == []


# -- every --help points at the manual ------------------------------------------------------------


def _help(*argv: str) -> str:
    result = run_cli(*argv, "--help")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_top_level_help_ends_with_the_manual():
    assert _help().rstrip().endswith("manual: docs/reference/cli.md")


@pytest.mark.parametrize("command", [name for name, _p, _h in gen_docs.commands()])
def test_each_commands_help_ends_with_its_section_of_the_manual(command):
    address = f"docs/reference/cli.md#{gen_docs.anchor(command)}"
    parser = build_parser()
    for word in command.split():
        parser = next(a for a in parser._actions if a.dest in ("command", "demo_command", "state_command")
                      and word in a.choices).choices[word]  # fmt: skip
    assert parser.format_help().rstrip().endswith(f"manual: {address}")
    heading = "## " + command
    assert f"\n{heading}\n" in page("reference/cli.md"), "the address names a real section"


def test_help_in_a_subprocess_prints_the_address():
    assert _help("send").rstrip().endswith("manual: docs/reference/cli.md#send")


# -- YAML examples --------------------------------------------------------------------------------


def yaml_blocks() -> list[tuple[str, int, str, str]]:
    return fenced_blocks("yaml")


def _merge(base: dict, part: dict) -> dict:
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "reports":
            _merge(base[key], value)
        elif key == "reports":
            base.setdefault("reports", {}).update(value)
        else:
            base[key] = value
    return base


def test_the_manual_has_yaml_examples_and_marks_its_fragments():
    blocks = yaml_blocks()
    assert len(blocks) >= 6
    assert all(mark in ("", FRAGMENT) for _p, _n, _t, mark in blocks if mark.startswith("<!-- yaml"))


@pytest.mark.parametrize("where,line,text,mark", yaml_blocks(), ids=lambda v: str(v)[:40])
def test_every_yaml_example_validates(where, line, text, mark, tmp_path):
    schema = jsonschema.Draft202012Validator(config_schema.generate())
    assert [e.message for e in schema.iter_errors(yaml.safe_load(text))] == [], f"{where}:{line}"
    if mark == FRAGMENT:
        return  # checked against the schema only, deliberately: it is not a whole section
    shipped = yaml.safe_load((REPO / "reports.yaml").read_text(encoding="utf-8"))
    merged = _merge(shipped, yaml.safe_load(text))
    shutil.copytree(REPO / "queries", tmp_path / "queries")
    config = tmp_path / "reports.yaml"
    config.write_text(yaml.safe_dump(merged, allow_unicode=True, sort_keys=False), encoding="utf-8")
    env = {"SALES_ROBOT_WEBHOOK": "https://oapi.dingtalk.com/robot/send?access_token=t",
           "SALES_ROBOT_SECRET": "SECdocs"}  # fmt: skip
    _config, problems = check_config(config, env=env)
    assert [f"{p.message}" for p in problems] == [], f"{where}:{line}"


# -- console examples -----------------------------------------------------------------------------


def console_blocks() -> list[tuple[str, int, str, str]]:
    return fenced_blocks("console")


def _steps(text: str) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for line in text.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"output before any command: {line!r}"
            steps[-1][1].append(line)
    return steps


@pytest.mark.parametrize("where", sorted({b[0] for b in console_blocks()}))
def test_every_console_example_runs_and_prints_what_the_page_shows(where, tmp_path):
    """A page's blocks run in order in one folder, as a reader following the page would run them."""
    cwd = tmp_path
    for _where, line, text, _mark in (b for b in console_blocks() if b[0] == where):
        for command, expected in _steps(text):
            argv = shlex.split(command)
            if argv[0] == "cd":
                cwd = cwd / argv[1]
                continue
            assert argv[0] == "dispatcher", f"{where}:{line}: only dispatcher commands run here"
            result = run_cli(*argv[1:], cwd=cwd)
            assert result.returncode == 0, f"{where}:{line}: {command}\n{result.stderr}"
            actual = result.stdout.rstrip("\n").split("\n")
            assert _matches(expected, actual), f"{where}:{line}: {command}\n{result.stdout}"


def _matches(expected: list[str], actual: list[str]) -> bool:
    """A line `...` stands for any lines; `...` inside a line for any text."""
    pattern = "".join(
        r"(?:[^\n]*\n)*?" if line == "..." else re.escape(line).replace(re.escape("..."), "[^\n]*") + "\n"
        for line in expected
    )
    return re.fullmatch(pattern, "".join(a + "\n" for a in actual)) is not None


def test_the_manual_has_runnable_examples():
    assert len(console_blocks()) >= 3
    assert any(where == "README.md" for where, *_ in console_blocks())


def test_the_output_matcher_takes_dots_for_any_lines():
    assert _matches(["a ...", "...", "z"], ["a ...", "b", "c", "z"])
    assert _matches(["a", "...", "z"], ["a", "z"])
    assert not _matches(["a", "z"], ["a", "b", "z"])


# -- the pages ------------------------------------------------------------------------------------


def test_every_page_is_in_the_nav():
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert [p for p in pages if f": {p}\n" not in nav] == []


def test_mkdocs_checks_links_anchors_and_orphans_strictly():
    settings = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    assert settings["strict"] is True
    assert set(settings["validation"].values()) == {"warn"}  # under --strict every warning fails
    assert {"omitted_files", "not_found", "anchors", "unrecognized_links"} <= set(settings["validation"])
    assert ".venv/bin/mkdocs build --strict" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", USER_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_user_pages_speak_to_users_not_to_the_tracker_or_the_test_suite(path: Path):
    text = path.read_text(encoding="utf-8")
    assert re.findall(r"\bissues? #?\d+|\(#\d+\)", text, flags=re.IGNORECASE) == []
    assert re.findall(r"tests/test_\w+\.py|test_\w+\.py::", text) == []


def test_the_readme_fits_on_a_few_screens():
    assert len(page("README.md").splitlines()) <= 300


def test_the_manual_keeps_every_fact_the_old_readme_had_a_heading_for():
    # Headings the old README had, each now a page or a section of one.
    text = manual()
    for heading in ("Schedules", "Dates", "Templates", "Queries", "The demo database", "The sandbox",
                    "Group robots", "Running the daemon", "The state store", "systemd", "Container",
                    "Kubernetes", "Known limitations", "A read-only role for the sources"):  # fmt: skip
        assert re.search(rf"^#+ {re.escape(heading)}$", text, flags=re.MULTILINE), heading
