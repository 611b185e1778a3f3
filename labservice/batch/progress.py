"""A progress bar on stderr for large files: the part of the file done against its size (or a byte count for stdin).

The bar moves per chunk, by the rows interpreted and written (their bytes estimated from the first block's
average line), not by the bytes read: the reader reads ahead in 1 MiB blocks, so a file smaller than a block
would jump from 0 to 100 % at its first chunk. With a bar, the command reads the file in at least PROGRESS_STEPS
chunks (`chunk_rows_for_steps`; the output does not depend on the chunk size).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30
#: Files smaller than this finish before a bar would help.
SHOW_FROM_BYTES = 8 * 1024 * 1024
#: With a bar, a file is read in at least this many chunks, so the bar moves at least this many times.
PROGRESS_STEPS = 20
#: ... but no chunk smaller than this (a chunk costs a few milliseconds of its own).
MIN_PROGRESS_CHUNK_ROWS = 200
#: A new percentage is drawn at once; the same one again at most every this many seconds.
REDRAW_SECONDS = 0.2


def chunk_rows_for_steps(total_bytes: int | None, head: bytes, chunk_rows: int) -> int:
    """Rows per chunk so that a file of `total_bytes`, whose first block is `head`, takes PROGRESS_STEPS chunks."""
    per_line = bytes_per_line(head)
    if not total_bytes or per_line is None:
        return chunk_rows
    rows = total_bytes / per_line
    return max(MIN_PROGRESS_CHUNK_ROWS, min(chunk_rows, int(rows / PROGRESS_STEPS) + 1))


def bytes_per_line(head: bytes) -> float | None:
    """The average bytes of a line in the file's first block (None for a block without two whole lines)."""
    whole = head[: head.rfind(b"\n") + 1]
    lines = whole.count(b"\n")
    return len(whole) / lines if lines >= 2 else None


class ProgressBar:
    def __init__(self, total: int | None, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._last = 0.0
        self._shown: int | None = None

    def __call__(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        percent = int(100 * min(done / self.total, 1.0)) if self.total else None
        if not final and now - self._last < REDRAW_SECONDS and (percent is None or percent == self._shown):
            return
        self._last, self._shown = now, percent
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
