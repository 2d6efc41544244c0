"""Webhook URLs and signing [custom-robots-send-group-messages, customize-robot-security-settings].

A robot's webhook is `https://oapi.dingtalk.com/robot/send?access_token=…`. With a signing secret
(`SEC…`), every request adds `timestamp` (ms) and `sign`: the URL-encoded base64 of HMAC-SHA256,
keyed with the secret, over `timestamp + "\\n" + secret`. The token and the secret are secrets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit, urlunsplit

ROBOT_PATH = "/robot/send"
DINGTALK_HOST = "oapi.dingtalk.com"


def webhook_problem(url: str) -> str | None:
    """Why `url` is not a robot webhook, or None. Never quotes the token."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "the webhook must be an https URL such as https://oapi.dingtalk.com/robot/send?access_token=…"
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost"):
        return "the webhook must use https (plain http only for a local sandbox)"
    if parts.path != ROBOT_PATH:
        return f"the webhook's path must be {ROBOT_PATH} (copy the URL from the robot's settings)"
    if not access_token(url):
        return "the webhook has no access_token= (copy the whole URL from the robot's settings)"
    return None


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
