"""A progress bar on stderr for large files: bytes read against the file size (or a byte count for stdin)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30
#: Files smaller than this finish before a bar would help.
SHOW_FROM_BYTES = 8 * 1024 * 1024


class ProgressBar:
    def __init__(self, total: int | None, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < 0.2:
            return
        self._last = now
        elapsed = now - self.started
        megabytes = done / 1e6
        if self.total:
            fraction = min(done / self.total, 1.0)
            filled = int(fraction * BAR_WIDTH)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            text = f"\r[{bar}] {fraction:4.0%} {megabytes:,.1f} / {self.total / 1e6:,.1f} MB {elapsed:5.1f} s"
        else:
            text = f"\r{megabytes:,.1f} MB read {elapsed:5.1f} s"
        self.stream.write(text)
        if final:
            self.stream.write("\n")
        self.stream.flush()
