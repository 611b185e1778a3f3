"""The fields of a line that pandas skipped (two or more fields more than the header), read again from the file.

pandas' C parser reports such a line by its number only, so its id cells would be lost: the output row of a
rejected line must keep them (issue 14 item 5). `LineFields` finds a physical line by counting line feeds from
a byte offset that only moves forward (one pass over the file at most, in C, and only when a line was skipped),
and reads that one record with the csv module. It shares the file with the reader: it seeks and puts the
position back, between two of the reader's chunks.
"""

from __future__ import annotations

import csv
import io
import re
from typing import IO

from labservice.adapters.csv_input.dialect import Dialect

#: Bytes read at a time when counting line feeds, and the most read for one record.
BLOCK_BYTES = 1 << 20
_BARE_CR = re.compile(rb"\r(?!\n)")


class LineFields:
    """Fields of given physical lines (1 = the file's first line), asked for in increasing order."""

    def __init__(self, source: IO[bytes], start: int, dialect: Dialect, sample: bytes) -> None:
        self.source, self.offset, self.line = source, start, 1
        self.dialect = dialect
        #: Lines ended by a carriage return alone are not counted by their line feeds: nothing is read then.
        self.usable = _BARE_CR.search(sample) is None

    def fields(self, line: int) -> list[str] | None:
        """The fields of the record that starts on `line`, when it has more fields than the header (as a line
        pandas skipped has); None otherwise, or when the line is behind the offset or cannot be read."""
        if not self.usable or line < self.line:
            return None
        position = self.source.tell()
        try:
            if not self._seek_line(line):
                return None
            self.source.seek(self.offset)
            text = self.source.read(BLOCK_BYTES).decode(self.dialect.encoding, errors="replace")
            record = next(csv.reader(io.StringIO(text, newline=""), delimiter=self.dialect.delimiter), None)
        except (OSError, csv.Error, LookupError):
            return None
        finally:
            self.source.seek(position)
        return record if record is not None and len(record) > len(self.dialect.header) else None

    def _seek_line(self, line: int) -> bool:
        """Move the offset to the start of `line`; False when the file ends before it."""
        self.source.seek(self.offset)
        while self.line < line:
            block = self.source.read(BLOCK_BYTES)
            if not block:
                return False
            feeds = block.count(b"\n")
            if self.line + feeds < line:
                self.line += feeds
                self.offset += len(block)
                continue
            at = -1
            for _ in range(line - self.line):
                at = block.index(b"\n", at + 1)
            self.offset += at + 1
            self.line = line
        return True
