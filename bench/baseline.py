"""The baseline: what a typical DingTalk script does, written the way the common snippets are.

For every message it fetches a token, looks the mobile up again (if the person is known by
mobile), and posts one asyncsend_v2 with a `userid_list` of one. It uses plain `requests`
calls (a new connection each) and sends JSON with `json=`. It caches nothing.

Throttling is handled the way a naive script that read DingTalk's advice would: on errcode
90018 it sleeps 1 s and repeats the same call. Any other error stops it.
"""

from __future__ import annotations

import time
from typing import Any

import requests

SEND = "/topapi/message/corpconversation/asyncsend_v2"
THROTTLED = 90018


def send_to_everyone(
    base: str,
    app_key: str,
    app_secret: str,
    agent_id: int,
    people: list[tuple[str, str]],
    msg: dict[str, Any],
) -> int:
    """`people` is a list of ("userid", id) or ("mobile", number); returns the number of sends."""
    sent = 0
    for kind, value in people:
        token = _call("GET", f"{base}/gettoken", params={"appkey": app_key, "appsecret": app_secret})
        access = {"access_token": token["access_token"]}
        userid = value
        if kind == "mobile":
            found = _call("POST", f"{base}/topapi/v2/user/getbymobile", params=access, json={"mobile": value})
            userid = found["result"]["userid"]
        body = {"agent_id": agent_id, "userid_list": userid, "msg": msg}
        _call("POST", base + SEND, params=access, json=body)
        sent += 1
    return sent


def _call(method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    while True:
        answer: dict[str, Any] = requests.request(method, url, timeout=10, **kwargs).json()
        if answer.get("errcode") == THROTTLED:
            time.sleep(1)  # DingTalk's advice for 90018: wait a second and try again
            continue
        if answer.get("errcode") != 0:
            raise RuntimeError(f"DingTalk answered errcode {answer.get('errcode')}: {answer.get('errmsg')}")
        return answer
