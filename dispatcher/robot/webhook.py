"""Webhook URLs and signing [custom-robots-send-group-messages, customize-robot-security-settings].

A robot's webhook is `https://oapi.dingtalk.com/robot/send?access_token=…`. With a signing secret
(`SEC…`), every request adds `timestamp` (ms) and `sign`: the URL-encoded base64 of HMAC-SHA256,
keyed with the secret, over `timestamp + "\\n" + secret`. The token and the secret are secrets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit, urlunsplit

ROBOT_PATH = "/robot/send"
DINGTALK_HOST = "oapi.dingtalk.com"


ALLOWED_HOSTS_VAR = "DISPATCHER_ROBOT_ALLOWED_HOSTS"
Origin = tuple[str, str, int]  # scheme, host, port: where a webhook may send
DINGTALK: Origin = ("https", DINGTALK_HOST, 443)
_DEFAULT_PORTS = {"https": 443, "http": 80}


def webhook_problem(url: str, allowed: Sequence[Origin] = ()) -> str | None:
    """Why `url` is not a robot webhook, or None. Never quotes the token.

    A webhook goes to DingTalk's robot endpoint, or to one of the `allowed` origins (the server
    that stands in for DingTalk, a company proxy): anything else could be made to post the
    report, and its token, to any address (issue 22, item 7).
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "the webhook must be an https URL such as https://oapi.dingtalk.com/robot/send?access_token=…"
    where = origin(url)
    if where is None or parts.username is not None or where not in (DINGTALK, *allowed):
        shown = f"{parts.scheme}://{parts.hostname}" + (f":{where[2]}" if where else "")
        return (
            f"the webhook must be DingTalk's robot endpoint https://{DINGTALK_HOST}{ROBOT_PATH}, not {shown} "
            f"(a server standing in for DingTalk is allowed on DINGTALK_API_BASE's or dingtalk.api_base's "
            f"scheme, host and port; a proxy, when listed in {ALLOWED_HOSTS_VAR})"
        )
    if parts.path != ROBOT_PATH:
        return f"the webhook's path must be {ROBOT_PATH} (copy the URL from the robot's settings)"
    if not access_token(url):
        return "the webhook has no access_token= (copy the whole URL from the robot's settings)"
    return None


def origin(url: str) -> Origin | None:
    """(scheme, host, port) of an http(s) URL, the port made explicit; None if it has none."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


def allowed_origins(api_base: str | None, setting: str) -> tuple[list[Origin], str | None]:
    """The origins a webhook may use besides DingTalk's, and what is wrong with `setting`, if anything.

    `api_base` is the server that stands in for DingTalk (the sandbox, a test server). `setting` is
    ALLOWED_HOSTS_VAR's value: entries separated by commas or spaces, each `host`, `host:port`
    (https) or `scheme://host[:port]`.
    """
    found = [o for o in [origin(api_base or "")] if o is not None]
    for entry in setting.replace(",", " ").split():
        url = entry if "://" in entry else f"https://{entry}"
        parts, where = urlsplit(url), origin(url)
        if where is None or parts.path not in ("", "/") or parts.query or parts.username is not None:
            return found, (
                f"{ALLOWED_HOSTS_VAR}: {entry!r} is not a host, host:port or http(s)://host[:port] "
                "(separate several with commas)"
            )
        found.append(where)
    return found, None


def access_token(url: str) -> str:
    values = parse_qs(urlsplit(url.strip()).query).get("access_token", [])
    return values[-1] if values else ""


def token_key(url: str) -> str:
    """A stable name for the robot behind `url` that reveals nothing of its token (pacing key)."""
    return hashlib.sha256(access_token(url).encode()).hexdigest()[:32]


def sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` value, URL-encoded as DingTalk's documentation does it."""
    text = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), text, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


def signed_url(url: str, secret: str | None, timestamp_ms: int) -> str:
    """`url` with `timestamp` and `sign` added when the robot has a secret."""
    if not secret:
        return url.strip()
    parts = urlsplit(url.strip())
    # `sign` is already URL-encoded: appended as is, not encoded twice.
    extra = urlencode({"timestamp": timestamp_ms}) + "&sign=" + sign(secret, timestamp_ms)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def rebase(url: str, base: str) -> str:
    """The same webhook on another server (the sandbox): scheme and host from `base`, the rest kept."""
    target, parts = urlsplit(base), urlsplit(url.strip())
    return urlunsplit(parts._replace(scheme=target.scheme, netloc=target.netloc))
