"""A batch upload as a job: the upload is kept and queued (`submit_job`), a job worker runs it (`run_job`), and
GET /api/v1/batches/<id> reports its progress (`job_resource`) until its results can be downloaded.

A job reads the uploaded file chunk by chunk (labservice.batch.run_batch) and stores each chunk's CBCs in one
transaction of their own, together with a marker for that chunk (labservice.store.batch_jobs.commit_chunk) and
the job's stored count. A worker killed at any point loses at most the chunk it was storing (rolled back with its
marker); the job is then queued again (`requeue_stale`) and the next worker reads the file again from its start:
the chunks already committed are interpreted for the result files but not stored again. So every row is
stored once, and the results are the same as a run without the crash. The result files are made as before
(labservice.batch.results_store.BatchStore.save): written aside, then the batch's counts, its result size
(quota) and the job's end committed in one transaction, then moved into place.

Memory is bounded by the chunk (BATCH_CHUNK_ROWS): nothing of the file is held beyond the chunk being stored.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, TextIO

from flask import current_app
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from labservice.adapters.csv_input.rows import ParsedChunk
from labservice.batch import BatchFileError, BatchOptions, MappingError, load_mapping_text, run_batch
from labservice.batch.chunk import KeepRows, StagedKeep
from labservice.batch.keep import QuotaExceeded, batch_keeper, check_quota
from labservice.batch.patients import PatientIds
from labservice.batch.results_store import canonical_json
from labservice.batch.summary import BatchSummary
from labservice.extensions import current_database, current_ruleset, current_store
from labservice.services.store_results import CbcToStore, ChunkStored, StoredCbc, store_chunk
from labservice.store import batch_jobs as jobs
from labservice.store.batch_records import add_unstored_batch, batch_row, bytes_kept, revive_batch, set_result_bytes
from labservice.store.models import BatchJob
from labservice.store.repository import BatchAlreadyStored, add_batch, finish_batch, now_utc

log = logging.getLogger(__name__)

#: Where uploads wait for their job, under the batch directory (not a batch id, so never taken for a batch).
UPLOADS = ".uploads"
COPY_BLOCK = 1 << 20


class LostClaim(Exception):
    """Another worker took this job over (this one was taken for dead): stop, changing nothing more."""


@dataclass(frozen=True)
class Upload:
    """What a job is made from."""

    batch_id: str
    content_sha256: str
    mapping: dict[str, Any]
    filename: str | None
    owner: str | None
    store_requested: bool


def keep_upload(directory: str | os.PathLike[str], batch_id: str, source: IO[bytes]) -> tuple[Path, int]:
    """Copy the uploaded file beside the batches (fsynced) for its job: (its path, its bytes)."""
    folder = Path(directory) / UPLOADS
    path = folder / f"{batch_id}-{uuid.uuid4().hex[:12]}.csv"
    for attempt in range(3):  # the folder is removed when the last job ends: made again if it just was
        folder.mkdir(parents=True, exist_ok=True)
        try:
            out = path.open("xb")
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    source.seek(0)
    size = 0
    with out:
        while block := source.read(COPY_BLOCK):
            out.write(block)
            size += len(block)
        out.flush()
        os.fsync(out.fileno())
    source.seek(0)
    return path, size


def remove_upload(path: Path) -> None:
    """Delete a job's upload once it ended, and the uploads folder when it is empty (the batch directory then
    holds batches only)."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()


