"""deploy/systemd/dispatcher.service: systemd itself accepts it, and it starts the daemon it names.

`systemd-analyze verify` (Debian's systemd package; .ci/run installs it) checks the unit as
systemd reads it; the unit's one absolute path that does not exist on a test machine, the
installed command, is pointed at this checkout's `dispatcher` for the check.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from dispatcher.cli.main import build_parser
from tests.services import installed

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "systemd" / "dispatcher.service"
INSTALLED = "/opt/dispatcher/bin/dispatcher"  # where README's install steps put the command


def _directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every directive, in order; keys may repeat (Environment=)."""
    found, section = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            section = stripped.strip("[]")
            continue
        key, _, value = stripped.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def _values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in _directives(UNIT.read_text(encoding="utf-8")) if s == section and k == key]


def _systemd_analyze() -> str:
    return installed("systemd-analyze", package="systemd")


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("dispatcher")
    assert command.exists(), command
    unit = tmp_path / "dispatcher.service"
    unit.write_text(unit_text.replace(INSTALLED, str(command)), encoding="utf-8")
    return subprocess.run(
        [_systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=120
    )


def test_systemd_analyze_verify_accepts_the_unit_without_a_single_warning(tmp_path):
    done = _verify(UNIT.read_text(encoding="utf-8"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
    assert done.stdout.strip() == "", done.stdout


def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path):
    """The check can fail: a misspelt directive is a warning that the test above would refuse."""
    broken = UNIT.read_text(encoding="utf-8").replace("ProtectHome=", "ProtectHomes=")
    done = _verify(broken, tmp_path)
    assert "ProtectHomes" in done.stderr


def test_no_directive_carries_an_inline_comment():
    """systemd has no inline comments: `EnvironmentFile=/etc/x  # note` names a file `/etc/x  # note`."""
    for section, key, value in _directives(UNIT.read_text(encoding="utf-8")):
        assert not re.search(r"\s[#;]", value), f"[{section}] {key}={value}"


def test_the_unit_runs_the_daemon_with_flags_it_really_has_as_its_own_user():
    (start,) = _values("ExecStart")
    argv = shlex.split(start)
    assert argv[0] == INSTALLED
    args = build_parser().parse_args(argv[1:])  # exits (fails the test) on an unknown flag
    assert args.command == "run"
    assert args.config == Path("/etc/dispatcher/reports.yaml")
    assert args.health_port and args.log_format == "json"
    assert _values("User") == ["dispatcher"] and _values("Group") == ["dispatcher"]
    assert _values("EnvironmentFile") == ["/etc/dispatcher/dispatcher.env"]
    assert _values("ExecReload") == ["/bin/kill -HUP $MAINPID"]  # the daemon reloads on SIGHUP
    assert _values("KillSignal") == ["SIGTERM"]  # a warm shutdown


def test_the_state_store_lives_in_the_state_directory_and_the_rest_is_read_only():
    assert _values("StateDirectory") == ["dispatcher"]
    env = dict(v.split("=", 1) for v in _values("Environment"))
    assert env["DISPATCHER_STATE_URL"] == "sqlite:////var/lib/dispatcher/state.db"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes"}.items():  # fmt: skip
        assert _values(key) == [value], key
    # Everything it writes is under a directory systemd makes writable for it: state and cache.
    assert env["MPLCONFIGDIR"] == "/var/cache/dispatcher"
    assert _values("CacheDirectory") == ["dispatcher"]


def test_the_readme_points_at_the_unit_file_instead_of_a_copy():
    for text in ((ROOT / "docs" / "operating" / "systemd.md").read_text(encoding="utf-8"),
                 (ROOT / "README.md").read_text(encoding="utf-8")):  # fmt: skip
        assert "deploy/systemd/dispatcher.service" in text
        assert "[Service]" not in text, "a copy of the unit in the manual drifts from the file"
