"""POST /api/v1/batches: a CSV file of CBCs in (multipart), a summary out, results to download as CSV and JSON.

The upload runs through the same `run_batch` as the command line, so both give the same output for the
same file and mapping. Werkzeug spools the uploaded file to disk; the upload (labservice.services.batch_upload)
is hashed in blocks, a batch already stored is answered without interpreting it again, and otherwise the file
streams through `run_batch` into the batch store. Only this endpoint accepts bodies up to MAX_UPLOAD_BYTES;
every other request keeps MAX_CONTENT_LENGTH.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, url_for
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, fields

from labservice.api.common import problem_doc as _problem
from labservice.api.common import schema_ref as _ref
from labservice.api.health import add_readiness_check
from labservice.api.schemas import URGENCIES, ProblemSchema
from labservice.batch.results_store import BatchStore, is_batch_id
from labservice.errors import Problem
from labservice.extensions import STORE_EXTENSION, current_store
from labservice.middleware.audit_trail import touched_batch, touched_resource
from labservice.query import excel_requested
from labservice.services.batch_jobs import find_job, job_fields
from labservice.services.batch_results import find_batch, send_batch_result
from labservice.services.batch_upload import receive_upload
from labservice.services.job_queue import current_queue, register_job_queue
from labservice.serving.metrics import add_live_gauge
from labservice.store.batch_jobs import DONE
from labservice.store.models import BatchJob

if TYPE_CHECKING:
    from flask_smorest import Api

blp = Blueprint(
    "batches",
    __name__,
    url_prefix="/api/v1",
    description="Interpret a CSV file of CBCs (wide or long): a summary, and every row as CSV or JSON.",
)


# --- schemas (documentation only: the views answer the stored record as is) ---------------------


class BatchUploadSchema(Schema):
    """The multipart/form-data body of an upload (other fields are ignored)."""

    class Meta:
        unknown = EXCLUDE

    file = fields.Raw(
        required=True,
        metadata={
            "type": "string",
            "format": "binary",
            "description": "The CSV file: one CBC per row (wide) or one result per row (long); UTF-8 or "
            "Windows-1252, delimiter and decimal mark detected.",
        },
    )
    mapping = fields.String(
        metadata={
            "description": "Optional mapping document as JSON text, the format of the command line's --mapping "
            "file: shape, delimiter, decimal, encoding, columns, units, items, item_units, "
            "sex_codes, date_order.",
            "example": '{"shape": "long", "columns": {"HADM_ID": "sample_id", "CHARTTIME": "collected_at", '
            '"ITEMID": "item", "VALUE": "value", "VALUEUOM": "unit"}, "items": {"51265": "platelets"}}',
        }
    )
    excel = fields.String(
        metadata={
            "enum": ["true", "false"],
            "description": "As the `excel` query parameter: `true` makes the batch's `csv` link ask for a CSV that "
            "begins with a UTF-8 byte order mark.",
        }
    )


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
    bom = fields.Boolean(
        metadata={"description": "The file began with a UTF-8 byte order mark (result.csv then does too)"}
    )
    rows_in = fields.Integer(
        metadata={"description": "Data lines read (wide: CBC rows; long: result rows), blank lines excluded"}
    )
    rows_out = fields.Integer(metadata={"description": "Output rows: one per CBC and one per unreadable line"})
    interpreted = fields.Integer(metadata={"description": "Output rows with an interpretation"})
    rejected = fields.Integer(metadata={"description": "Output rows with an error instead (see their error column)"})
    blank_lines = fields.Integer()
    ignored_results = fields.Integer(metadata={"description": "Long shape: results whose item is not an analyte"})
    ignored_items = _counts("Long shape: the most frequent ignored item codes -> results")
    duplicates = fields.Integer(metadata={"description": "Rows that repeat an earlier row"})
    duplicate_examples = fields.List(fields.Nested(DuplicateExampleSchema))
    censored_interpreted = fields.Integer(
        metadata={"description": "CBCs interpreted despite a censored value such as <5"}
    )
    by_urgency = fields.Dict(
        keys=fields.String(metadata={"enum": list(URGENCIES)}),
        values=fields.Integer(),
        metadata={"description": "Urgency -> CBCs", "example": {"routine": 12, "soon": 3}},
    )
    by_finding = _counts("Finding code -> CBCs with that finding")
    columns_used = fields.Dict(
        keys=fields.String(), values=fields.String(), metadata={"description": "Header -> the field it was read as"}
    )
    columns_ignored = fields.List(fields.String())
    output_columns = fields.List(
        fields.String(),
        metadata={
            "description": "Columns of result.csv, in order: the id columns, line, the values used (`platelets "
            "(10*9/L)`), summary, findings, findings_text, urgency, not_assessed, aplastic_anemia, "
            "skin_attribution, [film], flags and CTCAE grades, notes, error"
        },
    )
    first_errors = fields.List(
        fields.String(), metadata={"description": "The first rejected rows' errors, in line order"}
    )
    stored = fields.Integer(
        metadata={
            "description": "CBCs with a patient id newly stored (with delta checks and referrals); 0 with ?store=false"
        }
    )
    warnings = fields.List(
        fields.String(),
        metadata={
            "description": "Problems with the file as a whole that did not stop it, e.g. bytes that are not UTF-8"
        },
    )
    ruleset_version = fields.String()
    content_sha256 = fields.String(metadata={"description": "SHA-256 of the file as read"})
    bytes_read = fields.Integer()


JOB_STATES = ["queued", "running", "done", "failed"]


class BatchLinksSchema(Schema):
    self = fields.String(metadata={"example": "/api/v1/batches/4b2d0f6c9e1a7b3d5f8e2c4a6b9d1e3f"})
    csv = fields.String(metadata={"example": "/api/v1/batches/4b2d0f6c9e1a7b3d5f8e2c4a6b9d1e3f/result.csv"})
    json = fields.String(metadata={"example": "/api/v1/batches/4b2d0f6c9e1a7b3d5f8e2c4a6b9d1e3f/result.json"})


class BatchSchema(Schema):
    """A batch: its id, what it was made from, the run's summary and where to download the results."""

    batch_id = fields.String(
        required=True,
        metadata={
            "pattern": "^[0-9a-f]{32}$",
            "description": "Derived from the file's SHA-256, the mapping, the ruleset version and whether its CBCs "
            "were stored (?store=false): the same upload gives the same id",
        },
    )
    content_sha256 = fields.String(required=True, metadata={"description": "SHA-256 of the uploaded file"})
    already_uploaded = fields.Boolean(
        metadata={"description": "Upload answers only: true when this batch existed and was not interpreted again"}
    )
    status = fields.String(
        required=True,
        metadata={
            "enum": JOB_STATES,
            "description": "The batch's job: queued, running, done (results ready) or failed",
        },
    )
    progress = fields.Float(
        metadata={"description": "Fraction of the file's bytes read and stored, 0 to 1 (1 only when done)"}
    )
    rows_read = fields.Integer(metadata={"description": "Data rows read so far (the summary's rows_in when done)"})
    interpreted = fields.Integer(metadata={"description": "Rows interpreted so far"})
    stored = fields.Integer(metadata={"description": "CBCs with a patient id newly stored so far"})
    rejected = fields.Integer(metadata={"description": "Rows with an error instead of an interpretation so far"})
    bytes_read = fields.Integer(metadata={"description": "Bytes of the file read so far"})
    bytes_total = fields.Integer(metadata={"description": "Bytes of the uploaded file"})
    created_at = fields.String(allow_none=True, metadata={"format": "date-time", "description": "When it was queued"})
    started_at = fields.String(allow_none=True, metadata={"format": "date-time", "description": "When a worker began"})
    finished_at = fields.String(allow_none=True, metadata={"format": "date-time", "description": "When it ended"})
    errors = fields.List(
        fields.Dict(),
        metadata={
            "description": "A failed job's problems (status, title, detail, errors naming file, mapping or quota)"
        },
    )
    mapping = fields.Dict(metadata={"description": "The mapping the file was read with, in canonical form"})
    summary = fields.Nested(
        BatchSummarySchema, allow_none=True, metadata={"description": "The run's summary once done; null before"}
    )
    links = fields.Nested(BatchLinksSchema, required=True)