def submit_job(upload: Upload, source: IO[bytes]) -> bool:
    """Keep the file and queue its job: True when this call queued it (or queued again a job whose worker died),
    False when the batch's job is already queued, running or done (that one is answered)."""
    from labservice.services.job_queue import current_queue

    database = current_database()
    queue = current_queue()
    with database.session() as session:
        job = jobs.get_job(session, upload.batch_id)
        if job is not None and job.status != jobs.FAILED:
            orphaned = job.status == jobs.RUNNING and jobs.stale(
                job, now_utc(), _lease(), claimant_dead(job.claimed_by)
            )
            if job.status == jobs.QUEUED and queue.immediate:
                # Its request died between queuing and running it, if it has waited longer than the lease; a
                # younger one is another upload of this file, whose request is about to run it.
                orphaned = now_utc() - jobs.aware(job.created_at) > _lease()
    if job is not None and job.status != jobs.FAILED:
        if not orphaned:
            return False
        queue.enqueue(upload.batch_id)  # its worker (or, immediate, its request) died: this upload resumes it
        return True
    path, size = keep_upload(current_app.config["BATCH_DIRECTORY"], upload.batch_id, source)
    try:
        with database.session() as session:
            queued = jobs.add_or_restart_job(
                session,
                upload.batch_id,
                now=now_utc(),
                owner=upload.owner,
                filename=upload.filename,
                content_sha256=upload.content_sha256,
                mapping=upload.mapping,
                store_requested=upload.store_requested,
                upload_path=str(path),
                bytes_total=size,
            )
    except IntegrityError:  # the same upload at the same moment: that one's job runs
        queued = False
    if not queued:
        remove_upload(path)
        return False
    queue.enqueue(upload.batch_id)
    return True


def forget_job(batch_id: str) -> None:
    """Delete a finished job's row (its batch was purged or is made again)."""
    with current_database().session() as session:
        jobs.forget_job(session, batch_id)


def jobs_not_done(limit: int) -> list[BatchJob]:
    """The newest jobs queued, running or failed (detached from their session)."""
    with current_database().session() as session:
        found = jobs.recent_unfinished_or_failed(session, limit)
        for job in found:
            session.expunge(job)
        return found


def header_warnings(job: BatchJob) -> tuple[str, ...]:
    """What the header of a job's upload says at once (no column holds a patient id), read again from the kept
    upload (its first block): a job's page says it while the job runs, before the summary does. Nothing once the
    upload is gone (the job ended)."""
    from labservice.batch.runner import check_readable
    from labservice.batch.summary import patient_id_warning

    try:
        with Path(job.upload_path).open("rb") as source:
            plan = check_readable(source, _options(dict(job.mapping or {})), current_ruleset())
    except (OSError, BatchFileError):
        return ()
    warning = patient_id_warning(plan.used())
    return (warning,) if warning else ()


def find_job(batch_id: str) -> BatchJob | None:
    with current_database().session() as session:
        job = jobs.get_job(session, batch_id)
        if job is not None:
            session.expunge(job)
        return job


# --- the worker's side -----------------------------------------------------------------------------


def new_claimant() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claimant_dead(claim: str | None) -> bool:
    """Whether the worker that claimed a job is known to be gone: a process of this host that no longer exists."""
    if not claim:
        return False
    host, _, rest = claim.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _lease() -> timedelta:
    return timedelta(seconds=current_app.config["BATCH_JOB_LEASE_SECONDS"])


def requeue_stale(starting: bool) -> list[str]:
    """Queue again the jobs no live worker runs: running ones whose worker died (or stopped reporting for the lease)
    and queued ones older than the lease (their message lost); at a worker's start, every queued one. A message
    sent twice is harmless (`run_job` runs a job once)."""
    from labservice.services.job_queue import current_queue

    now, lease = now_utc(), _lease()
    with current_database().session() as session:
        found = [
            job.id
            for job in jobs.unfinished_jobs(session)
            if (starting and job.status == jobs.QUEUED) or jobs.stale(job, now, lease, claimant_dead(job.claimed_by))
        ]
    for batch_id in found:
        current_queue().enqueue(batch_id)
    return found


