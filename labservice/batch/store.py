"""Uploaded batches and their results, kept on the filesystem: one directory per batch, written atomically.

Layout: ``<directory>/<batch_id>/result.csv``, ``result.json`` and ``summary.json`` (the record: batch id,
content hash, mapping document, when it was made and the run's summary). A batch is written into a
``.partial-*`` directory beside the others and renamed into place once complete, so a crash leaves no
half batch under a batch id (only a ``.partial-*`` directory, which no id can name).

The batch id is derived from what decides the output: the file's content, the mapping it was read with
and the version of the rule tables. The same file uploaded twice with the same mapping is therefore
recognised before it is interpreted again.

The store is small on purpose (`get`, `save`, `recent`, the result paths). CBCs of a batch that carry a
patient id are also stored in the database (`labservice.store`), with a row in its `batches` table.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TextIO

#: A batch id: 32 lower-case hex characters (no dots or slashes, so never a path outside the store).
BATCH_ID_RE = re.compile(r"[0-9a-f]{32}")
CSV_NAME, JSON_NAME, RECORD_NAME = "result.csv", "result.json", "summary.json"
PARTIAL_PREFIX = ".partial-"
#: Bytes read at a time when hashing an upload.
HASH_BLOCK = 1 << 20


def is_batch_id(text: str) -> bool:
    return BATCH_ID_RE.fullmatch(text) is not None


def content_sha256(stream: IO[bytes]) -> str:
    """SHA-256 (hex) of a seekable binary stream from its start, read in 1 MiB blocks; the stream is rewound."""
    digest = hashlib.sha256()
    stream.seek(0)
    while block := stream.read(HASH_BLOCK):
        digest.update(block)
    stream.seek(0)
    return digest.hexdigest()


def canonical_json(document: Any) -> str:
    """One text per JSON value: sorted keys, no spaces (the mapping part of a batch id)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def batch_id_for(content_sha256: str, mapping_document: dict[str, Any], ruleset_version: str) -> str:
    """The id of the batch made from this content, read with this mapping, under these rule tables."""
    key = "\n".join((content_sha256, canonical_json(mapping_document), ruleset_version))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class StoredBatch:
    """A complete batch: its record (summary.json) and where its results are."""

    batch_id: str
    record: dict[str, Any]
    csv_path: Path
    json_path: Path


#: Writes the results to the two text handles (CSV, JSON) and returns the record to keep with them.
Producer = Callable[[TextIO, TextIO], dict[str, Any]]


class BatchStorage(Protocol):
    """What the HTTP layer needs of a batch store (the filesystem now, a database later)."""

    def get(self, batch_id: str) -> StoredBatch | None: ...

    def save(self, batch_id: str, produce: Producer) -> tuple[StoredBatch, bool]: ...

    def recent(self, limit: int = 20) -> list[StoredBatch]: ...


class BatchStore:
    """Batches as directories under one directory (created when the first batch is saved)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _stored(self, batch_id: str, folder: Path, record: dict[str, Any]) -> StoredBatch:
        return StoredBatch(batch_id, record, folder / CSV_NAME, folder / JSON_NAME)

    def get(self, batch_id: str) -> StoredBatch | None:
        """The complete batch with this id, or None (also for anything that is not a batch id)."""
        if not is_batch_id(batch_id):
            return None
        folder = self.directory / batch_id
        try:
            record = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return self._stored(batch_id, folder, record)

    def recent(self, limit: int = 20) -> list[StoredBatch]:
        """The newest complete batches, newest first (by when their record was written)."""
        try:
            folders = [f for f in self.directory.iterdir() if is_batch_id(f.name)]
        except FileNotFoundError:
            return []
        dated = []
        for folder in folders:
            with contextlib.suppress(FileNotFoundError):
                dated.append(((folder / RECORD_NAME).stat().st_mtime, folder.name))
        out = []
        for _, batch_id in sorted(dated, reverse=True)[:limit]:
            stored = self.get(batch_id)
            if stored is not None:
                out.append(stored)
        return out

    def save(self, batch_id: str, produce: Producer) -> tuple[StoredBatch, bool]:
        """Make a batch with `produce` and move it into place: (the batch, True if this call made it).

        `produce` writes the CSV and JSON results and returns the record. If it raises, nothing is kept
        and the exception propagates. If the same batch was completed meanwhile (a concurrent upload of
        the same file), that one is kept and returned with False.
        """
        if not is_batch_id(batch_id):
            raise ValueError(f"not a batch id: {batch_id!r}")
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=self.directory))
        try:
            with _text_file(partial / CSV_NAME) as csv_out, _text_file(partial / JSON_NAME) as json_out:
                record = produce(csv_out, json_out)
            with _text_file(partial / RECORD_NAME) as handle:
                json.dump(record, handle, ensure_ascii=False, indent=2)
                handle.write("\n")
            final = self.directory / batch_id
            try:
                os.rename(partial, final)
            except OSError:  # the directory exists: the same batch was completed meanwhile
                existing = self.get(batch_id)
                if existing is None:
                    raise
                return existing, False
            _sync_directory(self.directory)
            return self._stored(batch_id, final, record), True
        finally:
            shutil.rmtree(partial, ignore_errors=True)


@contextlib.contextmanager
def _text_file(path: Path):
    """A UTF-8 text file written as is (no newline translation), flushed to disk before it is closed."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def _sync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (where the platform allows opening a directory)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
