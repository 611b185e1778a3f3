"""The batches table as the index of kept batch results: who owns them, their size, when they expire.

Every upload has a row (``?store=false`` ones too, with ``store_requested`` false and no CBC pointing at it), so
the per-key quota is one indexed sum (`bytes_kept`), the retention purge one indexed range (`expired_batches`),
and a download of purged results can answer 410 Gone (`purged_at`). A purged row stays: the CBCs and referrals
the batch stored point at it, and a later upload of the same batch takes it up again (`revive_batch`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Update, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from labservice.store.models import Batch


def now() -> datetime:
    from labservice.store.repository import now_utc

    return now_utc()


def bytes_kept(session: Session, owner: str) -> int:
    """Bytes of result files kept (not purged) for batches this principal uploaded."""
    total = session.scalar(
        select(func.coalesce(func.sum(Batch.result_bytes), 0)).where(Batch.owner == owner, Batch.purged_at.is_(None))
    )
    return int(total or 0)


def set_result_bytes(session: Session, batch_id: str, size: int) -> None:
    """Record the size of the batch's result files (in the batch's own transaction, before its commit)."""
    session.execute(
        update(Batch)
        .where(Batch.id == batch_id)
        .values(result_bytes=int(size))
        .execution_options(synchronize_session=False)
    )


def add_unstored_batch(
    session: Session,
    *,
    batch_id: str,
    content_sha256: str,
    filename: str | None,
    owner: str | None,
    summary: dict[str, Any],
    size: int,
) -> bool:
    """The row of a ?store=false batch, added in a short transaction of its own once its files are complete (it
    stores no CBC, so it holds no write lock while the file is read). False when the batch already has a live row
    (another upload of it committed first; a concurrent insert raises IntegrityError at the flush); a purged row is
    taken up again."""
    counts = {name: int(summary.get(name, 0)) for name in ("rows_in", "rows_out", "interpreted", "rejected")}
    if session.get(Batch, batch_id) is not None:
        if not revive_batch(session, batch_id, filename=filename, owner=owner):
            return False
        session.execute(
            update(Batch)
            .where(Batch.id == batch_id)
            .values(summary=summary, result_bytes=size, **counts)
            .execution_options(synchronize_session=False)
        )
        return True
    session.add(
        Batch(
            id=batch_id,
            content_sha256=content_sha256,
            filename=filename,
            created_at=now(),
            stored=0,
            summary=summary,
            store_requested=False,
            owner=owner,
            result_bytes=int(size),
            **counts,
        )
    )
    session.flush()
    return True


def revive_batch(session: Session, batch_id: str, *, filename: str | None, owner: str | None) -> bool:
    """Take up a purged batch's row for a new upload of the same batch (its results are made again): True when
    this call did. The UPDATE waits for a concurrent upload doing the same (PostgreSQL re-checks the row after
    that one commits) and only one of them finds it purged."""
    revived = _rows_changed(
        session,
        update(Batch)
        .where(Batch.id == batch_id, Batch.purged_at.is_not(None))
        .values(purged_at=None, created_at=now(), filename=filename, owner=owner, result_bytes=0),
    )
    session.expire_all()  # the row read before the UPDATE is stale
    return revived == 1


def batch_row(session: Session, batch_id: str) -> Batch | None:
    return session.get(Batch, batch_id)


def expired_batches(session: Session, before: datetime, limit: int | None) -> list[Batch]:
    """Batches made before `before` whose results are still kept, oldest first (at most `limit`, None: all)."""
    statement = select(Batch).where(Batch.purged_at.is_(None), Batch.created_at < before).order_by(Batch.created_at)
    return list(session.scalars(statement if limit is None else statement.limit(limit)))


def mark_purged(session: Session, batch_id: str, before: datetime) -> bool:
    """Mark the batch's results purged if it is still kept and made before `before`; True when this call did
    (a batch taken up again by a new upload meanwhile is left alone)."""
    return (
        _rows_changed(
            session,
            update(Batch)
            .where(Batch.id == batch_id, Batch.purged_at.is_(None), Batch.created_at < before)
            .values(purged_at=now()),
        )
        == 1
    )


def _rows_changed(session: Session, statement: Update) -> int:
    """Rows an UPDATE changed (the session's copies are not synchronised: callers expire or re-read them)."""
    result = cast(CursorResult[Any], session.execute(statement.execution_options(synchronize_session=False)))
    return result.rowcount


def known_batches(session: Session, batch_ids: Iterable[str]) -> dict[str, datetime | None]:
    """Of these ids, those with a row: id -> when its results were purged (None: kept)."""
    ids = list(batch_ids)
    if not ids:
        return {}
    return {
        batch_id: purged_at
        for batch_id, purged_at in session.execute(select(Batch.id, Batch.purged_at).where(Batch.id.in_(ids)))
    }
