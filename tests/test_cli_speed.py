"""`validate` and `list` never import pandas, so the CLI stays quick."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from dispatcher.cli import main
code = main({args!r})
print("PANDAS_IMPORTED" if "pandas" in sys.modules else "PANDAS_NOT_IMPORTED", code)
"""


@pytest.mark.parametrize("command", [["validate"], ["list"], ["list", "--json"]])
def test_command_does_not_import_pandas(project, command):
    args = [*command, "-c", str(project / "reports.yaml")]
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "PANDAS_NOT_IMPORTED 0"


def test_importtime_shows_no_pandas_for_validate(project):
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "dispatcher",
            "validate",
            "-c",
            str(project / "reports.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line]
    assert "dispatcher.config" in imported  # the probe really saw our imports
    assert not [m for m in imported if m == "pandas" or m.startswith("pandas.")]
