"""Headless Chromium as a phone, for the inbox's browser tests: the DevTools protocol over a pipe.

Chromium's own `--window-size` cannot make a page 375 px wide: headless windows are at least 500 px,
and a screenshot taken at 375 only crops a 500 px layout. The DevTools protocol's device metrics can,
and let a test read what the browser laid out (element boxes, computed styles) and take the
screenshot at the phone's pixel ratio. `--remote-debugging-pipe` speaks it as NUL-terminated JSON on
file descriptors 3 (to Chromium) and 4 (from it), so no WebSocket library is needed.

Skips without Chromium, and fails instead under DISPATCHER_REQUIRE_SERVICES=1 (CI installs it:
`chromium fonts-noto-cjk fonts-noto-color-emoji`, see .ci/run).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.services import installed

PHONE_WIDTH, PHONE_HEIGHT, PHONE_SCALE = 375, 812, 2  # an iPhone-sized viewport in CSS px
DEADLINE = 120.0


def chromium() -> str:
    return installed("chromium", "chromium-browser", package="chromium fonts-noto-cjk fonts-noto-color-emoji")


class Phone:
    """One headless Chromium with one page, sized as a phone; `close()` ends the process."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"]  # fmt: skip

        def child_fds() -> None:  # the protocol's fixed descriptors: 3 reads, 4 writes
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.process = subprocess.Popen(
            args, pass_fds=(3, 4), preexec_fn=child_fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.page("Page.enable")
        self.page("Emulation.setDeviceMetricsOverride", width=PHONE_WIDTH, height=PHONE_HEIGHT,
                  deviceScaleFactor=PHONE_SCALE, mobile=True)  # fmt: skip

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            request["sessionId"] = session
        os.write(self._to_chrome, json.dumps(request).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return dict(answer.get("result", {}))
            self.events.append(answer)

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.call(method, session=self.session, **params)

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(raw))

    def open(self, url: str) -> None:
        """Loads `url` and waits until it and its images have loaded and its fonts are ready, then
        stops the page's own reloads (the inbox refreshes every 3 s), so what a test measures stays put."""
        self.events.clear()
        self.page("Page.navigate", url=url)
        deadline = time.monotonic() + DEADLINE
        while not any(event.get("method") == "Page.loadEventFired" for event in self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} never finished loading")
            self.events.append(self._read())
        self.evaluate("window.stop()")
        self.wait_for("document.fonts.status === 'loaded'")

    def wait_for(self, condition: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not self.evaluate(f"Boolean({condition})"):
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never met: {condition}")
            time.sleep(0.05)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools runs it whatever the page's CSP)."""
        result = self.page("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, full_page: bool = True, clip: dict[str, float] | None = None) -> Path:
        """A PNG at the phone's pixel ratio: the whole page, or `clip` (CSS px: x, y, width, height)."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page or clip is not None}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        elif full_page:
            size = self.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            )
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        data = self.page("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
