"""POST /api/v1/batches: a CSV file of CBCs in (multipart), a summary out, results to download as CSV and JSON.

The upload runs through the same `run_batch` as the command line, so both give the same output for the
same file and mapping. Werkzeug spools the uploaded file to disk; the view hashes it in blocks, answers a
batch it already has without interpreting it again, and otherwise streams the file through `run_batch`
into the batch store. Only this endpoint accepts bodies up to MAX_UPLOAD_BYTES; every other request keeps
MAX_CONTENT_LENGTH.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, TextIO

from flask import Flask, current_app, request, send_file, url_for
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, fields
from werkzeug.exceptions import RequestEntityTooLarge

from labservice.api import current_database, current_ruleset
from labservice.api.query import store_requested
from labservice.api.schemas import URGENCIES, ProblemSchema
from labservice.batch import BatchFileError, BatchOptions, MappingError, load_mapping_text, run_batch
from labservice.batch.chunk import KeepRows
from labservice.batch.keep import QuotaExceeded, recover_batches, save_batch
from labservice.batch.limits import rows_over_limit
from labservice.batch.patients import PatientIds
from labservice.batch.retention import cutoff, is_expired, purge_batch, purge_now_and_then
from labservice.batch.store import BatchStore, StoredBatch, batch_id_for, content_sha256, is_batch_id
from labservice.errors import PROBLEM_CONTENT_TYPE, Problem
from labservice.security.audit import noting_patients, touched_batch, touched_resource
from labservice.security.principal import current_principal
from labservice.store.batch_records import bytes_kept, known_batches
from labservice.store.database import Database
from labservice.store.repository import as_utc, now_utc

if TYPE_CHECKING:
    from flask_smorest import Api

STORE_EXTENSION = "labservice.batch_store"
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

blp = Blueprint(
    "batches", __name__, url_prefix="/api/v1",
    description="Interpret a CSV file of CBCs (wide or long): a summary, and every row as CSV or JSON.",
)


# --- schemas (documentation only: the views answer the stored record as is) ---------------------


class BatchUploadSchema(Schema):
    """The multipart/form-data body of an upload (other fields are ignored)."""

    class Meta:
        unknown = EXCLUDE

    file = fields.Raw(required=True, metadata={
        "type": "string", "format": "binary",
        "description": "The CSV file: one CBC per row (wide) or one result per row (long); UTF-8 or "
                       "Windows-1252, delimiter and decimal mark detected."})
    mapping = fields.String(metadata={
        "description": "Optional mapping document as JSON text, the format of the command line's --mapping "
                       "file: shape, delimiter, decimal, encoding, columns, units, items, item_units, "
                       "sex_codes, date_order.",
        "example": '{"shape": "long", "columns": {"HADM_ID": "sample_id", "CHARTTIME": "collected_at", '
                   '"ITEMID": "item", "VALUE": "value", "VALUEUOM": "unit"}, "items": {"51265": "platelets"}}'})


class DuplicateExampleSchema(Schema):
    line = fields.Integer(metadata={"description": "Input line of the repeated row (header = line 1)"})
    duplicate_of = fields.Integer(metadata={"description": "Input line it repeats"})


def _counts(description: str) -> fields.Dict:
    return fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": description})


class BatchSummarySchema(Schema):
    """What the run reported (labservice.batch.summary.BatchSummary)."""

    shape = fields.String(metadata={"enum": ["wide", "long"], "description": "How the file was read"})
    encoding = fields.String(metadata={"example": "utf-8"})
    delimiter = fields.String(metadata={"example": ","})
    decimal = fields.String(metadata={"example": "."})
    rows_in = fields.Integer(metadata={"description": "Data lines read (wide: CBC rows; long: result rows), "
                                                      "blank lines excluded"})
    rows_out = fields.Integer(metadata={"description": "Output rows: one per CBC and one per unreadable line"})
    interpreted = fields.Integer(metadata={"description": "Output rows with an interpretation"})
    rejected = fields.Integer(metadata={"description": "Output rows with an error instead (see their error column)"})
    blank_lines = fields.Integer()
    ignored_results = fields.Integer(metadata={"description": "Long shape: results whose item is not an analyte"})
    ignored_items = _counts("Long shape: the most frequent ignored item codes -> results")
    duplicates = fields.Integer(metadata={"description": "Rows that repeat an earlier row"})
    duplicate_examples = fields.List(fields.Nested(DuplicateExampleSchema))
    censored_interpreted = fields.Integer(metadata={"description": "CBCs interpreted despite a censored value "
                                                                   "such as <5"})
    by_urgency = fields.Dict(keys=fields.String(metadata={"enum": list(URGENCIES)}), values=fields.Integer(),
                             metadata={"description": "Urgency -> CBCs", "example": {"routine": 12, "soon": 3}})
    by_finding = _counts("Finding code -> CBCs with that finding")
    columns_used = fields.Dict(keys=fields.String(), values=fields.String(),
                               metadata={"description": "Header -> the field it was read as"})
    columns_ignored = fields.List(fields.String())
    output_columns = fields.List(fields.String(), metadata={"description": "Columns of result.csv, in order"})
    first_errors = fields.List(fields.String(), metadata={"description": "The first rejected rows' errors"})
    stored = fields.Integer(metadata={
        "description": "CBCs with a patient id newly stored (with delta checks and referrals); 0 with ?store=false"})
    warnings = fields.List(fields.String(), metadata={
        "description": "Problems with the file as a whole that did not stop it, e.g. bytes that are not UTF-8"})
    ruleset_version = fields.String()
    content_sha256 = fields.String(metadata={"description": "SHA-256 of the file as read"})
    bytes_read = fields.Integer()


class BatchLinksSchema(Schema):
    self = fields.String(metadata={"example": "/api/v1/batches/4b2d0f6c9e1a7b3d5f8e2c4a6b9d1e3f"})
    csv = fields.String(metadata={"example": "/api/v1/batches/4b2d0f6c9e1a7b3d5f8e2c4a6b9d1e3f/result.csv"})
    json = fields.String(metadata={"example": "/api/v1/batches/4b2d0f6c9e1a7b3d5f8e2c4a6b9d1e3f/result.json"})


class BatchSchema(Schema):
    """A batch: its id, what it was made from, the run's summary and where to download the results."""

    batch_id = fields.String(required=True, metadata={
        "pattern": "^[0-9a-f]{32}$",
        "description": "Derived from the file's SHA-256, the mapping, the ruleset version and whether its CBCs "
                       "were stored (?store=false): the same upload gives the same id"})
    content_sha256 = fields.String(required=True, metadata={"description": "SHA-256 of the uploaded file"})
    already_uploaded = fields.Boolean(metadata={
        "description": "Upload answers only: true when this batch existed and was not interpreted again"})
    mapping = fields.Dict(metadata={"description": "The mapping the file was read with, in canonical form"})
    summary = fields.Nested(BatchSummarySchema, required=True)
    links = fields.Nested(BatchLinksSchema, required=True)


