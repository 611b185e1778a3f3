"""The row limit of an uploaded batch (MAX_BATCH_ROWS), checked before anything is interpreted or stored.

A row is a data record after the header: blank lines do not count, and a quoted field with line breaks
is one record (quote characters are counted as the CSV reader counts them). Counting is cheap: one
pass counting newlines over the spooled upload (memory speed); only a file whose *lines* exceed the limit
is read a second time, record by record, to count exactly and stop as soon as the limit is passed.
"""

from __future__ import annotations

from typing import IO

BLOCK = 1 << 20


def _line_count(stream: IO[bytes]) -> int:
    """Physical lines of the stream (from its start; rewound after)."""
    stream.seek(0)
    newlines = 0
    last = b""
    while block := stream.read(BLOCK):
        newlines += block.count(b"\n")
        last = block[-1:]
    stream.seek(0)
    return newlines + (1 if last not in (b"", b"\n") else 0)


def _records_over(stream: IO[bytes], limit: int) -> int | None:
    """Data records after the header, counted until they pass `limit` (then that count), or None if they
    do not pass it. A line inside an open quoted field continues the record; blank lines are skipped."""
    stream.seek(0)
    records = -1  # the header is the first record
    in_quote = False
    try:
        for line in stream:
            if not in_quote:
                if not line.strip():
                    continue
                records += 1
                if records > limit:
                    return records
            if line.count(b'"') % 2:
                in_quote = not in_quote
    finally:
        stream.seek(0)
    return None


def rows_over_limit(stream: IO[bytes], limit: int) -> int | None:
    """None when the CSV holds at most `limit` data rows; else a row count that already exceeds it."""
    if _line_count(stream) - 1 <= limit:
        return None
    return _records_over(stream, limit)
