"""The dashboard's batch pages: the upload form with the recent uploads (jobs still running among them), and
one batch's page, named after its file.

A batch's page is the same page while its job runs and once it is done: the file's name as its heading (the batch
id beside it), the job's progress (reloaded by a meta refresh while it runs: the CSP allows no inline script), and,
once done, the summary, every row (a page at a time, each patient linked to their record when it is stored) and
every rejected row (a page at a time: line, id columns, error). The rows are read a page at a time from the
batch's result.json (labservice.batch.result_pages). The routes are on the dashboard's blueprint (views.bp).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from labservice.batch.result_pages import Page, rejected_page, result_index, rows_page
from labservice.batch.results_store import StoredBatch, is_batch_id
from labservice.core.vocabulary import URGENCIES
from labservice.dashboard.views import bp, not_found
from labservice.errors import Problem
from labservice.extensions import current_database, current_store
from labservice.middleware.audit_trail import touched_batch, touched_resource
from labservice.query import excel_requested
from labservice.services.batch_jobs import find_job, header_warnings, job_fields, jobs_not_done
from labservice.services.batch_results import find_batch, send_batch_result
from labservice.services.batch_upload import receive_upload
from labservice.store.batch_jobs import DONE, FAILED
from labservice.store.models import BatchJob
from labservice.store.repository import known_patients

#: How many earlier uploads the batches page lists (and as many jobs not done).
RECENT_BATCHES = 20
#: Seconds between two reloads of a batch page while its job runs.
JOB_PAGE_REFRESH_SECONDS = 2
#: The id fields a batch's tables show, in this order when the file has them.
ID_FIELDS = ("patient_id", "sample_id", "collected_at")
ENCODING_NAMES = {"utf-8": "UTF-8", "cp1252": "Windows-1252"}


def upload_page(error: str | None = None, mapping: str = "", status: int = 200) -> ResponseReturnValue:
    """The batches page: the upload form (with the error of an upload refused) and the recent uploads."""
    return render_template(
        "dashboard/batches.html",
        error=error,
        mapping=mapping,
        limit=current_app.config["MAX_UPLOAD_BYTES"],
        recent=recent_uploads(),
    ), status


@bp.get("/batches")
def batches_page() -> ResponseReturnValue:
    return upload_page()


def recent_uploads() -> list[dict[str, Any]]:
    """The jobs queued or running (with their progress) first, then the newest uploads done or failed (a failed
    one with its error), newest first: at most RECENT_BATCHES of each kind."""
    jobs = [_job_row(job) for job in jobs_not_done(RECENT_BATCHES)]
    working = [row for row in jobs if row["status"] != FAILED]
    seen = {row["batch_id"] for row in jobs}
    ended = [row for row in jobs if row["status"] == FAILED]
    for stored in current_store().recent(RECENT_BATCHES):
        if stored.batch_id in seen:  # its job ended between the two look-ups: the job's row stands
            continue
        record = stored.record
        summary = record.get("summary", {})
        ended.append(
            {
                "batch_id": stored.batch_id,
                "filename": record.get("filename") or "(no name)",
                "created_at": record.get("created_at") or "",
                "status": DONE,
                "progress": 1.0,
                "rows": summary.get("rows_in", 0),
                "interpreted": summary.get("interpreted", 0),
                "rejected": summary.get("rejected", 0),
                "problem": summary.get("patient_id_warning"),
            }
        )
    ended.sort(key=lambda row: _moment(row["created_at"]), reverse=True)
    return working + ended[:RECENT_BATCHES]


def _moment(text: str) -> datetime:
    """An ISO 8601 time (with Z or an offset) as an aware datetime; the earliest time for none."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _job_row(job: BatchJob) -> dict[str, Any]:
    fields = job_fields(job, None)
    errors = fields["errors"]
    return {
        "batch_id": job.id,
        "filename": job.filename or "(no name)",
        "created_at": fields["created_at"] or "",
        "status": fields["status"],
        "progress": fields["progress"],
        "rows": fields["rows_read"],
        "interpreted": fields["interpreted"],
        "rejected": fields["rejected"],
        "problem": errors[0].get("detail") if errors else None,
    }


@bp.post("/batches")
def upload_batch() -> ResponseReturnValue:
    """The same upload as POST /api/v1/batches (labservice.services.batch_upload), then its batch page."""
    try:
        batch_id, created, _ = receive_upload()  # reads the form itself: the upload limit must apply first
    except Problem as problem:
        mapping = request.form.get("mapping", "") if problem.code != 413 else ""
        return upload_page(problem.detail, mapping, problem.code or 422)
    stored = current_store().get(batch_id)
    job = find_job(batch_id)
    if stored is None or (job is not None and job.status != DONE):
        flash("The file is kept and queued: this page shows its progress.", "success")
    elif created:
        summary = stored.record.get("summary", {})
        flash(
            f"Batch read: {summary.get('interpreted', 0)} CBCs interpreted, {summary.get('rejected', 0)} rows "
            "rejected.",
            "success",
        )
    else:
        flash("This file was already uploaded with this mapping: here is its summary.", "success")
    return redirect(url_for("dashboard.batch_page", batch_id=batch_id), 303)


