"""A stored batch and its result files: what the API's batch views and the dashboard's download both answer."""

from __future__ import annotations

from flask import send_file
from flask.typing import ResponseReturnValue

from labservice.batch.keep import recover_batches
from labservice.batch.store import StoredBatch, is_batch_id
from labservice.errors import Problem
from labservice.extensions import current_database, current_store
from labservice.security.audit import touched_batch

#: The result files of a batch: kind -> media type.
RESULT_TYPES = {"csv": "text/csv", "json": "application/json"}


def find_batch(batch_id: str) -> StoredBatch:
    """The stored batch with this id, or Problem 404 (after recovering what an upload killed mid-way left)."""
    stored = current_store().get(batch_id) if is_batch_id(batch_id) else None
    if stored is None and is_batch_id(batch_id) and recover_batches(current_store(), current_database()):
        stored = current_store().get(batch_id)  # committed by an upload killed before it moved the files
    if stored is None:
        raise Problem(404, "No batch with this id (an id is 32 hexadecimal characters).")
    return stored


def send_batch_result(batch_id: str, kind: str) -> ResponseReturnValue:
    """A batch's results (`kind` csv or json) as an attachment, noted in the audit trail."""
    stored = find_batch(batch_id)
    touched_batch(batch_id, "read")  # the audit trail
    return send_file(
        stored.csv_path if kind == "csv" else stored.json_path,
        mimetype=RESULT_TYPES[kind],
        as_attachment=True,
        download_name=f"batch-{batch_id}.{kind}",
    )
