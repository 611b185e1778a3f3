"""A CSV upload interpreted and kept: what POST /api/v1/batches and the dashboard's upload page both run.

The upload runs through the same `run_batch` as the command line, so both give the same output for the
same file and mapping. Werkzeug spools the uploaded file to disk; the upload is hashed in blocks, a batch
already stored is answered without interpreting it again, and otherwise the file streams through
`run_batch` into the batch store. It reads this request's form itself, under MAX_UPLOAD_BYTES (the upload
limit must apply before the form is parsed), and raises Problem (413, 415, 422, 507) naming `file`, `mapping`
or `quota`.
"""

from __future__ import annotations

import re
from typing import IO, Any

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from labservice.batch import BatchFileError, BatchOptions, MappingError, load_mapping_text
from labservice.batch.builtin_mappings import builtin_mapping_path
from labservice.batch.keep import recover_batches
from labservice.batch.limits import rows_over_limit
from labservice.batch.results_store import BatchStore, StoredBatch, batch_id_for, content_sha256
from labservice.batch.retention import cutoff, is_expired, purge_batch
from labservice.batch.runner import check_readable
from labservice.errors import Problem
from labservice.extensions import current_database, current_ruleset, current_store
from labservice.middleware.audit_trail import touched_batch, touched_resource
from labservice.query import excel_requested, store_requested
from labservice.security.principal import current_principal
from labservice.services.batch_jobs import Upload, find_job, forget_job, quota_error, submit_job
from labservice.services.batch_results import purge_now_and_then_configured
from labservice.services.job_queue import current_queue
from labservice.store.batch_jobs import DONE, FAILED
from labservice.store.batch_records import bytes_kept, known_batches
from labservice.store.database import Database

#: Largest mapping document accepted when it is sent as a file part rather than a text field.
MAX_MAPPING_BYTES = 1024 * 1024
#: batches.filename is String(300).
FILENAME_MAX_LENGTH = 300


def _kept_filename(sent: str | None) -> str | None:
    """The upload's file name as the batch record keeps it: no control characters (PostgreSQL text cannot hold
    NUL), at most FILENAME_MAX_LENGTH characters. It is only a label; the batch id comes from the content."""
    if sent is None:
        return None
    cleaned = re.sub(r"[\x00-\x1f\x7f]", "", sent)
    return cleaned[:FILENAME_MAX_LENGTH] or None


def receive_upload() -> tuple[str, bool]:
    """This request's upload (multipart `file`, optional `mapping` and `excel`) kept and queued as a job: (the batch
    id, True when this call queued it; False when the batch is kept already or its job is queued or running). Shared by
    this endpoint and the dashboard's upload page; raises Problem (413, 415, 422, 507). The file is checked here
    as far as it can be without reading it all (its size, rows, encoding, delimiter and header); what the job
    finds later is in its errors. With JOB_QUEUE=immediate the job has run when this returns, and a job that
    failed raises its problem here."""
    limit = current_app.config["MAX_UPLOAD_BYTES"]
    request.max_content_length = limit  # this endpoint only; the app-wide MAX_CONTENT_LENGTH stays
    if request.mimetype != "multipart/form-data":
        sent = request.mimetype or "no content type"
        raise Problem(415, f"Send the CSV as multipart/form-data (field `file`), not {sent}.")
    keep = store_requested()
    store, database = current_store(), current_database()
    owner, quota = current_principal().id, current_app.config["BATCH_QUOTA_BYTES"]
    purge_now_and_then_configured(store, database)
    _check_quota(database, owner, quota)  # before the form is read: an owner at the quota costs nothing more
    upload, mapping_text = _read_form(limit)
    excel_requested(form=True)  # a word other than true or false is refused before anything is kept
    options = _options(mapping_text)
    _check_rows(upload)  # MAX_BATCH_ROWS, before anything is interpreted or stored
    mapping = options.to_document()
    ruleset = current_ruleset()
    sha256 = content_sha256(upload)
    batch_id = batch_id_for(sha256, mapping, ruleset.version, stored=keep)  # ?store=false: an id of its own
    recover_batches(store, database)  # what an upload killed mid-way left behind
    existing = store.get(batch_id)
    if existing is not None and _still_valid(store, database, existing):
        touched_batch(batch_id, "read", store.patients(batch_id))  # the audit trail
        return batch_id, False
    try:
        check_readable(upload, options, ruleset)
    except MappingError as error:
        raise Problem(422, f"The mapping cannot be used: {error}.", {"mapping": [str(error)]}) from None
    except BatchFileError as error:
        raise Problem(422, f"The file cannot be read as CBCs: {error}.", {"file": [str(error)]}) from None
    filename = _kept_filename(getattr(request.files.get("file"), "filename", None))
    job = find_job(batch_id)
    if job is not None and job.status == DONE:
        if store.get(batch_id) is not None:  # another upload of this file finished while this one was checked
            touched_batch(batch_id, "read", store.patients(batch_id))
            return batch_id, False
        forget_job(batch_id)  # its results were purged or lost: the batch is made again
    queued = submit_job(Upload(batch_id, sha256, mapping, filename, owner, keep), upload)
    touched_resource(f"batch {batch_id}", "create" if queued else "read")  # stored patients noted as kept
    if queued and current_queue().immediate:
        job = find_job(batch_id)
        if job is not None and job.status == FAILED and job.errors:
            forget_job(batch_id)  # nothing of it is kept (its results); the CBCs it stored stay
            raise _problem(job.errors[0])
    return batch_id, queued


