"""`validate` on combinations of this round's features: what one feature cannot carry of another.

- A split_by report cannot (yet) carry a chart or an attachment: each slice would need its own
  files, so validate refuses it with file:line and exit 1 rather than sending the whole report's.
- A group robot cannot show an uploaded image (robot messages take no media_id), so a report
  with both robots and a chart is a warning: the groups get the text only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.cli.main import main
from tests.conftest import BASE_CONFIG

ROBOT = "robots:\n  g: {webhook: 'https://oapi.dingtalk.com/robot/send?access_token=abc'}\n"


def validate(project: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    (project / "reports.yaml").write_text(text, encoding="utf-8")
    code = main(["validate", "-c", str(project / "reports.yaml")])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(
    "extra, key",
    [
        ("    chart: {x: day, y: [amount]}\n", "chart"),
        ("    attach: {name: rows.xlsx}\n", "attach"),
    ],
)
def test_a_split_report_with_a_chart_or_attachment_is_refused_with_file_and_line(
    project: Path, capsys: pytest.CaptureFixture[str], extra: str, key: str
) -> None:
    text = BASE_CONFIG + "    split_by: {column: region}\n" + extra
    code, out = validate(project, text, capsys)
    line = text.splitlines().index(extra.rstrip("\n")) + 1
    assert code == 1, out
    assert f"reports.yaml:{line}: reports.daily.{key}: a split_by report cannot carry {key}" in out


def test_a_report_to_robots_with_a_chart_warns_that_groups_get_the_text_only(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = ROBOT + BASE_CONFIG + "    robots: [g]\n    chart: {x: day, y: [amount]}\n"
    code, out = validate(project, text, capsys)
    assert code == 0, out
    assert "warning" in out and "reports.daily.chart: group robots get the text only" in out


def test_without_robots_a_chart_gives_no_warning(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = validate(project, BASE_CONFIG + "    chart: {x: day, y: [amount]}\n", capsys)
    assert code == 0, out
    assert "warning" not in out
