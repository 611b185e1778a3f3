"""A stored batch and its result files: what the API's batch views and the dashboard's download both answer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from flask import Response, current_app, send_file
from flask.typing import ResponseReturnValue

from labservice.batch.download_name import content_disposition, result_filename
from labservice.batch.keep import recover_batches
from labservice.batch.output_dialect import BOM
from labservice.batch.results_store import BatchStore, StoredBatch, is_batch_id
from labservice.batch.retention import cutoff, is_expired, purge_batch, purge_now_and_then
from labservice.errors import Problem
from labservice.extensions import current_database, current_store
from labservice.middleware.audit_trail import touched_batch
from labservice.store.batch_records import known_batches
from labservice.store.database import Database
from labservice.store.repository import as_utc, now_utc

#: The result files of a batch: kind -> media type.
RESULT_TYPES = {"csv": "text/csv", "json": "application/json"}
#: The UTF-8 byte order mark, as the bytes an Excel download begins with.
BOM_BYTES = BOM.encode("utf-8")
#: Bytes sent at a time when a result is streamed after a byte order mark.
STREAM_BLOCK = 1 << 16


def find_batch(batch_id: str) -> StoredBatch:
    """The kept batch with this id; Problem 410 when its results have expired (purged now if they were still
    there), 404 when there is no such batch. Shared with the dashboard's batch pages."""
    store, database = current_store(), current_database()
    purge_now_and_then_configured(store, database)
    stored = store.get(batch_id) if is_batch_id(batch_id) else None
    before = cutoff(current_app.config["BATCH_RETENTION_DAYS"])
    if stored is not None and is_expired(stored.record, before):
        purge_batch(store, database, batch_id, before=before)
        raise _gone(batch_id, now_utc())
    if stored is None and is_batch_id(batch_id) and recover_batches(store, database):
        stored = store.get(batch_id)  # committed by an upload killed before it moved the files
    if stored is None:
        purged = None
        if is_batch_id(batch_id):
            with database.session() as session:
                purged = known_batches(session, [batch_id]).get(batch_id)
        if purged is not None:
            raise _gone(batch_id, purged)
        raise Problem(404, "No batch with this id (an id is 32 hexadecimal characters).")
    return stored


def _gone(batch_id: str, purged_at: datetime) -> Problem:
    days = current_app.config["BATCH_RETENTION_DAYS"]
    return Problem(
        410,
        f"The results of batch {batch_id} were deleted on {as_utc(purged_at):%Y-%m-%d}: batch results "
        f"are kept {days} days after their upload (BATCH_RETENTION_DAYS). The CBCs and referrals it "
        "stored stay in the patients' records; upload the file again to make its results again.",
        title="Batch Results Expired",
    )


def purge_now_and_then_configured(store: BatchStore, database: Database) -> None:
    """Purge expired batch results, at most once per BATCH_PURGE_INTERVAL_SECONDS in this process."""
    config = current_app.config
    purge_now_and_then(
        store,
        database,
        retention_days=config["BATCH_RETENTION_DAYS"],
        interval_seconds=config["BATCH_PURGE_INTERVAL_SECONDS"],
    )


def send_batch_result(stored: StoredBatch, kind: str, excel: bool = False) -> ResponseReturnValue:
    """A found batch's results (`kind` csv or json) as an attachment named after the uploaded file
    (`cbc-results.csv` -> `cbc-results.interpreted.csv`), noted in the audit trail. With `excel`, a CSV that does not
    begin with a UTF-8 byte order mark is sent with one (the stored file has one when the upload had one)."""
    batch_id = stored.batch_id
    touched_batch(batch_id, "read", current_store().patients(batch_id))  # the audit trail
    path = stored.csv_path if kind == "csv" else stored.json_path
    if kind == "csv" and excel and not _begins_with_bom(path):
        handle = path.open("rb")  # now: a purge after this answer began cannot cut it short
        size = os.fstat(handle.fileno()).st_size
        response = Response(_after_bom(handle), mimetype=RESULT_TYPES[kind], direct_passthrough=True)
        response.content_length = len(BOM_BYTES) + size
    else:
        response = send_file(path, mimetype=RESULT_TYPES[kind], as_attachment=True)
    filename = result_filename(stored.record.get("filename"), batch_id, kind)
    response.headers["Content-Disposition"] = content_disposition(filename)
    return response


def _begins_with_bom(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(BOM_BYTES)) == BOM_BYTES


def _after_bom(handle: BinaryIO) -> Iterator[bytes]:
    """The byte order mark, then the open file, block by block; the file is closed at the end (or when the answer
    is closed before it)."""
    try:
        yield BOM_BYTES
        while block := handle.read(STREAM_BLOCK):
            yield block
    finally:
        handle.close()
