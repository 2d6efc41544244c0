"""`validate` and `list` never import pandas, so the CLI stays quick."""

from __future__ import annotations

import subprocess
import sys

COMMANDS = [["validate"], ["list"], ["list", "--json"]]
# One fresh process runs the commands in turn and reports after each, so the first command that
# imports pandas is the one named (a process start costs seconds on a loaded machine).
PROBE = """
import sys
from dispatcher.cli.main import main
for command in {commands!r}:
    code = main([*command, "-c", {config!r}])
    print("RESULT", " ".join(command), "pandas" in sys.modules, code)
"""


def test_validate_and_list_do_not_import_pandas(project):
    probe = PROBE.format(commands=COMMANDS, config=str(project / "reports.yaml"))
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    results = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert results == [f"RESULT {' '.join(c)} False 0" for c in COMMANDS]


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
    assert "dispatcher.config.model" in imported  # the probe really saw our imports
    assert not [m for m in imported if m == "pandas" or m.startswith("pandas.")]
