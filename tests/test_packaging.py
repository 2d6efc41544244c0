"""The installable name and the one version: pyproject, the package metadata, `-V`, the wheel.

The name `dispatcher` on the package index is an unrelated project, so every install hint names
the distribution `dingtalk-report-dispatcher`; the import package and the command stay `dispatcher`.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import dispatcher
from dispatcher.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
DIST = "dingtalk-report-dispatcher"
# `dispatcher[postgres]` not preceded by `report-`: the taken name, in an install line or a hint.
TAKEN = re.compile(r"(?<![\w-])dispatcher\[")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_distribution_is_named_dingtalk_report_dispatcher_and_the_command_dispatcher():
    project = _pyproject()["project"]
    assert project["name"] == DIST
    assert project["scripts"] == {"dispatcher": "dispatcher.cli.main:main"}
    assert dispatcher.DISTRIBUTION == DIST


def test_dash_v_prints_the_version_of_the_installed_package_metadata(capsys):
    with pytest.raises(SystemExit) as done:
        main(["-V"])
    assert done.value.code == 0
    metadata = importlib.metadata.version(DIST)
    assert capsys.readouterr().out.strip() == f"dispatcher {metadata}"
    assert metadata == _pyproject()["project"]["version"]
    assert dispatcher.version() == dispatcher.__version__ == metadata


def test_no_hint_or_readme_line_names_the_taken_distribution():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files += sorted((ROOT / "dispatcher").rglob("*.py"))
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if TAKEN.search(line)
    ]
    assert not found, "\n".join(found)


def test_the_install_hints_name_a_real_install():
    from dispatcher.sources.url import missing_driver_hint

    hint = missing_driver_hint("postgresql")
    assert f"pip install '{DIST}[postgres]'" in hint
    assert "pip install -e '.[postgres]'" in hint


def _offline_build_possible() -> bool:
    import importlib.util

    if importlib.util.find_spec("build") is None or importlib.util.find_spec("setuptools") is None:
        return False
    import setuptools

    return int(setuptools.__version__.split(".")[0]) >= 77


@pytest.mark.skipif(not _offline_build_possible(), reason="no build or setuptools>=77 here to build offline")
def test_the_wheel_installs_into_a_fresh_venv_and_its_dash_v_is_the_metadata_version(tmp_path):
    """CI does the same with every dependency installed (.ci/package); this one needs no network."""
    out, src = tmp_path / "dist", tmp_path / "src"
    # A copy: the build writes build/ and egg-info beside the sources it builds.
    skip = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "bench", "tests")
    shutil.copytree(ROOT, src, ignore=skip)
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next(out.glob("*.whl"))
    version = _pyproject()["project"]["version"]
    assert wheel.name == f"dingtalk_report_dispatcher-{version}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    for data in (
        "dispatcher/ops/project/reports.yaml",
        "dispatcher/config/reports.schema.json",
        "dispatcher/py.typed",
    ):
        assert data in names
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
    done = subprocess.run([*pip, "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    shown = subprocess.run([str(venv / "bin" / "dispatcher"), "-V"], capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.strip() == f"dispatcher {version}"


def test_the_license_is_the_full_apache_2_text_and_the_metadata_says_so():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    assert importlib.metadata.metadata(DIST)["License-Expression"] == "Apache-2.0"


def test_the_changelog_keeps_a_changelog_and_has_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    assert "https://keepachangelog.com/" in text
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.MULTILINE)
    assert headings[0] == ("Unreleased", "")
    versions = [v for v, day in headings[1:] if day]
    assert len(versions) == len(headings) - 1, "every released version has a date"
    assert _pyproject()["project"]["version"] in versions
    for section in re.findall(r"^### (.+)$", text, re.MULTILINE):
        assert section in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