# --- documentation helpers ----------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {PROBLEM_CONTENT_TYPE: {"schema": _ref("Problem")}}}


def _download(media_type: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"Content-Disposition": {"description": "attachment; filename=batch-<batch_id>.<ext>",
                                            "schema": {"type": "string"}}},
        "content": {media_type: {"schema": schema}},
    }


NOT_FOUND = _problem("No batch with this id.")
GONE = _problem("The batch's results were deleted BATCH_RETENTION_DAYS after its upload; the CBCs and referrals it "
                "stored stay. Upload the file again to make them again.")


# --- views --------------------------------------------------------------------------------------


@blp.route("/batches", methods=["POST"])
@blp.doc(
    summary="Interpret a CSV file of CBCs",
    description=(
        "multipart/form-data with the CSV in `file` and, optionally, a mapping document (JSON text) in "
        "`mapping`. The answer is a summary (rows in, interpreted, rejected, counts by urgency and by "
        "finding) with links to every row's interpretation as CSV and as JSON, in input order. Uploads up "
        "to MAX_UPLOAD_BYTES (256 MiB by default) are accepted. The same file with the same mapping is "
        "recognised by its SHA-256: it answers 200 with `already_uploaded: true` and is not interpreted "
        "again. A `?store=false` upload is a batch of its own: it never answers for the storing upload of the "
        "same file. Results are kept BATCH_RETENTION_DAYS (30 by default) and count against the caller's "
        "BATCH_QUOTA_BYTES."
    ),
    requestBody={
        "required": True,
        "content": {"multipart/form-data": {"schema": _ref("BatchUpload"),
                                            "encoding": {"file": {"contentType": "text/csv"},
                                                         "mapping": {"contentType": "application/json"}}}},
    },
    responses={
        "201": {"description": "A new batch: interpreted and stored.",
                "headers": {"Location": {"description": "The batch's URL", "schema": {"type": "string"}}},
                "content": {"application/json": {"schema": _ref("Batch")}}},
        "200": {"description": "This file was already uploaded with this mapping: the stored batch.",
                "content": {"application/json": {"schema": _ref("Batch")}}},
        "413": _problem("The upload is larger than MAX_UPLOAD_BYTES, or has more than MAX_BATCH_ROWS data rows, or "
                        "its results alone are larger than BATCH_QUOTA_BYTES (nothing is interpreted or stored "
                        "then)."),
        "507": _problem("The batch results this API key or user keeps are at BATCH_QUOTA_BYTES, or this batch's "
                        "would take them over it: the detail says the bytes used and the limit; nothing is kept."),
        "415": _problem("The body is not multipart/form-data."),
        "422": _problem("No `file` part, a `mapping` that cannot be used, or a file that cannot be read as "
                        "CBCs (empty, binary, no analyte column...); `errors` names `file` or `mapping`."),
    },
)
def create_batch() -> ResponseReturnValue:
    """Upload a CSV file of CBCs and interpret every row"""
    stored, created = receive_upload()
    return _answer(stored, already_uploaded=not created, status=201 if created else 200)


