"""The HTTP session of every DingTalk and robot call: it never follows a redirect.

DingTalk's APIs never redirect. A 3xx comes from something in between (a proxy, a hijacked name, a
webhook that points elsewhere), and following it would resend the message, token and all, to an
address nobody configured (issue 22, item 7). A redirect is an error instead, which names where it
pointed with no query string (tokens and secrets travel there).
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from dispatcher.redact import redact


class NoRedirectSession(requests.Session):
    def get_redirect_target(self, resp: requests.Response) -> str | None:
        return None  # requests follows whatever this names: nothing, ever


def redirect_target(response: requests.Response) -> str | None:
    """Where a 3xx answer points, masked to scheme, host, port and path; None if it is no 3xx."""
    if not 300 <= response.status_code < 400:
        return None
    location = response.headers.get("Location")
    if not location:
        return "nowhere (no Location header)"
    parts = urlsplit(urljoin(response.url or "", location))
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    try:
        netloc += f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is no number: the host alone says enough
        pass
    return redact(urlunsplit((parts.scheme, netloc, parts.path, "", "")))
