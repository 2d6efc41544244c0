"""Where a credential may appear in reports.yaml: in its own field, and nowhere a message, a query, a
parameter or the state store could carry it.

The credentials are the app secret (`dingtalk.app_secret`), each robot's webhook (its access_token)
and each robot's signing secret. Their variables (those the credential fields name, and always
DINGTALK_APP_SECRET) may appear only in those fields, set or not, with or without a default; and no
other value may hold a credential's value, however it got there (a pasted copy, another variable
that holds the same value). Judged on the interpolated file, so each problem has its file:line.
What reaches a message at run time another way (data) is the last line of defence's (`leaks`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dispatcher.errors import Problem
from dispatcher.leaks import MIN_CHARS
from dispatcher.robot.webhook import access_token

if TYPE_CHECKING:
    from dispatcher.config.model import Config

KeyPath = tuple[str, ...]
APP_SECRET_VARIABLE = "DINGTALK_APP_SECRET"  # noqa: S105 (a variable's name, not a secret)
PLACES = "dingtalk.app_secret, robots.<name>.webhook and robots.<name>.secret"


def is_credential_field(keypath: KeyPath) -> bool:
    if keypath == ("dingtalk", "app_secret"):
        return True
    return len(keypath) == 3 and keypath[0] == "robots" and keypath[2] in ("webhook", "secret")


def misplaced(data: Any, used: dict[KeyPath, list[str]]) -> list[tuple[KeyPath, str]]:
    """(key path, problem) for each place outside the credential fields that names or holds one."""
    credentials = {APP_SECRET_VARIABLE: "dingtalk.app_secret"}
    for keypath, names in used.items():
        if is_credential_field(keypath):
            credentials.update({name: ".".join(keypath) for name in names if name not in credentials})
    found: dict[KeyPath, str] = {}
    for keypath, names in used.items():
        named = [n for n in names if n in credentials and not is_credential_field(keypath)]
        if named:
            found[keypath] = (
                f"${{{named[0]}}} is a credential ({credentials[named[0]]}); use it only in {PLACES},"
                " never where a message, a query, a parameter or the state store could carry it"
            )
    values = _values(data)
    for keypath, text in _strings(data, ()) if _copied(data, values) else ():
        if keypath in found or is_credential_field(keypath):
            continue
        holder = next((where for where, value in values if value in text), None)
        if holder is not None:
            found[keypath] = (
                f"holds the value of {holder}, a credential; write it only in {PLACES}"
                " (rotate it if this file was shared)"
            )
    return list(found.items())


def masked(data: Any, problems: list[Problem]) -> list[Problem]:
    """`problems` with every credential value of the file replaced by ***, e.g. in a quoted keyword."""
    values = [value for _, value in _values(data)]
    if not values:
        return problems
    out = []
    for problem in problems:
        message = problem.message
        for value in values:
            message = message.replace(value, "***")
        out.append(replace(problem, message=message))
    return out


def _copied(data: Any, values: list[tuple[str, str]]) -> bool:
    """Whether a credential's value shows anywhere but in its own fields: one search of the whole
    file as JSON text, so the walk that finds where runs only when there is something to find
    (walking every scalar of a 5,000-report file took 0.5 s, this takes 0.1 s)."""
    if not values:
        return False
    text = json.dumps(data, ensure_ascii=False, check_circular=False)  # a tree of YAML scalars: no cycles
    own = json.dumps([_field(data, keypath) for keypath in _credential_paths(data)], ensure_ascii=False)
    return any(text.count(needle) > own.count(needle) for needle in (json.dumps(v)[1:-1] for _, v in values))


def _credential_paths(data: Any) -> list[KeyPath]:
    robots = data.get("robots") if isinstance(data, dict) else None
    names = list(robots) if isinstance(robots, dict) else []
    return [("dingtalk", "app_secret"), *(("robots", n, k) for n in names for k in ("webhook", "secret"))]


def _field(data: Any, keypath: KeyPath) -> Any:
    for key in keypath:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _values(data: Any) -> list[tuple[str, str]]:
    """(field, value) of every credential the interpolated file sets, long enough to look for."""
    section = data.get("dingtalk") if isinstance(data, dict) else None
    found = [("dingtalk.app_secret", section.get("app_secret"))] if isinstance(section, dict) else []
    robots = data.get("robots") if isinstance(data, dict) else None
    for name, robot in robots.items() if isinstance(robots, dict) else ():
        if isinstance(robot, dict):
            webhook = robot.get("webhook")
            found.append(
                (f"robots.{name}.webhook", access_token(webhook) if isinstance(webhook, str) else "")
            )
            found.append((f"robots.{name}.secret", robot.get("secret")))
    return [(where, v) for where, v in found if isinstance(v, str) and len(v) >= MIN_CHARS]


def _strings(data: Any, keypath: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, (*keypath, str(key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _strings(value, (*keypath, str(i)))
    elif isinstance(data, str):
        yield keypath, data


def credentials(config: Config) -> list[tuple[str, str]]:
    """(what, value) of the config's credentials, for the last line of defence (`leaks`)."""
    out: list[tuple[str, str]] = []
    secret = config.dingtalk.app_secret
    if secret is not None:
        out.append(("the DingTalk app secret", secret.get_secret_value()))
    for name, robot in config.robots.items():
        if robot.webhook is not None:
            out.append((f"robot {name!r}'s webhook token", access_token(robot.webhook.get_secret_value())))
        if robot.secret is not None:
            out.append((f"robot {name!r}'s signing secret", robot.secret.get_secret_value()))
    return out