def receive_upload() -> tuple[StoredBatch, bool]:
    """This request's upload (multipart `file`, optional `mapping`) interpreted and kept: (the batch, True if
    new). Shared by this endpoint and the dashboard's upload page; raises Problem (413, 415, 422, 507)."""
    limit = current_app.config["MAX_UPLOAD_BYTES"]
    request.max_content_length = limit  # this endpoint only; the app-wide MAX_CONTENT_LENGTH stays
    if request.mimetype != "multipart/form-data":
        sent = request.mimetype or "no content type"
        raise Problem(415, f"Send the CSV as multipart/form-data (field `file`), not {sent}.")
    keep = store_requested()
    store, database = current_store(), current_database()
    owner, quota = current_principal().id, current_app.config["BATCH_QUOTA_BYTES"]
    _purge_now_and_then(store, database)
    _check_quota(database, owner, quota)  # before the form is read: an owner at the quota costs nothing more
    upload, mapping_text = _read_form(limit)
    options = _options(mapping_text)
    options.clock_skew_seconds = current_app.config["CLOCK_SKEW_SECONDS"]  # a future collection time: a row error
    _check_rows(upload)  # MAX_BATCH_ROWS, before anything is interpreted or stored
    mapping = options.to_document()
    ruleset = current_ruleset()
    sha256 = content_sha256(upload)
    batch_id = batch_id_for(sha256, mapping, ruleset.version, stored=keep)  # ?store=false: an id of its own
    recover_batches(store, database)  # what an upload killed mid-way left behind
    existing = store.get(batch_id)
    if existing is not None and _still_valid(store, database, existing):
        touched_batch(batch_id, "read", store.patients(batch_id))  # the audit trail
        return existing, False

    filename = _kept_filename(getattr(request.files.get("file"), "filename", None))

    def run(csv_out: TextIO, json_out: TextIO, keep_rows: KeepRows | None) -> dict[str, Any]:
        patients = PatientIds()  # kept beside the results: every read of the batch names them (audit trail)
        summary = run_batch(upload, csv_out=csv_out, json_out=json_out, options=options, ruleset=ruleset,
                            keep_rows=patients.keeping(keep_rows))
        return {"batch_id": batch_id, "content_sha256": sha256, "mapping": mapping, "filename": filename,
                "created_at": now_utc().isoformat(), "summary": summary.to_dict(), "patients": patients.ids()}

    try:
        # One transaction for the batch's rows, committed with the files (labservice.batch.keep).
        stored, created = save_batch(store, batch_id, run, database=database, rs=ruleset,
                                     window_days=current_app.config["DELTA_WINDOW_DAYS"], content_sha256=sha256,
                                     filename=filename, date_order=options.date_order, wrap_keep=noting_patients,
                                     store_rows=keep, owner=owner, quota=quota)
    except QuotaExceeded as error:
        raise _over_quota(error.used, error.size, error.limit) from None
    except MappingError as error:
        raise Problem(422, f"The mapping cannot be used: {error}.", {"mapping": [str(error)]}) from None
    except BatchFileError as error:
        raise Problem(422, f"The file cannot be read as CBCs: {error}.", {"file": [str(error)]}) from None
    if created:
        touched_resource(f"batch {batch_id}", "create")  # the audit trail; stored patients noted as kept
    else:
        touched_batch(batch_id, "read", store.patients(batch_id))
    return stored, created


