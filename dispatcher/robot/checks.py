"""What `validate` checks about robots: the webhook's form, the robot names, the keyword and mentions.

Called by the config checker (`dispatcher.config.check._Checker`) on the raw entries, so a problem shows
with file:line even when the entry has other faults. Never quotes a webhook: it holds a token.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from dispatcher.robot.webhook import ALLOWED_HOSTS_VAR, Origin, allowed_origins, webhook_problem

# The config checker (`dispatcher.config.check._Checker`): not imported, as config_check imports this.
_Checker = Any

# Jinja's tags and expressions; what is left of a template is the text every message carries.
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_TITLE_EXPR = re.compile(r"\{\{-?\s*title\s*-?\}\}")


def robot_entries(checker: _Checker, validated: dict[str, Any]) -> dict[str, Any]:
    """The validated robots, each told which of its variables were unset; webhooks checked for form."""
    raw = checker.data.get("robots")
    allowed, setting_problem = _allowed(checker)
    for name, entry in (raw if isinstance(raw, dict) else {}).items():
        missing = sorted({n for kp, ns in checker.missing.items() if kp[:2] == ("robots", name) for n in ns})
        if name in validated:
            validated[name] = validated[name].model_copy(update={"missing_vars": tuple(missing)})
        webhook = entry.get("webhook") if isinstance(entry, dict) else None
        if isinstance(webhook, str) and webhook and ("robots", name, "webhook") not in checker.missing:
            if problem := setting_problem or webhook_problem(webhook, allowed):
                checker._problem(("robots", name, "webhook"), problem)
    return validated


def _allowed(checker: _Checker) -> tuple[list[Origin], str | None]:
    """Where webhooks may point besides DingTalk: the API base in use, and the operator's list."""
    dingtalk = checker.data.get("dingtalk")
    api_base = dingtalk.get("api_base") if isinstance(dingtalk, dict) else None
    if not isinstance(api_base, str) or not api_base:
        api_base = checker.env.get("DINGTALK_API_BASE")
    return allowed_origins(api_base, checker.env.get(ALLOWED_HOSTS_VAR, ""))


def check_report_robots(checker: _Checker, kp: tuple[str, ...], entry: dict[str, Any]) -> None:
    robots = checker._section("robots")
    names = entry.get("robots")
    for i, name in enumerate(names if isinstance(names, list) else []):
        if not isinstance(name, str):
            continue
        if name not in robots:
            checker._problem((*kp, "robots", str(i)), _unknown_robot(name, robots))
            continue
        robot = robots[name]
        keyword = robot.get("keyword") if isinstance(robot, dict) else None
        if isinstance(keyword, str) and keyword and not carries_keyword(keyword, entry):
            checker._problem((*kp, "robots", str(i)), keyword_message(name, keyword, entry.get("msgtype")))
    if names and entry.get("msgtype") == "action_card":
        _card_mentions(checker, kp, entry.get("mention"))


def _card_mentions(checker: _Checker, kp: tuple[str, ...], mention: Any) -> None:
    """An actionCard mentions userids in its text only: mobiles and `all` cannot be highlighted."""
    if not isinstance(mention, dict):
        return
    for key in ("mobiles", "all"):
        if mention.get(key):
            checker.warnings.append(checker.doc.problem((*kp, "mention", key), CARD_MENTION_WARNING))


def carries_keyword(keyword: str, entry: dict[str, Any]) -> bool:
    """Whether every message of this report contains `keyword` where DingTalk looks, whatever the data.

    DingTalk looks in the title and the text (`robot.message.keyword_text`). A markdown message and
    an action card carry the report's title in their own title field; a text message has none. In
    the text, the default rendering starts with the title as a heading; a template carries its fixed
    text, and the title where it writes `{{ title }}`. Rows and parameters vary, so they never count.
    """
    raw_title = entry.get("title")
    title = raw_title if isinstance(raw_title, str) else ""
    if keyword in title and entry.get("msgtype", "markdown") in ("markdown", "action_card"):
        return True
    template = entry.get("template")
    if not isinstance(template, str):
        return keyword in title
    if keyword in _JINJA.sub("\n", template):
        return True
    return keyword in title and bool(_TITLE_EXPR.search(template))


CARD_MENTION_WARNING = (
    "a robot's action card mentions only userids, written as @userid in its text (DingTalk documents "
    "no `at` block for it): these mentions are left out of the group's card; use msgtype markdown "
    "to highlight mobiles or everyone"
)


def keyword_message(robot: str, keyword: str, msgtype: Any = None) -> str:
    where = (
        "a text message has no title field: put it in the template's fixed text, or write {{ title }} in it"
        if msgtype == "text"
        else "put it in the title (or in the template's fixed text)"
    )
    return (
        f"robot {robot!r} accepts only messages containing its keyword {keyword!r}, and this report's "
        f"messages do not always contain it: {where}"
    )


def _unknown_robot(name: str, known: dict[str, Any]) -> str:
    guess = difflib.get_close_matches(name, list(known), n=1)
    if guess:
        return f"unknown robot {name!r}; did you mean {guess[0]!r}?"
    return f"unknown robot {name!r} (defined under robots: {', '.join(sorted(known)) or 'none'})"