# --- documentation helpers ----------------------------------------------------------------------


def _download(media_type: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            "Content-Disposition": {
                "description": "Named after the uploaded file (RFC 6266): `cbc-results.csv` downloads as "
                '`attachment; filename="cbc-results.interpreted.<ext>"; '
                "filename*=UTF-8''cbc-results.interpreted.<ext>` (filename: an ASCII stand-in; filename*: the "
                "name itself, percent-encoded); `batch-<batch_id>.<ext>` for an upload without a file name.",
                "schema": {"type": "string"},
            }
        },
        "content": {media_type: {"schema": schema}},
    }


#: The `excel` query parameter (labservice.query.excel_requested).
EXCEL_PARAMETER: dict[str, Any] = {
    "in": "query",
    "name": "excel",
    "required": False,
    "schema": {"type": "boolean", "default": False},
}
EXCEL_DOWNLOAD = {
    **EXCEL_PARAMETER,
    "description": "`true`: the CSV begins with a UTF-8 byte order mark, so Excel reads it as UTF-8 (it has one "
    "anyway when the uploaded file had one). The delimiter and decimal mark are the uploaded file's.",
}
EXCEL_LINKS = {
    **EXCEL_PARAMETER,
    "description": "`true`: the `csv` link (and the `Location` of a 202) carry `excel=true`, for a CSV that begins "
    "with a UTF-8 byte order mark. On an upload it may also be a form field.",
}


