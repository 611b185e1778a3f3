"""Uploaded batches and their results, kept on the filesystem: one directory per batch, written atomically.

Layout: ``<directory>/<batch_id>/result.csv``, ``result.json``, ``pages.npz`` (where its rows are, for the
dashboard's pages: labservice.batch.result_pages), ``summary.json`` (the record: batch id,
content hash, mapping document, when it was made and the run's summary) and ``patients.json`` (the distinct
patient ids the results show, for the audit trail: a producer returns them under the record's ``patients`` key,
which is written to this file rather than into the record every read loads). A batch is written into a
``.partial-<batch_id>-*`` directory beside the others and renamed into place once complete, so a crash
leaves no half batch under a batch id (only a ``.partial-*`` directory, which no id can name).

Nothing lost, nothing half kept: the process writing a partial directory holds an exclusive ``flock`` on
its ``.lock`` file until it is done, and the kernel releases that lock when the process dies (even by
SIGKILL). A batch whose rows go to the database commits that transaction just before the rename (the
``commit`` step of `BatchStore.save`), so the commit decides. `BatchStore.recover` settles what a dead
process left: a complete partial directory whose batch the database committed is renamed into place (the
process died between commit and rename); any other is deleted (it died before the commit, so the database
rolled the batch back too). A directory is created as ``.creating-*`` and renamed to ``.partial-*`` once its
lock is held, so recovery never mistakes a directory being created for one whose writer died.

The batch id is derived from what decides the output: the file's content, the mapping it was read with,
the version of the rule tables, and whether its CBCs were stored (a ``?store=false`` upload has an id of its
own, so it never answers for the storing upload of the same file). The same file uploaded twice with the same
mapping is therefore recognised before it is interpreted again.

The store is small on purpose (`get`, `save`, `recent`, the result paths). CBCs of a batch that carry a
patient id are also stored in the database (`labservice.store`), with a row in its `batches` table.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TextIO

from labservice.batch.result_pages import write_index

#: A batch id: 32 lower-case hex characters (no dots or slashes, so never a path outside the store).
BATCH_ID_RE = re.compile(r"[0-9a-f]{32}")
CSV_NAME, JSON_NAME, RECORD_NAME, PATIENTS_NAME = "result.csv", "result.json", "summary.json", "patients.json"
PARTIAL_PREFIX = ".partial-"
#: A batch's directory being deleted (retention) is first renamed to this prefix, so its id is free at once.
DISCARDED_PREFIX = ".discarded-"
CREATING_PREFIX = ".creating-"
LOCK_NAME = ".lock"
#: A .creating-* directory (a writer between mkdtemp and taking its lock) older than this is left-over.
STALE_CREATING_SECONDS = 60
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


def batch_id_for(
    content_sha256: str, mapping_document: dict[str, Any], ruleset_version: str, stored: bool = True
) -> str:
    """The id of the batch made from this content, read with this mapping, under these rule tables, with its
    CBCs stored or not (?store=false): an unstored upload must never pass for the storing one."""
    parts = (content_sha256, canonical_json(mapping_document), ruleset_version) + (() if stored else ("store=false",))
    key = "\n".join(parts)
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

    def save(
        self, batch_id: str, produce: Producer, commit: Callable[[], None] | None = None
    ) -> tuple[StoredBatch, bool]: ...

    def recent(self, limit: int = 20) -> list[StoredBatch]: ...

    def patients(self, batch_id: str) -> list[str] | None: ...


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

    def patients(self, batch_id: str) -> list[str] | None:
        """The patient ids the batch's results show; None when the batch or its list is missing (a batch made
        before the list was kept)."""
        if not is_batch_id(batch_id):
            return None
        try:
            return json.loads((self.directory / batch_id / PATIENTS_NAME).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

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

    def save(
        self,
        batch_id: str,
        produce: Producer,
        commit: Callable[[], None] | None = None,
        measured: Callable[[int], None] | None = None,
    ) -> tuple[StoredBatch, bool]:
        """Make a batch with `produce` and move it into place: (the batch, True if this call made it).

        `produce` writes the CSV and JSON results and returns the record. If it raises, nothing is kept
        and the exception propagates. `measured` is given the bytes of the complete files (the quota check
        and the size the database keeps) and may raise too. `commit` (the database transaction of the batch's
        rows) runs once the files are complete, just before they are renamed into place; if it raises, nothing
        is kept.
        If the same batch was completed meanwhile (a concurrent upload of the same file), that one is kept
        and returned with False, and `commit` is not called.
        """
        if not is_batch_id(batch_id):
            raise ValueError(f"not a batch id: {batch_id!r}")
        self.directory.mkdir(parents=True, exist_ok=True)
        partial, lock = self._new_partial(batch_id)
        try:
            with _text_file(partial / CSV_NAME) as csv_out, _text_file(partial / JSON_NAME) as json_out:
                record = produce(csv_out, json_out)
            patients = record.pop("patients", None)
            if patients is not None:
                with _text_file(partial / PATIENTS_NAME) as handle:
                    json.dump(list(patients), handle, ensure_ascii=False)
            with _text_file(partial / RECORD_NAME) as handle:
                json.dump(record, handle, ensure_ascii=False, indent=2)
                handle.write("\n")
            write_index(partial / JSON_NAME)  # the pages of rows the dashboard shows (counted in the quota)
            final = self.directory / batch_id
            existing = self.get(batch_id)
            if existing is not None:  # completed meanwhile: keep that one (and commit nothing)
                return existing, False
            if measured is not None:
                measured(_bytes_in(partial))
            if commit is not None:
                commit()
            try:
                os.rename(partial, final)
            except OSError:  # the directory exists: the same batch was completed meanwhile
                existing = self.get(batch_id)
                if existing is None:
                    raise
                return existing, False
            _sync_directory(self.directory)
            with contextlib.suppress(FileNotFoundError):
                (final / LOCK_NAME).unlink()
            return self._stored(batch_id, final, record), True
        finally:
            shutil.rmtree(partial, ignore_errors=True)
            lock.close()

    def size(self, batch_id: str) -> int:
        """Bytes of the batch's files (0 when it is not kept)."""
        return _bytes_in(self.directory / batch_id) if is_batch_id(batch_id) else 0

    def batch_ids(self) -> list[str]:
        """The ids of the complete batches kept."""
        try:
            return [entry.name for entry in self.directory.iterdir() if is_batch_id(entry.name)]
        except FileNotFoundError:
            return []

    def discard(self, batch_id: str) -> bool:
        """Delete a batch's files: True when they were there. The directory is renamed aside first, so a new
        upload of the same batch can move its own into place at once; leftovers of a process that died while
        deleting are removed by `discard_leftovers`."""
        if not is_batch_id(batch_id):
            return False
        aside = self.directory / f"{DISCARDED_PREFIX}{batch_id}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            os.rename(self.directory / batch_id, aside)
        except FileNotFoundError:
            return False
        shutil.rmtree(aside, ignore_errors=True)
        return True

    def discard_leftovers(self) -> None:
        """Remove what a process that died while deleting a batch left behind."""
        with contextlib.suppress(FileNotFoundError):
            for entry in self.directory.iterdir():
                if entry.name.startswith(DISCARDED_PREFIX):
                    shutil.rmtree(entry, ignore_errors=True)

    def _new_partial(self, batch_id: str) -> tuple[Path, IO[str]]:
        """A new, empty .partial-<batch_id>-* directory and its lock, held (closing the handle releases it)."""
        creating = Path(tempfile.mkdtemp(prefix=CREATING_PREFIX, dir=self.directory))
        try:
            lock = (creating / LOCK_NAME).open("w")
            fcntl.flock(lock, fcntl.LOCK_EX)
            partial = self.directory / f"{PARTIAL_PREFIX}{batch_id}-{creating.name[len(CREATING_PREFIX) :]}"
            os.rename(creating, partial)
        except BaseException:
            shutil.rmtree(creating, ignore_errors=True)
            raise
        return partial, lock

    def recover(self, is_committed: Callable[[str], bool]) -> list[str]:
        """Settle the directories of uploads whose process died; return the batch ids moved into place.

        A directory still locked belongs to a live upload and is left alone. An unlocked, complete
        ``.partial-<batch_id>-*`` whose batch `is_committed` (the database has it) is renamed into place:
        its process died between the commit and the rename. Every other unlocked one is deleted.
        """
        try:
            candidates = [
                entry
                for entry in self.directory.iterdir()
                if entry.name.startswith((PARTIAL_PREFIX, CREATING_PREFIX)) and entry.is_dir()
            ]
        except FileNotFoundError:
            return []
        recovered = []
        for folder in candidates:
            lock = _try_lock(folder)
            try:
                if lock is _BUSY:  # a live upload's
                    continue
                if lock is _NO_LOCK or folder.name.startswith(CREATING_PREFIX):
                    # A writer between creating the directory and holding its lock, or one that died
                    # there (nothing written yet): only an old one is left-over.
                    if _age(folder) > STALE_CREATING_SECONDS:
                        shutil.rmtree(folder, ignore_errors=True)
                    continue
                batch_id = folder.name[len(PARTIAL_PREFIX) :].split("-", 1)[0]
                final = self.directory / batch_id
                if (
                    is_batch_id(batch_id)
                    and (folder / RECORD_NAME).is_file()
                    and not final.exists()
                    and is_committed(batch_id)
                ):
                    os.rename(folder, final)
                    _sync_directory(self.directory)
                    with contextlib.suppress(FileNotFoundError):
                        (final / LOCK_NAME).unlink()
                    recovered.append(batch_id)
                else:
                    shutil.rmtree(folder, ignore_errors=True)
            finally:
                lock.close()
        return recovered


class _Marker:
    def close(self) -> None:
        pass


_BUSY, _NO_LOCK = _Marker(), _Marker()


def _try_lock(folder: Path) -> IO[str] | _Marker:
    """The folder's lock, taken without waiting; _BUSY when another process holds it, _NO_LOCK when none."""
    try:
        handle = (folder / LOCK_NAME).open("r")
    except (FileNotFoundError, NotADirectoryError):
        return _NO_LOCK
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return _BUSY
    return handle


def _bytes_in(folder: Path) -> int:
    """Bytes of the files directly in `folder` (a batch's directory holds no subdirectory)."""
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file():
                    total += entry.stat().st_size
    return total


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


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