def _kept_batch(batch_id: str) -> StoredBatch | ResponseReturnValue:
    """The batch (labservice.services.batch_results.find_batch), or the page saying it does not exist (404) or that its
    results expired (410)."""
    try:
        return find_batch(batch_id)
    except Problem as problem:
        if problem.code == 410:
            return render_template("dashboard/gone.html", detail=problem.detail), 410
        return not_found(f"batch {batch_id}")


def _page_number(name: str) -> int:
    text = request.args.get(name, "1")
    return int(text) if text.isdigit() and len(text) < 10 else 1


@bp.get("/batches/<batch_id>")
def batch_page(batch_id: str) -> ResponseReturnValue:
    job = find_job(batch_id) if is_batch_id(batch_id) else None
    if job is not None and job.status != DONE:  # its progress, reloaded until done (no script: a meta refresh)
        touched_resource(f"batch {batch_id}", "read")
        return render_template(
            "dashboard/batch.html",
            batch_id=batch_id,
            filename=job.filename,
            job=job_fields(job, None),
            refresh=JOB_PAGE_REFRESH_SECONDS,
            warnings=header_warnings(job) if job.status != FAILED else (),
        )
    stored = _kept_batch(batch_id)
    if not isinstance(stored, StoredBatch):
        return stored
    touched_batch(batch_id, "read", current_store().patients(batch_id))  # the audit trail
    record = stored.record
    summary = record.get("summary", {})
    index = result_index(stored.json_path)
    rows = rows_page(stored.json_path, index, _page_number("page"))
    rejected = rejected_page(stored.json_path, index, _page_number("rejected_page"))
    id_columns = [(header, name) for header, name in (summary.get("columns_used") or {}).items() if name in ID_FIELDS]
    links = {
        "csv": url_for("dashboard.download_batch", batch_id=batch_id, kind="csv"),
        "csv_excel": url_for("dashboard.download_batch", batch_id=batch_id, kind="csv", excel="true"),
        "json": url_for("dashboard.download_batch", batch_id=batch_id, kind="json"),
        "api": url_for("batches.get_batch", batch_id=batch_id),
    }
    return render_template(
        "dashboard/batch.html",
        batch_id=batch_id,
        filename=record.get("filename"),
        job=job_fields(job, summary),
        record=record,
        summary=summary,
        encoding=ENCODING_NAMES.get(summary.get("encoding", ""), summary.get("encoding", "")),
        links=links,
        urgencies=URGENCIES,
        id_columns=id_columns,
        rows=_table(rows, id_columns),
        rejected=_table(rejected, id_columns),
        pages={"rows": rows, "rejected": rejected},
        pager_links={
            "rows": _pager_links(batch_id, rows, "page", {"rejected_page": rejected.number}, "results"),
            "rejected": _pager_links(batch_id, rejected, "rejected_page", {"page": rows.number}, "rejected"),
        },
    )


def _pager_links(batch_id: str, page: Page, param: str, others: dict[str, int], anchor: str) -> dict[str, str | None]:
    """The previous and next page of one of the page's tables, keeping the other table's page (links that leave a
    page at 1 out)."""

    def link(number: int) -> str | None:
        if not 1 <= number <= page.pages or number == page.number:
            return None
        pages = sorted({**others, param: number}.items())  # page before rejected_page: one spelling of a URL
        args: dict[str, Any] = {name: value for name, value in pages if value > 1}
        return url_for("dashboard.batch_page", batch_id=batch_id, _anchor=anchor, **args)

    return {"prev": link(page.number - 1), "next": link(page.number + 1)}


def _table(page: Page, id_columns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """A page's rows for the template: line, id cells (a patient linked when stored), urgency, findings, error."""
    patient_header = next((header for header, name in id_columns if name == "patient_id"), None)
    patients = []
    if patient_header is not None:
        patients = [_text((row.get("ids") or {}).get(patient_header)).strip() for row in page.rows]
    stored: set[str] = set()
    if any(patients):
        with current_database().session() as session:
            stored = known_patients(session, [p for p in patients if p])
    out = []
    for position, row in enumerate(page.rows):
        ids = row.get("ids") or {}
        cells = []
        for header, name in id_columns:
            value = _text(ids.get(header))
            linked = name == "patient_id" and patients[position] in stored
            cells.append(
                {
                    "field": name,
                    "text": value,
                    "href": url_for("dashboard.patient_page", external_id=patients[position]) if linked else None,
                }
            )
        out.append(
            {
                "line": row.get("line"),
                "ids": cells,
                "urgency": row.get("urgency"),
                "findings": [code for code in row.get("findings") or [] if code],
                "error": row.get("error"),
            }
        )
    return out


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@bp.get("/batches/<batch_id>/result.<any(csv, json):kind>")
def download_batch(batch_id: str, kind: str) -> ResponseReturnValue:
    """A batch's results for the signed-in user: the API's own download (which needs an API key otherwise), named
    after the uploaded file; `?excel=true` for a CSV that begins with a UTF-8 byte order mark."""
    excel = excel_requested()
    found = _kept_batch(batch_id)
    if not isinstance(found, StoredBatch):
        return found
    return send_batch_result(found, kind, excel=excel)  # found once: no second look-up and purge check
