"""The input stream of a batch: hashed and counted as it is read, and re-readable from its start."""

from __future__ import annotations

import codecs
import hashlib
import io
import shutil
import tempfile
from typing import IO

#: A non-seekable input (stdin) is copied to a temporary file, in memory up to this size.
SPOOL_IN_MEMORY = 32 * 1024 * 1024


class HashingStream(io.RawIOBase):
    """A readable stream that hashes and counts the bytes pandas reads, after a replayed sample."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0
        self._replay = b""
        self.exhausted = False
        self.quotes = 0  # quote characters read so far
        self._utf8: codecs.IncrementalDecoder | None = None  # a decoder while the file is checked as UTF-8
        self.invalid_utf8_at: int | None = None  # offset of the first byte that is not UTF-8
        self._replacing: codecs.IncrementalDecoder | None = None  # see replace_invalid_utf8
        self._passed = b""  # bytes read and made valid UTF-8, not yet passed on (from _passed_at on)
        self._passed_at = 0

    def check_utf8(self) -> None:
        """Check every byte read from now on as UTF-8 (the reader replaces bad bytes; the summary must say so)."""
        self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")

    def replace_invalid_utf8(self) -> None:
        """Pass on only valid UTF-8 from now on: bytes that are not are replaced by U+FFFD (its three bytes) as
        Python's "replace" error handler decodes them, so the parser may decode strictly. pandas' C parser decodes
        cell by cell when told to replace (ten times slower than its strict path, which builds Arrow strings
        directly); the text is the same, since the bytes that split cells and lines are ASCII and never part of a
        UTF-8 character. The hash, the byte count and the quotes count the bytes as read."""
        self._replacing = codecs.getincrementaldecoder("utf-8")("replace")

    def peek_sample(self, size: int) -> bytes:
        chunks = []
        total = 0
        while total < size:
            data = self.raw.read(size - total)
            if not data:
                self.exhausted = True
                break
            chunks.append(data)
            total += len(data)
        self._replay = b"".join(chunks)
        return self._replay

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._next(len(buffer)) if self._replacing is None else self._next_valid(len(buffer))
        count = len(data)
        buffer[:count] = data
        return count

    def _next_valid(self, size: int) -> bytes:
        """Up to `size` bytes of the input made valid UTF-8 (b"" at its end only)."""
        assert self._replacing is not None
        while self._passed_at == len(self._passed):
            data = self._next(size)
            if data.isascii() and not self._replacing.getstate()[0]:  # nothing to replace (no character begun)
                self._passed = data
            else:
                self._passed = self._replacing.decode(data, final=not data).encode("utf-8")
            self._passed_at = 0
            if not data:
                break
        out = self._passed[self._passed_at : self._passed_at + size]
        self._passed_at += len(out)
        return out

    def _next(self, size: int) -> bytes:
        """Up to `size` bytes of the input as read (the replayed sample first), hashed, counted and checked."""
        if self._replay:
            data, self._replay = self._replay[:size], self._replay[size:]
        else:
            data = self.raw.read(size)
        count = len(data)
        self.sha256.update(data)
        self.bytes_read += count
        self.quotes += data.count(b'"')
        if self._utf8 is not None and not (data.isascii() and not self._utf8.getstate()[0]):
            held = len(self._utf8.getstate()[0])  # bytes of a character begun in the previous read
            try:
                self._utf8.decode(bytes(data), final=not count)
            except UnicodeDecodeError as error:
                self.invalid_utf8_at = self.bytes_read - count - held + max(error.start, 0)
                self._utf8 = None
        return bytes(data)

    def drain(self) -> None:
        """Read what the parser left (after an unreadable line) so the hash covers the whole file."""
        while self.readinto(bytearray(1 << 20)):
            pass


def seekable_source(source: IO[bytes]) -> IO[bytes]:
    """The source itself when it can be re-read; otherwise a spooled copy (stdin, sockets)."""
    try:
        if source.seekable():
            return source
    except (AttributeError, ValueError):
        pass
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 (closed with the batch)
    shutil.copyfileobj(source, spool, 1 << 20)
    spool.seek(0)
    return spool


def rewound(source: IO[bytes], start: int) -> IO[bytes]:
    source.seek(start)
    return io.BufferedReader(_Unclosable(source))


class _Unclosable(io.RawIOBase):
    """Lets the recovery reader wrap the source without closing it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
