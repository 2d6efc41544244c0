"""A local stand-in for DingTalk's server API, with an inbox page: see server.py."""

from __future__ import annotations

from dispatcher.sandbox.options import SandboxOptions
from dispatcher.sandbox.server import Sandbox, serve_forever

__all__ = ["Sandbox", "SandboxOptions", "serve_forever"]
