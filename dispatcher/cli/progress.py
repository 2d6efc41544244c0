"""What a slow command is doing now: one live line on a terminal, one line per stage otherwise.

`send` spends most of its time in the query and in the wait for receipts (`receipt_wait`, 5 s by
default, more in `full` mode); silence then reads as a hang. On a terminal the stage line is
rewritten in place (`\\r`, then erase to the end of the line) and cleared before the command's
own output; in a pipe or a file each stage prints once, so a log stays readable.
"""

from __future__ import annotations

import math
import sys
from typing import TextIO

_ERASE = "\r\x1b[K"  # back to the line's start, erase it: the next text replaces the line


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.live = self.stream.isatty()
        self._stage: str | None = None
        self._shown = False  # a live line is on screen

    def stage(self, name: str, text: str) -> None:
        """Enter (or update) stage `name`; a pipe sees each stage once, with its first text."""
        line = f"{name:<10} {text}"
        if self.live:
            self.stream.write(_ERASE + line)
            self.stream.flush()
            self._shown = True
        elif name != self._stage:
            self.stream.write(line + "\n")
            self.stream.flush()  # a pipe is block-buffered: the reader should see the stage now
        self._stage = name

    def waiting(self, left: float) -> None:
        """The receipt wait's countdown (the client calls it about once a second)."""
        self.stage("waiting", f"for receipts, {math.ceil(left)}s left")

    def clear(self) -> None:
        """Remove the live line, so the command's own output starts on a clean line."""
        if self._shown:
            self.stream.write(_ERASE)
            self.stream.flush()
            self._shown = False