NOT_FOUND = _problem("No batch with this id.")
BAD_EXCEL = _problem("`excel` is neither true nor false; `errors` names `excel`.")
GONE = _problem(
    "The batch's results were deleted BATCH_RETENTION_DAYS after its upload; the CBCs and referrals it "
    "stored stay. Upload the file again to make them again."
)


# --- views --------------------------------------------------------------------------------------


NOT_DONE = _problem(
    "The batch's job is not done (queued, running or failed): poll the batch until its `status` is done."
)


@blp.route("/batches", methods=["POST"])
@blp.doc(
    summary="Upload a CSV file of CBCs: a job interprets and stores every row",
    description=(
        "multipart/form-data with the CSV in `file` and, optionally, a mapping document (JSON text) in "
        "`mapping`. The file is kept and a job is queued: the answer is 202 Accepted with the batch resource "
        "(`status` queued, then running, done or failed; `progress` from 0 to 1; the rows read, interpreted, "
        "stored and rejected) and its URL in `Location`. Poll it (GET) until `status` is done: it then carries "
        "the summary (rows in, interpreted, rejected, counts by urgency and by finding) and links to every row's "
        "interpretation as CSV and as JSON, in input order. Uploads up to MAX_UPLOAD_BYTES (256 MiB by "
        "default) are accepted. The file's size, row count, encoding and header are checked before it is "
        "queued (413, 422); what the job finds later is in the batch's `errors`. The same file with the same "
        "mapping is recognised by its SHA-256: it answers the batch already made (200) or its job (202) with "
        "`already_uploaded: true`, and is not interpreted again. A `?store=false` upload is a batch of its own: "
        "it never answers for the storing upload of the same file. Results are kept BATCH_RETENTION_DAYS (30 "
        "by default) and count against the caller's BATCH_QUOTA_BYTES."
    ),
    requestBody={
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": _ref("BatchUpload"),
                "encoding": {"file": {"contentType": "text/csv"}, "mapping": {"contentType": "application/json"}},
            }
        },
    },
    parameters=[EXCEL_LINKS],
    responses={
        "202": {
            "description": "The upload is kept and its job queued (or this file's job is already queued or running): "
            "the batch resource; poll its `Location`.",
            "headers": {"Location": {"description": "The batch's URL", "schema": {"type": "string"}}},
            "content": {"application/json": {"schema": _ref("Batch")}},
        },
        "200": {
            "description": "This file was already uploaded with this mapping and its batch is done: the batch.",
            "content": {"application/json": {"schema": _ref("Batch")}},
        },
        "413": _problem(
            "The upload is larger than MAX_UPLOAD_BYTES, or has more than MAX_BATCH_ROWS data rows (nothing is "
            "interpreted or stored then)."
        ),
        "507": _problem(
            "The batch results this API key or user keeps are at BATCH_QUOTA_BYTES: the detail says the bytes "
            "used and the limit; nothing is kept."
        ),
        "415": _problem("The body is not multipart/form-data."),
        "422": _problem(
            "No `file` part, a `mapping` that cannot be used, a file that cannot be read as "
            "CBCs (empty, binary, no analyte column...), or an `excel` that is neither true nor false; `errors` "
            "names `file`, `mapping` or `excel`."
        ),
    },
)
def create_batch() -> ResponseReturnValue:
    """Upload a CSV file of CBCs; a job interprets and stores every row"""
    batch_id, queued = receive_upload()
    excel = excel_requested(form=True)
    job = find_job(batch_id)
    done = current_store().get(batch_id) is not None and (job is None or job.status == DONE)
    return _answer(batch_id, job, already_uploaded=not queued, status=200 if done and not queued else 202, excel=excel)


@blp.route("/batches/<batch_id>", methods=["GET"])
@blp.doc(
    summary="A batch: its job's status and progress, then its summary and links",
    parameters=[EXCEL_LINKS],
    responses={
        "200": {"description": "The batch.", "content": {"application/json": {"schema": _ref("Batch")}}},
        "404": NOT_FOUND,
        "410": GONE,
        "422": BAD_EXCEL,
    },
)
def get_batch(batch_id: str) -> ResponseReturnValue:
    """A batch: its job's progress while it runs, its summary once done"""
    excel = excel_requested()
    job = find_job(batch_id) if is_batch_id(batch_id) else None
    if job is not None and job.status != DONE:
        touched_resource(f"batch {batch_id}", "read")
        return _answer(batch_id, job, already_uploaded=None, status=200, excel=excel)
    find_batch(batch_id)  # 404, 410
    touched_batch(batch_id, "read", current_store().patients(batch_id))  # the audit trail
    return _answer(batch_id, job, already_uploaded=None, status=200, excel=excel)