def _still_valid(store: BatchStore, database: Database, existing: StoredBatch) -> bool:
    """Whether a kept batch answers a new upload of it. Not when its results have expired (they are purged now),
    when its row says they were purged (a purge that died mid-way), or when it has no row: results a ?store=false
    upload made under the storing id before the identity included it (issue 10), which must not stop this upload
    from storing. Those are deleted and made again."""
    before = cutoff(current_app.config["BATCH_RETENTION_DAYS"])
    with database.session() as session:
        live = known_batches(session, [existing.batch_id]).get(existing.batch_id, "no row") is None
    if live and not is_expired(existing.record, before):
        return True
    purge_batch(store, database, existing.batch_id, before=before if live else None)
    return False


def _purge_now_and_then(store: BatchStore, database: Database) -> None:
    config = current_app.config
    purge_now_and_then(store, database, retention_days=config["BATCH_RETENTION_DAYS"],
                       interval_seconds=config["BATCH_PURGE_INTERVAL_SECONDS"])


def _check_quota(database: Database, owner: str, quota: int) -> None:
    with database.session() as session:
        used = bytes_kept(session, owner)
    if used >= quota:
        raise _over_quota(used, None, quota)


def _over_quota(used: int, size: int | None, limit: int) -> Problem:
    """507 (the owner's kept results are at the quota), or 413 when this batch's results alone exceed it."""
    days = current_app.config["BATCH_RETENTION_DAYS"]
    later = (f"Batch results are deleted {days} days after their upload (BATCH_RETENTION_DAYS), which frees the "
             "space; nothing of this upload was kept.")
    if size is not None and size > limit:
        return Problem(413, f"This batch's results ({size} bytes) are larger than the whole quota of {limit} bytes "
                            "(BATCH_QUOTA_BYTES): split the file into smaller ones.",
                       {"file": [f"Results of {size} bytes; quota {limit} bytes."]}, title="Batch Results Too Large")
    taking = "" if size is None else f" and this batch's results ({size} bytes) would take it over"
    return Problem(507, f"The batch results kept for this API key or user use {used} bytes of its quota of {limit} "
                        f"bytes (BATCH_QUOTA_BYTES){taking}. {later}",
                   {"quota": [f"{used} bytes used of {limit} bytes."]}, title="Batch Storage Quota Exceeded")


@blp.route("/batches/<batch_id>", methods=["GET"])
@blp.doc(
    summary="A batch's summary and links",
    responses={"200": {"description": "The batch.", "content": {"application/json": {"schema": _ref("Batch")}}},
               "404": NOT_FOUND, "410": GONE},
)
def get_batch(batch_id: str) -> ResponseReturnValue:
    """The summary of an uploaded batch"""
    found = find_batch(batch_id)
    touched_batch(batch_id, "read", current_store().patients(batch_id))  # the audit trail
    return _answer(found, already_uploaded=None, status=200)


@blp.route("/batches/<batch_id>/result.csv", methods=["GET"])
@blp.doc(
    summary="Every row's interpretation as CSV",
    responses={"200": _download("text/csv", "One row per input CBC (and per unreadable line), in input order; "
                                            "the columns are the summary's output_columns.",
                                {"type": "string", "format": "binary"}),
               "404": NOT_FOUND, "410": GONE},
)
def get_batch_csv(batch_id: str) -> ResponseReturnValue:
    """Download a batch's results as CSV"""
    stored = find_batch(batch_id)
    touched_batch(batch_id, "read", current_store().patients(batch_id))  # the audit trail
    return send_file(stored.csv_path, mimetype="text/csv", as_attachment=True,
                     download_name=f"batch-{batch_id}.csv")


@blp.route("/batches/<batch_id>/result.json", methods=["GET"])
@blp.doc(
    summary="Every row's interpretation as JSON",
    responses={"200": _download("application/json", "An array with one object per input CBC (and per "
                                                     "unreadable line), in input order.",
                                {"type": "array", "items": {"type": "object"}}),
               "404": NOT_FOUND, "410": GONE},
)
def get_batch_json(batch_id: str) -> ResponseReturnValue:
    """Download a batch's results as JSON"""
    stored = find_batch(batch_id)
    touched_batch(batch_id, "read", current_store().patients(batch_id))  # the audit trail
    return send_file(stored.json_path, mimetype="application/json", as_attachment=True,
                     download_name=f"batch-{batch_id}.json")


# --- helpers ------------------------------------------------------------------------------------


def current_store() -> BatchStore:
    """The batch store of this app (BATCH_DIRECTORY)."""
    return current_app.extensions[STORE_EXTENSION]