def run_job(batch_id: str, claimant: str | None = None) -> str | None:
    """Run a queued job (or take over one whose worker died): its final status, or None when there was nothing
    to run here (finished, or a live worker runs it)."""
    database = current_database()
    claimant = claimant or new_claimant()
    now = now_utc()
    with database.session() as session:
        job = jobs.get_job(session, batch_id)
        if job is None or job.status in (jobs.DONE, jobs.FAILED):
            return None
        seen = job.claimed_by
        if job.status == jobs.RUNNING and not jobs.stale(job, now, _lease(), claimant_dead(seen)):
            return None
        upload = Upload(
            job.id, job.content_sha256, dict(job.mapping or {}), job.filename, job.owner, bool(job.store_requested)
        )
        path = Path(job.upload_path)
    with database.session() as session:
        if not jobs.claim_job(session, batch_id, claimant, seen, now):
            return None
    status, errors = jobs.FAILED, None
    try:
        _run_claimed(upload, path, claimant)
        status = jobs.DONE
    except LostClaim:
        log.warning("batch job %s was taken over by another worker", batch_id)
        return None
    except MappingError as error:
        errors = [_error(422, f"The mapping cannot be used: {error}.", "mapping", str(error))]
    except BatchFileError as error:
        errors = [_error(422, f"The file cannot be read as CBCs: {error}.", "file", str(error))]
    except QuotaExceeded as error:
        errors = [quota_error(error.used, error.size, error.limit)]
    except SQLAlchemyError:  # the database went away: the job stays running and is taken over after the lease
        log.exception("batch job %s stopped: the database did not answer", batch_id)
        return None
    except Exception:
        log.exception("batch job %s failed", batch_id)
        errors = [_error(500, "The job failed unexpectedly; the service log has the cause.", None, None)]
    if status == jobs.FAILED:
        with database.session() as session:
            jobs.end_job(session, batch_id, claimant, jobs.FAILED, now_utc(), errors)
    remove_upload(path)
    return status


def _error(status: int, detail: str, field: str | None, message: str | None) -> dict[str, Any]:
    titles = {413: "Payload Too Large", 422: "Unprocessable Content", 500: "Internal Server Error"}
    out: dict[str, Any] = {"status": status, "title": titles.get(status, "Error"), "detail": detail}
    if field is not None:
        out["errors"] = {field: [message]}
    return out


def quota_error(used: int, size: int | None, limit: int) -> dict[str, Any]:
    """The problem of an upload over BATCH_QUOTA_BYTES (507), or 413 when its results alone exceed it."""
    days = current_app.config["BATCH_RETENTION_DAYS"]
    if size is not None and size > limit:
        return {
            "status": 413,
            "title": "Batch Results Too Large",
            "detail": f"This batch's results ({size} bytes) are larger than the whole quota of {limit} bytes "
            "(BATCH_QUOTA_BYTES): split the file into smaller ones.",
            "errors": {"file": [f"Results of {size} bytes; quota {limit} bytes."]},
        }
    taking = "" if size is None else f" and this batch's results ({size} bytes) would take it over"
    return {
        "status": 507,
        "title": "Batch Storage Quota Exceeded",
        "detail": f"The batch results kept for this API key or user use {used} bytes of its quota of {limit} "
        f"bytes (BATCH_QUOTA_BYTES){taking}. Batch results are deleted {days} days after their upload "
        "(BATCH_RETENTION_DAYS), which frees the space; the results of this upload were not kept.",
        "errors": {"quota": [f"{used} bytes used of {limit} bytes."]},
    }


def _options(mapping: dict[str, Any]) -> BatchOptions:
    options = load_mapping_text(canonical_json(mapping)) if mapping else BatchOptions()
    options.clock_skew_seconds = current_app.config["CLOCK_SKEW_SECONDS"]
    options.chunk_rows = current_app.config["BATCH_CHUNK_ROWS"]
    return options