@blp.route("/batches/<batch_id>/result.csv", methods=["GET"])
@blp.doc(
    summary="Every row's interpretation as CSV",
    parameters=[EXCEL_DOWNLOAD],
    responses={
        "200": _download(
            "text/csv",
            "One row per input CBC (and per unreadable line), in input order, in the uploaded file's delimiter and "
            "decimal mark; the columns are the summary's output_columns.",
            {"type": "string", "format": "binary"},
        ),
        "404": NOT_FOUND,
        "409": NOT_DONE,
        "410": GONE,
        "422": BAD_EXCEL,
    },
)
def get_batch_csv(batch_id: str) -> ResponseReturnValue:
    """Download a batch's results as CSV"""
    excel = excel_requested()
    _check_done(batch_id)
    return send_batch_result(find_batch(batch_id), "csv", excel=excel)  # noted in the audit trail


@blp.route("/batches/<batch_id>/result.json", methods=["GET"])
@blp.doc(
    summary="Every row's interpretation as JSON",
    responses={
        "200": _download(
            "application/json",
            "An array with one object per input CBC (and per unreadable line), in input order.",
            {"type": "array", "items": {"type": "object"}},
        ),
        "404": NOT_FOUND,
        "409": NOT_DONE,
        "410": GONE,
    },
)
def get_batch_json(batch_id: str) -> ResponseReturnValue:
    """Download a batch's results as JSON"""
    _check_done(batch_id)
    return send_batch_result(find_batch(batch_id), "json")  # noted in the audit trail


# --- helpers ------------------------------------------------------------------------------------


def _check_done(batch_id: str) -> None:
    job = find_job(batch_id) if is_batch_id(batch_id) else None
    if job is not None and job.status != DONE:
        raise Problem(
            409,
            f"The batch's job is {job.status}: its results can be downloaded once its status is done "
            f"(GET {url_for('batches.get_batch', batch_id=batch_id)}).",
            title="Batch Not Done",
        )


def _links(batch_id: str, done: bool, excel: bool = False) -> dict[str, str]:
    """The batch's URLs; with `excel` they carry excel=true (polling self keeps it; csv then has a BOM)."""
    asked: dict[str, Any] = {"excel": "true"} if excel else {}
    links = {"self": url_for("batches.get_batch", batch_id=batch_id, **asked)}
    if done:
        links["csv"] = url_for("batches.get_batch_csv", batch_id=batch_id, **asked)
        links["json"] = url_for("batches.get_batch_json", batch_id=batch_id)
    return links


def _answer(
    batch_id: str, job: BatchJob | None, *, already_uploaded: bool | None, status: int, excel: bool = False
) -> ResponseReturnValue:
    stored = current_store().get(batch_id) if job is None or job.status == DONE else None
    record = stored.record if stored is not None else {}
    body: dict[str, Any] = {
        "batch_id": batch_id,
        "content_sha256": record.get("content_sha256") or (job.content_sha256 if job is not None else None),
    }
    if already_uploaded is not None:
        body["already_uploaded"] = already_uploaded
    body.update(job_fields(job, record.get("summary")))
    done = stored is not None
    if done and body["status"] != DONE:
        body["status"] = DONE
    links = _links(batch_id, done, excel)
    body.update(
        mapping=record.get("mapping") if done else (job.mapping if job is not None else {}),
        summary=record.get("summary") if done else None,
        links=links,
    )
    response = current_app.json.response(body)
    response.status_code = status
    if status == 202:
        response.headers["Location"] = links["self"]
    return response


def register(api: Api, app: Flask) -> None:
    """Register the blueprint, its documented schemas and the app's batch store."""
    app.extensions[STORE_EXTENSION] = BatchStore(app.config["BATCH_DIRECTORY"])
    register_job_queue(app)
    queue = current_queue(app)
    add_readiness_check(app, "job_queue", queue.answers)  # /readyz
    add_live_gauge("labservice_batch_jobs_waiting", "Batch upload jobs waiting in the job queue", queue.waiting)
    components = api.spec.components
    components.schema("BatchUpload", schema=BatchUploadSchema)
    components.schema("BatchDuplicateExample", schema=DuplicateExampleSchema)
    components.schema("BatchSummary", schema=BatchSummarySchema)
    components.schema("BatchLinks", schema=BatchLinksSchema)
    components.schema("Batch", schema=BatchSchema)
    if "Problem" not in components.schemas:
        components.schema("Problem", schema=ProblemSchema)
    api.register_blueprint(blp)