def _read_form(limit: int) -> tuple[IO[bytes], str | None]:
    """The uploaded file's binary stream (spooled by werkzeug) and the mapping text, if any."""
    try:
        files, form = request.files, request.form
    except RequestEntityTooLarge:
        if request.content_length is not None and request.content_length <= limit:
            raise Problem(413, "A form field other than `file` is larger than MAX_FORM_MEMORY_SIZE "
                               f"({current_app.config['MAX_FORM_MEMORY_SIZE']} bytes).") from None
        raise Problem(413, f"The upload is larger than {limit} bytes (MAX_UPLOAD_BYTES).",
                      {"file": [f"At most {limit} bytes."]}) from None
    upload = files.get("file")
    if upload is None:
        hint = (" `file` was sent as a text field: send it as a file part (with a filename)."
                if "file" in form else "")
        raise Problem(422, f"No CSV file in the upload: send it in the multipart field `file`.{hint}",
                      {"file": ["Missing file part."]})
    mapping = files.get("mapping")
    if mapping is not None:
        raw = mapping.stream.read(MAX_MAPPING_BYTES + 1)
        if len(raw) > MAX_MAPPING_BYTES:
            raise Problem(422, "The mapping document is too large.",
                          {"mapping": [f"At most {MAX_MAPPING_BYTES} bytes."]})
        try:
            return upload.stream, raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Problem(422, "The mapping is not UTF-8 text.", {"mapping": ["Not UTF-8 text."]}) from None
    return upload.stream, form.get("mapping")


def _check_rows(upload: IO[bytes]) -> None:
    limit = current_app.config["MAX_BATCH_ROWS"]
    if rows_over_limit(upload, limit) is not None:
        raise Problem(413, f"The file has more than {limit} data rows (MAX_BATCH_ROWS): split it into smaller "
                           "files.", {"file": [f"At most {limit} data rows after the header."]})


def _options(mapping_text: str | None) -> BatchOptions:
    if mapping_text is None or not mapping_text.strip():
        return BatchOptions()
    try:
        return load_mapping_text(mapping_text)
    except MappingError as error:
        raise Problem(422, f"The mapping cannot be used: {error}.", {"mapping": [str(error)]}) from None


def find_batch(batch_id: str) -> StoredBatch:
    """The kept batch with this id; Problem 410 when its results have expired (purged now if they were still
    there), 404 when there is no such batch. Shared with the dashboard's batch pages."""
    store, database = current_store(), current_database()
    _purge_now_and_then(store, database)
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
    return Problem(410, f"The results of batch {batch_id} were deleted on {as_utc(purged_at):%Y-%m-%d}: batch results "
                        f"are kept {days} days after their upload (BATCH_RETENTION_DAYS). The CBCs and referrals it "
                        "stored stay in the patients' records; upload the file again to make its results again.",
                   title="Batch Results Expired")


def _links(batch_id: str) -> dict[str, str]:
    return {"self": url_for("batches.get_batch", batch_id=batch_id),
            "csv": url_for("batches.get_batch_csv", batch_id=batch_id),
            "json": url_for("batches.get_batch_json", batch_id=batch_id)}


def _answer(stored: StoredBatch, *, already_uploaded: bool | None, status: int) -> ResponseReturnValue:
    record = stored.record
    body: dict[str, Any] = {"batch_id": stored.batch_id, "content_sha256": record["content_sha256"]}
    if already_uploaded is not None:
        body["already_uploaded"] = already_uploaded
    links = _links(stored.batch_id)
    body.update(mapping=record["mapping"], summary=record["summary"], links=links)
    response = current_app.json.response(body)
    response.status_code = status
    if status == 201:
        response.headers["Location"] = links["self"]
    return response


def register(api: Api, app: Flask) -> None:
    """Register the blueprint, its documented schemas and the app's batch store."""
    app.extensions[STORE_EXTENSION] = BatchStore(app.config["BATCH_DIRECTORY"])
    components = api.spec.components
    components.schema("BatchUpload", schema=BatchUploadSchema)
    components.schema("BatchDuplicateExample", schema=DuplicateExampleSchema)
    components.schema("BatchSummary", schema=BatchSummarySchema)
    components.schema("BatchLinks", schema=BatchLinksSchema)
    components.schema("Batch", schema=BatchSchema)
    if "Problem" not in components.schemas:
        components.schema("Problem", schema=ProblemSchema)
    api.register_blueprint(blp)