def _problem(error: dict[str, Any]) -> Problem:
    return Problem(int(error["status"]), str(error["detail"]), error.get("errors"), title=error.get("title"))


def _still_valid(store: BatchStore, database: Database, existing: StoredBatch) -> bool:
    """Whether a kept batch answers a new upload of it. Not when its results have expired (they are purged now),
    when its row says they were purged (a purge that died mid-way), or when it has no row: results a ?store=false
    upload made under the storing id before the identity included it, which must not stop this upload
    from storing. Those are deleted and made again."""
    before = cutoff(current_app.config["BATCH_RETENTION_DAYS"])
    with database.session() as session:
        live = known_batches(session, [existing.batch_id]).get(existing.batch_id, "no row") is None
    if live and not is_expired(existing.record, before):
        return True
    purge_batch(store, database, existing.batch_id, before=before if live else None)
    return False


def _check_quota(database: Database, owner: str, quota: int) -> None:
    with database.session() as session:
        used = bytes_kept(session, owner)
    if used >= quota:
        raise _over_quota(used, None, quota)


def _over_quota(used: int, size: int | None, limit: int) -> Problem:
    """507 (the owner's kept results are at the quota), or 413 when this batch's results alone exceed it."""
    return _problem(quota_error(used, size, limit))


def _read_form(limit: int) -> tuple[IO[bytes], str | None]:
    """The uploaded file's binary stream (spooled by werkzeug) and the mapping text, if any."""
    try:
        files, form = request.files, request.form
    except RequestEntityTooLarge:
        if request.content_length is not None and request.content_length <= limit:
            raise Problem(
                413,
                "A form field other than `file` is larger than MAX_FORM_MEMORY_SIZE "
                f"({current_app.config['MAX_FORM_MEMORY_SIZE']} bytes).",
            ) from None
        raise Problem(
            413, f"The upload is larger than {limit} bytes (MAX_UPLOAD_BYTES).", {"file": [f"At most {limit} bytes."]}
        ) from None
    upload = files.get("file")
    if upload is None:
        hint = " `file` was sent as a text field: send it as a file part (with a filename)." if "file" in form else ""
        raise Problem(
            422,
            f"No CSV file in the upload: send it in the multipart field `file`.{hint}",
            {"file": ["Missing file part."]},
        )
    mapping = files.get("mapping")
    if mapping is not None:
        raw = mapping.stream.read(MAX_MAPPING_BYTES + 1)
        if len(raw) > MAX_MAPPING_BYTES:
            raise Problem(
                422, "The mapping document is too large.", {"mapping": [f"At most {MAX_MAPPING_BYTES} bytes."]}
            )
        try:
            return upload.stream, raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Problem(422, "The mapping is not UTF-8 text.", {"mapping": ["Not UTF-8 text."]}) from None
    return upload.stream, form.get("mapping")


def _check_rows(upload: IO[bytes]) -> None:
    limit = current_app.config["MAX_BATCH_ROWS"]
    if rows_over_limit(upload, limit) is not None:
        raise Problem(
            413,
            f"The file has more than {limit} data rows (MAX_BATCH_ROWS): split it into smaller files.",
            {"file": [f"At most {limit} data rows after the header."]},
        )


def builtin_mapping_text(text: str) -> str | None:
    """The JSON of the built-in mapping this text names (`mimic-iii-labevents`), or None when it names none."""
    path = builtin_mapping_path(text)
    return path.read_text(encoding="utf-8") if path is not None else None


def _options(mapping_text: str | None) -> BatchOptions:
    if mapping_text is None or not mapping_text.strip():
        return BatchOptions()
    mapping_text = builtin_mapping_text(mapping_text) or mapping_text  # issue 14 item 6: a built-in by name
    try:
        return load_mapping_text(mapping_text)
    except MappingError as error:
        raise Problem(422, f"The mapping cannot be used: {error}.", {"mapping": [str(error)]}) from None
