"""`validate` and the links a message may carry: http(s) or DingTalk's own client links, within 500 chars.

DingTalk opens `dingtalk://dingtalkclient/page/link?url=…` inside the app (a side panel on the PC
client); an action card's button URL may be at most 500 characters [docs/dingtalk-api.md §5].
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.cli.main import main
from tests.conftest import BASE_CONFIG

DINGTALK_LINK = "dingtalk://dingtalkclient/page/link?url=https%3A%2F%2Fbi.example.com%2Fd%2F1&pc_slide=true"


def validate(project: Path, url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    text = BASE_CONFIG + f"    msgtype: action_card\n    action_url: '{url}'\n"
    (project / "reports.yaml").write_text(text, encoding="utf-8")
    code = main(["validate", "-c", str(project / "reports.yaml")])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(
    "url", [DINGTALK_LINK, "https://bi.example.com/d/1", "https://x.cn/" + "a" * (500 - len("https://x.cn/"))]
)
def test_http_and_dingtalk_client_links_up_to_500_characters_are_valid(
    project: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, out = validate(project, url, capsys)
    assert code == 0, out


def test_an_action_url_over_500_characters_is_refused_with_file_and_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "https://x.cn/" + "a" * (501 - len("https://x.cn/"))
    code, out = validate(project, url, capsys)
    assert code == 1
    where = "reports.yaml:23: reports.daily.action_url: "
    assert where + "a link of 501 characters is not accepted; DingTalk allows 500" in out


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "dingtalk://evil/page", "ftp://x.cn/a", "https://x.cn/a b", "www.x.cn"]
)
def test_other_schemes_are_refused(project: Path, capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out = validate(project, url, capsys)
    assert code == 1 and "reports.yaml:23: reports.daily.action_url:" in out
    assert "dingtalk://dingtalkclient/" in out  # the message names what is accepted