def _run_claimed(upload: Upload, path: Path, claimant: str) -> None:
    config = current_app.config
    database, store, rs = current_database(), current_store(), current_ruleset()
    batch_id = upload.batch_id
    if store.get(batch_id) is not None:  # an earlier attempt made the files and died before its last word
        with database.session() as session:
            jobs.end_job(session, batch_id, claimant, jobs.DONE, now_utc())
        return
    options = _options(upload.mapping)
    keep_rows: KeepRows | None = None
    if upload.store_requested:
        with database.session() as session:
            row = batch_row(session, batch_id)
            if row is None:
                add_batch(session, batch_id, upload.content_sha256, upload.filename, owner=upload.owner)
            elif row.purged_at is not None:
                revive_batch(session, batch_id, filename=upload.filename, owner=upload.owner)
        keep_rows = _chunk_keeper(upload, claimant, options.date_order, config["DELTA_WINDOW_DAYS"])

    done_bytes = _bytes_done(path)

    def on_chunk(summary: BatchSummary, bytes_read: int) -> None:
        with database.session() as session:
            if not jobs.report_progress(
                session,
                batch_id,
                claimant,
                now_utc(),
                bytes_read=done_bytes(summary, bytes_read),
                rows_read=summary.rows_out,
                interpreted=summary.interpreted,
                rejected=summary.rejected,
            ):
                raise LostClaim(batch_id)

    made: dict[str, Any] = {}

    def produce(csv_out: TextIO, json_out: TextIO) -> dict[str, Any]:
        patients = PatientIds()
        with path.open("rb") as source:
            summary = run_batch(
                source,
                csv_out=csv_out,
                json_out=json_out,
                options=options,
                ruleset=rs,
                keep_rows=patients.keeping(keep_rows),
                on_chunk=on_chunk,
                jobs=config["BATCH_JOB_PROCESSES"] if keep_rows is not None else 1,
            )
        made["summary"] = summary.to_dict()
        return {
            "batch_id": batch_id,
            "content_sha256": upload.content_sha256,
            "mapping": upload.mapping,
            "filename": upload.filename,
            "created_at": now_utc().isoformat(),
            "summary": made["summary"],
            "patients": patients.ids(),
        }

    def measured(size: int) -> None:
        with database.session() as session:
            check_quota(bytes_kept(session, upload.owner or ""), size, upload.owner, config["BATCH_QUOTA_BYTES"])
        made["size"] = size

    def commit() -> None:
        summary = made["summary"]
        with database.session() as session:
            if upload.store_requested:
                finish_batch(session, batch_id, summary)
                set_result_bytes(session, batch_id, made["size"])
            elif not add_unstored_batch(
                session,
                batch_id=batch_id,
                content_sha256=upload.content_sha256,
                filename=upload.filename,
                owner=upload.owner,
                summary=summary,
                size=made["size"],
            ):
                raise BatchAlreadyStored(batch_id)
            finished = jobs.report_progress(
                session,
                batch_id,
                claimant,
                now_utc(),
                bytes_read=int(summary.get("bytes_read", 0)),
                rows_read=int(summary.get("rows_in", 0)),
                interpreted=int(summary.get("interpreted", 0)),
                rejected=int(summary.get("rejected", 0)),
            ) and jobs.end_job(session, batch_id, claimant, jobs.DONE, now_utc())
            if not finished:
                raise LostClaim(batch_id)

    try:
        store.save(batch_id, produce, commit=commit, measured=measured)
    except QuotaExceeded:
        if upload.store_requested:  # its CBCs are stored (chunk by chunk); its results are not kept
            _results_not_kept(batch_id)
        raise


def _bytes_done(path: Path) -> Callable[[BatchSummary, int], int]:
    """The bytes of the file a job has done, for its progress: the reader reads ahead in 1 MiB blocks, so the bytes
    it read say 99 % of a small file after its first chunk. For a wide file, the lines done (the header, the rows
    out, the blank lines) times the first block's average line, at most the bytes read (as the command line's bar,
    labservice.batch.progress); a long file is read whole before its CBCs are made: the bytes read."""
    from labservice.batch.progress import bytes_per_line

    try:
        with path.open("rb") as source:
            per_line = bytes_per_line(source.read(1 << 16))
    except OSError:
        per_line = None

    def done(summary: BatchSummary, bytes_read: int) -> int:
        if per_line is None or summary.shape != "wide":
            return bytes_read
        return min(bytes_read, int((1 + summary.rows_out + summary.blank_lines) * per_line))

    return done


