"""`dispatcher validate` speaks the project's words (issue 26 item 14): problems in file and line
order, a did-you-mean for a misspelt time zone, and no validation library's phrases."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import make_shop_db, run_cli, write

BROKEN = """\
timezone: Asia/Shanghia
sources:
  shop: sqlite:///shop.db
recipients:
  leads:
    userids: [a]
daemon:
  workers: many
reports:
  zeta:
    title: Z
    schedule: "0 9 * * *"
    source: shop
    query: q.sql
    to: [leads]
    retries: 50
    enabled: perhaps
    max_rows: -1
    on_empty: sometimes
  alpha:
    title: ""
    schedule: "0 9 * * *"
    timezone: Europe/Berlln
    source: shop
    query: q.sql
    to: leads
    labels: [a, b]
    params: {day: [1, 2]}
    action_title: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
"""


def _validate(tmp_path: Path, text: str) -> tuple[int, list[str]]:
    (tmp_path / "queries").mkdir()
    (tmp_path / "queries" / "q.sql").write_text("SELECT 1 AS a\n", encoding="utf-8")
    make_shop_db(tmp_path / "shop.db")
    write(tmp_path / "reports.yaml", text)
    result = run_cli("validate", "-c", "reports.yaml", cwd=tmp_path)
    assert "Traceback" not in result.stderr
    return result.returncode, [
        line for line in result.stderr.splitlines() if line.startswith("reports.yaml:")
    ]


def test_problems_are_sorted_by_file_and_line(tmp_path):
    code, lines = _validate(tmp_path, BROKEN)
    assert code == 1
    numbers = [int(re.match(r"reports\.yaml:(\d+):", line).group(1)) for line in lines]  # type: ignore[union-attr]
    assert numbers == sorted(numbers) and numbers[0] == 1 and len(numbers) >= 12, lines


def test_a_misspelt_time_zone_gets_a_did_you_mean(tmp_path):
    code, lines = _validate(tmp_path, BROKEN)
    assert code == 1
    top = "reports.yaml:1: timezone: unknown timezone 'Asia/Shanghia'; did you mean 'Asia/Shanghai'?"
    report = "reports.yaml:23: reports.alpha.timezone: unknown timezone 'Europe/Berlln'; did you mean "
    assert top in lines and report + "'Europe/Berlin'?" in lines, lines


def test_messages_name_the_key_and_the_expected_form_in_plain_words(tmp_path):
    code, lines = _validate(tmp_path, BROKEN)
    assert code == 1
    text = "\n".join(lines)
    for phrase in ("Input should", "String should", "valid dictionary", "unable to", "Value error"):
        assert phrase not in text, text
    expected = [
        "reports.yaml:8: daemon.workers: workers should be a whole number, got 'many'",
        "reports.yaml:16: reports.zeta.retries: retries should be at most 20, got 50",
        "reports.yaml:17: reports.zeta.enabled: enabled should be true or false, got 'perhaps'",
        "reports.yaml:18: reports.zeta.max_rows: max_rows should be greater than 0, got -1",
        "reports.yaml:19: reports.zeta.on_empty: on_empty should be one of 'skip', 'send' or 'error', "
        "got 'sometimes'",
        "reports.yaml:21: reports.alpha.title: title should not be empty",
        "reports.yaml:26: reports.alpha.to: to should be a list, e.g. [a, b], got 'leads'",
        "reports.yaml:27: reports.alpha.labels: labels should be a mapping of key: value, got a list",
        "reports.yaml:28: reports.alpha.params.day: day should be text, a whole number, a number "
        "or true/false, got a list",
        "reports.yaml:29: reports.alpha.action_title: action_title should have at most 20 characters, got 45",
    ]
    assert [e for e in expected if e not in lines] == [], text
    assert len([line for line in lines if ".params.day" in line]) == 1, (
        "one problem per key, not one per type"
    )
