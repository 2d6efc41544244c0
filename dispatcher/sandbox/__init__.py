"""A local stand-in for DingTalk's server API, with an inbox page: see server.py.

Entry points: `server.Sandbox` (in-process, for `send --sandbox` and `run --sandbox`) and
`server.serve_forever` (`dispatcher sandbox`). It follows DingTalk's rules (`rules`, `delivery`,
`media`, `robots`) and shows messages as a phone would (`inbox`, `inbox_groups`).

May import: dingtalk, robot and the top-level helpers.
"""

from __future__ import annotations

from dispatcher.sandbox.options import SandboxOptions
from dispatcher.sandbox.server import Sandbox, serve_forever

__all__ = ["Sandbox", "SandboxOptions", "serve_forever"]