def _results_not_kept(batch_id: str) -> None:
    from labservice.store.batch_records import mark_purged

    with contextlib.suppress(SQLAlchemyError), current_database().session() as session:
        mark_purged(session, batch_id, now_utc() + timedelta(seconds=1))


def _chunk_keeper(upload: Upload, claimant: str, date_order: str | None, window_days: int) -> StagedKeep:
    """A KeepRows storing each chunk's CBCs in a transaction of its own (store_chunk) with the chunk's marker and
    the job's stored count; a chunk whose marker is there (committed by an earlier attempt) is not stored again."""
    from flask import has_request_context

    database, rs = current_database(), current_ruleset()
    batch_id = upload.batch_id
    with database.session() as session:
        committed = jobs.committed_chunks(session, batch_id)
    numbers = itertools.count()
    current = [0]

    def keep(items: list[CbcToStore]) -> list[StoredCbc]:
        chunk = current[0]

        def mark(session: Any, counts: ChunkStored) -> None:  # in the chunk's transaction, before its commit
            if not jobs.commit_chunk(session, batch_id, claimant, chunk, counts.stored, now_utc()):
                raise LostClaim(batch_id)

        try:
            return store_chunk(
                database, items, batch_id=batch_id, rs=rs, window_days=window_days, before_commit=mark
            ).results
        except IntegrityError:  # the marker is there: another worker committed this chunk
            with database.session() as session:
                if chunk in jobs.committed_chunks(session, batch_id):
                    raise LostClaim(batch_id) from None
            raise

    if has_request_context():  # an immediate job: the upload request's audit trail notes the patients stored
        from labservice.middleware.audit_trail import noting_patients

        store_rows = batch_keeper(noting_patients(keep), rs, date_order)
    else:
        store_rows = batch_keeper(keep, rs, date_order)

    def store_numbered(parsed: ParsedChunk, prepared: Any, store: Callable[[ParsedChunk, Any], int]) -> int:
        chunk = next(numbers)  # the store stage runs once per chunk, in file order
        if chunk in committed:
            return committed[chunk]
        current[0] = chunk
        return store(parsed, prepared)

    return store_rows.storing_with(store_numbered)


# --- the job as the API answers it -------------------------------------------------------------------


def _time(moment: datetime | None) -> str | None:
    from labservice.store.repository import as_utc

    value = as_utc(moment)
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def job_fields(job: BatchJob | None, summary: dict[str, Any] | None) -> dict[str, Any]:
    """The job members of a batch resource: status, progress (0 to 1, from the bytes read), the rows read,
    interpreted, stored and rejected, the times, and the errors of a failed job. A batch made before jobs
    existed (no job row) is done, with its summary's counts."""
    if job is None:
        summary = summary or {}
        return {
            "status": jobs.DONE,
            "progress": 1.0,
            "rows_read": int(summary.get("rows_in", 0)),
            "interpreted": int(summary.get("interpreted", 0)),
            "stored": int(summary.get("stored", 0)),
            "rejected": int(summary.get("rejected", 0)),
            "bytes_read": int(summary.get("bytes_read", 0)),
            "bytes_total": int(summary.get("bytes_read", 0)),
            "created_at": None,
            "started_at": None,
            "finished_at": None,
            "errors": [],
        }
    if job.status == jobs.DONE:
        progress = 1.0
    elif job.bytes_total:
        progress = round(min(job.bytes_read / job.bytes_total, 0.99), 4)  # 1 only when the results are kept
    else:
        progress = 0.0
    return {
        "status": job.status,
        "progress": progress,
        "rows_read": job.rows_read,
        "interpreted": job.interpreted,
        "stored": job.stored,
        "rejected": job.rejected,
        "bytes_read": job.bytes_read,
        "bytes_total": job.bytes_total,
        "created_at": _time(job.created_at),
        "started_at": _time(job.started_at),
        "finished_at": _time(job.finished_at),
        "errors": list(job.errors or []),
    }
