"""`--sandbox` commands deliver to the sandbox the user already has open, else to one of their own.

`send`, `backfill`, `resend` and `doctor --send-test` look for a dispatcher sandbox on the default
port (8765, or DISPATCHER_SANDBOX_PORT) or at `--sandbox-url`; one answers `GET /_sandbox/about`
with its name and its fake credentials, so an ordinary web server on that port is not taken for
one. Found: the command delivers there, with the sandbox's own fake app key and secret (never the
configured real ones), and its robots are registered through `POST /_sandbox/robots`. Not found:
the command starts one in-process, as before, and says that its inbox closes when it ends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dispatcher.errors import DispatcherError
from dispatcher.sandbox.options import SandboxOptions

DEFAULT_PORT = 8765
PORT_VARIABLE = "DISPATCHER_SANDBOX_PORT"  # tests (and a second project) move the default port
SERVICE = "dispatcher-sandbox"  # what /_sandbox/about answers, so another server is not mistaken
PROBE_SECONDS = 3.0
ABOUT_LIMIT = 64 * 1024  # a real /about body is ~300 bytes; whatever else holds the port is not read whole


def default_port() -> int:
    """The port `dispatcher sandbox` and `run --sandbox` take, and where `--sandbox` commands look."""
    raw = os.environ.get("DISPATCHER_SANDBOX_PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise DispatcherError(f"{PORT_VARIABLE} must be a port number (1-65535), not {raw!r}")
    return int(raw)


def about(options: SandboxOptions, url: str) -> dict[str, Any]:
    """The body of `GET /_sandbox/about`: everything a client needs (the secret is the sandbox's fake)."""
    return {
        "service": SERVICE,
        "api_base": url,
        "inbox": f"{url}/",
        "app_key": options.app_key,
        "app_secret": options.app_secret,
        "agent_id": options.agent_id,
        "robots": f"{url}/_sandbox/robots",
    }


def loopback_url(url: str) -> str:
    """`--sandbox-url`, checked: a sandbox binds to loopback only, so nothing else can be one."""
    parts = urlsplit(url.strip())
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost") or not parts.port:
        raise DispatcherError(
            f"--sandbox-url {url!r} is not a local sandbox address",
            hint="a sandbox listens on loopback only: give http://127.0.0.1:PORT",
        )
    return f"http://{parts.hostname}:{parts.port}"


@dataclass
class RunningSandbox:
    """A sandbox in another process, seen through its HTTP hooks: the parts of `Sandbox` apps use."""

    url: str
    options: SandboxOptions
    remote: bool = True

    def messages(self, userid: str | None = None) -> list[dict[str, Any]]:
        params = {"userid": userid} if userid else {}
        return list(self._get("messages", params))

    def robot_messages(self, robot: str | None = None) -> list[dict[str, Any]]:
        return list(self._get("robot_messages", {"robot": robot} if robot else {}))

    def add_robot(self, name: str, token: str, secret: str | None = None, keyword: str | None = None) -> None:
        import requests

        body = [{"name": name, "token": token, "secret": secret, "keyword": keyword}]
        try:
            with _local() as session:
                answer = session.post(f"{self.url}/_sandbox/robots", json=body, timeout=PROBE_SECONDS)
        except requests.RequestException as exc:
            raise DispatcherError(f"the sandbox at {self.url} did not take robot {name!r}: {exc}") from None
        if answer.status_code != 200:
            status = answer.status_code
            raise DispatcherError(f"the sandbox at {self.url} refused robot {name!r}: HTTP {status}")

    def stop(self) -> None:
        """Not ours to stop: the user's sandbox keeps running after the command."""

    def _get(self, name: str, params: dict[str, str]) -> Any:
        import requests

        try:
            with _local() as session:
                return session.get(f"{self.url}/_sandbox/{name}", params=params, timeout=PROBE_SECONDS).json()
        except (requests.RequestException, ValueError) as exc:
            raise DispatcherError(f"the sandbox at {self.url} stopped answering: {exc}") from None


def probe(url: str) -> RunningSandbox | str | None:
    """The dispatcher sandbox at `url`; a reason when something else answers there; None when nothing does."""
    import requests

    try:
        with (
            _local() as session,
            session.get(
                f"{url}/_sandbox/about", timeout=PROBE_SECONDS, allow_redirects=False, stream=True
            ) as answer,
        ):
            body = _bounded_json(answer)
    except requests.RequestException:
        return None
    if not _is_about(body):
        return f"something answers at {url}, but it is not a dispatcher sandbox"
    fake = SandboxOptions(app_key=body["app_key"], app_secret=body["app_secret"], agent_id=body["agent_id"])
    return RunningSandbox(url, fake)


def _local() -> Any:
    """A session that ignores HTTP_PROXY and friends: a loopback sandbox is never behind a proxy."""
    import requests

    session = requests.Session()
    session.trust_env = False
    return session


def _bounded_json(answer: Any) -> Any:
    """The JSON body if it arrives whole, at most ABOUT_LIMIT bytes, within PROBE_SECONDS; else None.

    Byte by byte, because the request's timeout bounds each read, not the body: a server that
    trickles a byte a second would otherwise hold a command (or the daemon's start) for hours."""
    import json
    import time

    import requests

    deadline, raw = time.monotonic() + PROBE_SECONDS, bytearray()
    try:
        for byte in answer.iter_content(chunk_size=1):
            raw += byte
            if len(raw) > ABOUT_LIMIT or time.monotonic() > deadline:
                return None
        return json.loads(raw)
    except (requests.RequestException, ValueError):
        return None


def _is_about(body: Any) -> bool:
    if not isinstance(body, dict) or body.get("service") != SERVICE:
        return False
    texts = all(isinstance(body.get(k), str) and body[k] for k in ("app_key", "app_secret"))
    return texts and isinstance(body.get("agent_id"), int) and not isinstance(body["agent_id"], bool)


@dataclass(frozen=True)
class Found:
    box: Any  # a RunningSandbox, or the started in-process Sandbox
    note: str  # what the command tells the user on stderr


def find_or_start(url: str | None, start: Any) -> Found:
    """The running sandbox at `url` (default: the default port), else `start()`'s in-process one."""
    explicit = url is not None
    where = loopback_url(url) if url is not None else f"http://127.0.0.1:{default_port()}"
    found = probe(where)
    if isinstance(found, RunningSandbox):
        return Found(found, f"using the sandbox at {where}")
    if isinstance(found, str) and explicit:
        raise DispatcherError(found, hint="start one with `dispatcher sandbox`, or leave out --sandbox-url")
    box = start()
    why = found if isinstance(found, str) else f"no sandbox running at {where}"
    started = f"started one for this command at {box.url}/, its inbox closes when the command ends"
    return Found(box, f"{why}; {started}")


def banner(options: SandboxOptions, url: str) -> list[str]:
    """What `dispatcher sandbox` prints: every value a client needs, its fake secret included."""
    secret = _printable_secret(options.app_secret)
    return [
        f"DingTalk sandbox listening on {url}",
        f"  inbox:      {url}/   (open it in a browser; it refreshes by itself)",
        f"  API base:   {url}",
        f"  AgentID:    {options.agent_id}",
        f"  AppKey:     {options.app_key}",
        f"  AppSecret:  {secret}   (the sandbox's fake: it opens this sandbox and nothing else)",
        f"  robots:     POST {url}/_sandbox/robots  with [{{name, token, secret?, keyword?}}],",
        f"              then a robot posts to {url}/robot/send?access_token=TOKEN",
        "  point a client at it:",
        f"    export DINGTALK_API_BASE={url}",
        f"    export DINGTALK_APP_KEY={options.app_key}",
        f"    export DINGTALK_APP_SECRET={secret}",
        f"    export DINGTALK_AGENT_ID={options.agent_id}",
        "  or deliver here from a project: dispatcher send REPORT_ID --sandbox"
        + ("" if url.endswith(f":{default_port()}") else f" --sandbox-url {url}"),
    ]


def _printable_secret(secret: str) -> str:
    """The sandbox's secret, unless it was set to the configured real one (then it stays hidden)."""
    from dispatcher.config.environment import lookup

    try:
        real = lookup("DINGTALK_APP_SECRET")
    except DispatcherError:
        real = None
    if secret != SandboxOptions().app_secret and real and secret == real:
        return "(hidden: DISPATCHER_SANDBOX_APP_SECRET equals DINGTALK_APP_SECRET, which may be real)"
    return secret
