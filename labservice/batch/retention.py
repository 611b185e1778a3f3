"""Batch results expire: deleted BATCH_RETENTION_DAYS after their upload, by the service itself and on demand.

A batch's results (result.csv, result.json, about 12 times the upload) are kept for download only. Purging a
batch deletes its directory in the batch store and marks its database row purged (`purged_at`); a download
after that answers 410 Gone. The CBCs, interpretations and referrals the batch stored stay: they are the
patients' record, and the worklist keeps them. Uploading the same file again makes the results again (its CBCs
are recognised as already stored).

The service purges by itself, lazily: an upload or a batch look-up runs `purge_now_and_then`, which purges at
most once every BATCH_PURGE_INTERVAL_SECONDS per process (no cron job needed); `labservice purge` runs
`purge_batches` on demand (with --dry-run, it lists what it would delete). Besides expired rows, a purge deletes
directories the database does not account for once they are older than the retention: results of
``?store=false`` uploads made before those had a row, and a directory left by a purge that died mid-way.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from labservice.batch.results_store import RECORD_NAME, BatchStore
from labservice.store.batch_records import expired_batches, known_batches, mark_purged
from labservice.store.database import Database
from labservice.store.repository import as_utc, now_utc

log = logging.getLogger("labservice.batch")

#: Rows read (and directories checked) at a time.
PURGE_CHUNK = 500


@dataclass(frozen=True)
class Purged:
    """A batch whose results were (or, in a dry run, would be) deleted."""

    batch_id: str
    created_at: datetime | None
    result_bytes: int


def cutoff(retention_days: int, now: datetime | None = None) -> datetime:
    """Results made before this moment have expired."""
    return (now or now_utc()) - timedelta(days=retention_days)


def is_expired(record: dict, before: datetime) -> bool:
    """Whether a batch record (summary.json) was made before `before`."""
    made = _made_at(record)
    return made is not None and made < before


def purge_batches(store: BatchStore, database: Database, *, before: datetime, dry_run: bool = False) -> list[Purged]:
    """Delete the results of every batch made before `before` (see the module); return what was (or would be,
    with `dry_run`) deleted, oldest first."""
    purged = _purge_rows(store, database, before, dry_run)
    purged += _purge_unaccounted(store, database, before, dry_run, {p.batch_id for p in purged})
    if not dry_run:
        store.discard_leftovers()
    return purged


def purge_batch(store: BatchStore, database: Database, batch_id: str, *, before: datetime | None) -> bool:
    """Purge one batch now (found expired on a look-up, or left unaccounted for): its row is marked purged if it
    was made before `before` (None: no live row to mark), then its directory is deleted. False when a new upload
    took the row up meanwhile (its results are left alone)."""
    if before is not None:
        with database.session() as session:
            if not mark_purged(session, batch_id, before):
                return False
    return store.discard(batch_id)


def _purge_rows(store: BatchStore, database: Database, before: datetime, dry_run: bool) -> list[Purged]:
    """Expired rows, a chunk at a time (each purged row leaves the query; a dry run reads them all at once)."""
    out: list[Purged] = []
    while True:
        with database.session() as session:
            rows = [
                (row.id, as_utc(row.created_at), int(row.result_bytes or 0))
                for row in expired_batches(session, before, None if dry_run else PURGE_CHUNK)
            ]
        for batch_id, created_at, size in rows:
            size = size or store.size(batch_id)  # 0: a batch made before sizes were counted
            if not dry_run:
                with database.session() as session:
                    if not mark_purged(session, batch_id, before):
                        continue  # taken up again by a new upload meanwhile
                store.discard(batch_id)  # marked first: a purge that dies here leaves a directory the next removes
            out.append(Purged(batch_id, created_at, size))
        if dry_run or len(rows) < PURGE_CHUNK:
            return out


def _purge_unaccounted(
    store: BatchStore, database: Database, before: datetime, dry_run: bool, done: set[str]
) -> list[Purged]:
    """Directories older than `before` with no row (legacy ?store=false results) or with a purged row."""
    out: list[Purged] = []
    ids = [batch_id for batch_id in store.batch_ids() if batch_id not in done]
    for start in range(0, len(ids), PURGE_CHUNK):
        chunk = ids[start : start + PURGE_CHUNK]
        with database.session() as session:
            known = known_batches(session, chunk)
        for batch_id in chunk:
            if batch_id in known and known[batch_id] is None:
                continue  # kept, and not expired (or it would have been purged above)
            made = _made_at(_record(store, batch_id))
            if made is None or made >= before:  # too new (e.g. just made again by a new upload): leave it
                continue
            size = store.size(batch_id)
            if dry_run or store.discard(batch_id):
                out.append(Purged(batch_id, made, size))
    return out


def _record(store: BatchStore, batch_id: str) -> dict:
    try:
        return json.loads((store.directory / batch_id / RECORD_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def _made_at(record: dict) -> datetime | None:
    try:
        return as_utc(datetime.fromisoformat(str(record["created_at"])))
    except (KeyError, ValueError):
        return None


_last_purge: dict[tuple[int, str], float] = {}


def purge_now_and_then(store: BatchStore, database: Database, *, retention_days: int, interval_seconds: int) -> None:
    """Purge expired batches, at most once every `interval_seconds` per process, store and database. A failure is
    logged and left for the next time: it must not fail the request that happened to run it."""
    key = (id(database), str(store.directory))
    moment = time.monotonic()
    if moment - _last_purge.get(key, -math.inf) < interval_seconds:
        return
    _last_purge[key] = moment
    try:
        purged = purge_batches(store, database, before=cutoff(retention_days))
    except (SQLAlchemyError, OSError) as error:
        log.warning("batch purge failed; it runs again later", exc_info=error)
        return
    if purged:
        log.info(
            "batch results purged",
            extra={"fields": {"batches": len(purged), "bytes": sum(p.result_bytes for p in purged)}},
        )
