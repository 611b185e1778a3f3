"""The batch_jobs table: CSV uploads run by a job worker, their claim by one worker, their progress, and the
chunks whose rows are committed (a marker written in the chunk's own transaction).

A job is claimed by one worker at a time (`claim_job`): every later write of that worker names its claim
(`UPDATE ... WHERE claimed_by = <claim>`), so a worker that lost its claim (taken over after its lease ran out)
changes nothing more. The chunk marker's primary key (job, chunk) makes a chunk's rows commit at most once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Update, delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from labservice.store.models import BatchJob, BatchJobChunk
from labservice.store.repository import as_utc

#: The states of a job; the last two are final.
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
PROGRESS_FIELDS = ("bytes_read", "rows_read", "interpreted", "rejected")


def get_job(session: Session, job_id: str) -> BatchJob | None:
    return session.get(BatchJob, job_id)


def add_or_restart_job(session: Session, job_id: str, **fields: Any) -> bool:
    """Add the job (queued) or, when it exists and failed, queue it again with these fields: True when this call
    queued it; False when the job exists and is queued, running or done (the caller answers that one)."""
    job = session.get(BatchJob, job_id)
    now = fields.pop("now")
    if job is None:
        session.add(
            BatchJob(
                id=job_id,
                status=QUEUED,
                created_at=now,
                bytes_read=0,
                rows_read=0,
                interpreted=0,
                rejected=0,
                stored=0,
                attempts=0,
                errors=[],
                **fields,
            )
        )
        session.flush()
        return True
    if job.status != FAILED:
        return False
    for name, value in fields.items():
        setattr(job, name, value)
    job.status, job.created_at, job.errors = QUEUED, now, []
    job.started_at = job.finished_at = job.heartbeat_at = job.claimed_by = None
    for name in PROGRESS_FIELDS:
        setattr(job, name, 0)
    session.flush()
    return True


def forget_job(session: Session, job_id: str) -> None:
    """Delete a job (a done job whose batch was purged: a new upload of it starts a new job)."""
    session.execute(delete(BatchJobChunk).where(BatchJobChunk.job_id == job_id))
    session.execute(delete(BatchJob).where(BatchJob.id == job_id))


def claim_job(session: Session, job_id: str, claimant: str, seen_claim: str | None, now: datetime) -> bool:
    """Take the job for `claimant` if its claim is still `seen_claim` (None: never claimed) and it is not
    finished; True when this call did. The progress counts start again (the file is read again from its start);
    `stored` and the committed chunks stay."""
    claim = BatchJob.claimed_by.is_(None) if seen_claim is None else BatchJob.claimed_by == seen_claim
    job = session.get(BatchJob, job_id)
    started = job.started_at if job is not None and job.started_at is not None else now
    values: dict[str, Any] = {name: 0 for name in PROGRESS_FIELDS}
    values.update(
        status=RUNNING,
        claimed_by=claimant,
        heartbeat_at=now,
        started_at=started,
        attempts=BatchJob.attempts + 1,
    )
    statement = (
        update(BatchJob).where(BatchJob.id == job_id, claim, BatchJob.status.in_((QUEUED, RUNNING))).values(**values)
    )
    return _rows_changed(session, statement) == 1


def committed_chunks(session: Session, job_id: str) -> dict[int, int]:
    """chunk number -> CBCs it stored, for the chunks whose rows are committed."""
    rows = session.execute(select(BatchJobChunk.chunk, BatchJobChunk.stored).where(BatchJobChunk.job_id == job_id))
    return {int(chunk): int(stored) for chunk, stored in rows}


def commit_chunk(session: Session, job_id: str, claimant: str, chunk: int, stored: int, now: datetime) -> bool:
    """In the chunk's transaction: its marker and its stored count; False when the claim was lost (roll back)."""
    counted = _rows_changed(
        session,
        update(BatchJob)
        .where(BatchJob.id == job_id, BatchJob.claimed_by == claimant)
        .values(stored=BatchJob.stored + stored, heartbeat_at=now),
    )
    if counted != 1:
        return False
    session.add(BatchJobChunk(job_id=job_id, chunk=chunk, stored=stored))
    session.flush()  # a marker already there (another worker's) fails here, with the rows
    return True


def report_progress(session: Session, job_id: str, claimant: str, now: datetime, **counts: int) -> bool:
    """Set the progress counts and renew the lease; False when the claim was lost."""
    values: dict[str, Any] = {name: int(counts[name]) for name in PROGRESS_FIELDS if name in counts}
    values["heartbeat_at"] = now
    statement = update(BatchJob).where(BatchJob.id == job_id, BatchJob.claimed_by == claimant).values(**values)
    return _rows_changed(session, statement) == 1


def end_job(
    session: Session, job_id: str, claimant: str | None, status: str, now: datetime, errors: list | None = None
) -> bool:
    """Mark the job done or failed (with its errors); False when `claimant` no longer holds it."""
    where = [BatchJob.id == job_id]
    if claimant is not None:
        where.append(BatchJob.claimed_by == claimant)
    values: dict[str, Any] = {"status": status, "finished_at": now, "heartbeat_at": now}
    if errors is not None:
        values["errors"] = errors
    return _rows_changed(session, update(BatchJob).where(*where).values(**values)) == 1


def unfinished_jobs(session: Session) -> list[BatchJob]:
    """Jobs queued or running, oldest first (the worker's start-up and periodic check looks for stale ones)."""
    statement = select(BatchJob).where(BatchJob.status.in_((QUEUED, RUNNING))).order_by(BatchJob.created_at)
    return list(session.scalars(statement))


def recent_unfinished_or_failed(session: Session, limit: int) -> list[BatchJob]:
    """Jobs queued, running or failed, newest first (the dashboard's batches page lists them beside the batches
    done)."""
    statement = (
        select(BatchJob)
        .where(BatchJob.status.in_((QUEUED, RUNNING, FAILED)))
        .order_by(BatchJob.created_at.desc(), BatchJob.id)
        .limit(limit)
    )
    return list(session.scalars(statement))


def stale(job: BatchJob, now: datetime, lease: timedelta, dead: bool) -> bool:
    """Whether a queued or running job has no live worker: its claimant is dead (known on this host), or it was
    neither started nor renewed within the lease."""
    if dead:
        return True
    last = job.heartbeat_at or job.created_at
    return last is not None and aware(last) < now - lease


def aware(moment: datetime) -> datetime:
    return as_utc(moment) or moment


def _rows_changed(session: Session, statement: Update) -> int:
    result = cast(CursorResult[Any], session.execute(statement.execution_options(synchronize_session=False)))
    return result.rowcount
