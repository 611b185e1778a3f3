"""Keep the rows of a batch that carry a patient id, as the JSON API keeps its CBCs.

Each row kept gets the full answer the JSON API gives (findings with their rules and sources), rendered from
the engine's result the chunk was interpreted with (not run again), then stored through the same repository:
once per result, with delta checks and referrals.

A batch is stored in one transaction (`batch_transaction`): the batch row, then every chunk's CBCs,
interpretations and referrals, then the summary, committed together just before the result files are
renamed into place (`labservice.batch.results_store.BatchStore.save`). A worker killed at any point before the
commit leaves no row of the batch; one killed after it leaves files that the next upload moves into place.
The transaction lasts as long as the file takes to read (minutes for the largest uploads): on PostgreSQL
it holds the row locks of the patients and referrals it touched until then; on SQLite it holds the one
write lock, so other writers wait up to the busy timeout (labservice.store.database.BUSY_TIMEOUT) and then
answer 503. Memory does not grow with it: the session is emptied after every chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import numpy as np
import pandas as pd
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from labservice.adapters.csv_input.cells import parse_dates
from labservice.adapters.csv_input.rows import ParsedChunk
from labservice.batch.chunk import Interpreted, KeepRows, StagedKeep
from labservice.batch.results_store import BatchStore, StoredBatch
from labservice.core.render import render_interpretations
from labservice.core.ruleset import Ruleset
from labservice.core.table import ANALYTES
from labservice.services.store_results import CbcToStore, Keep, hold_as_text, keep_in_session, to_store
from labservice.store.batch_records import add_unstored_batch, bytes_kept, known_batches, set_result_bytes
from labservice.store.database import Database
from labservice.store.repository import (
    BatchAlreadyStored,
    add_batch,
    fingerprint,
    finish_batch,
    stored_batch_summary,
)

#: Runs a batch file into the two result handles, storing rows through the KeepRows when one is given, and
#: returns the record kept with the results (with the run's `summary`).
RunBatch = Callable[[TextIO, TextIO, "KeepRows | None"], dict[str, Any]]


#: patients.external_id is String(200); the JSON API's patient.id allows as much.
PATIENT_ID_MAX_LENGTH = 200


def batch_keeper(keep: Keep, rs: Ruleset, date_order: str | None = None) -> StagedKeep:
    """A KeepRows for run_batch that stores through `keep` (see labservice.services.store_results.keep_in): the
    rows' answers are rendered by `prepare_rows` (in a process of its own when the job runs two, see
    labservice.batch.runner) and stored by `keep`."""

    def store(parsed: ParsedChunk, items: list[CbcToStore]) -> int:
        if not items:
            return 0
        return sum(1 for stored in keep(items) if not stored.duplicate)

    return StagedKeep(RowsToKeep(rs, date_order), store)


@dataclass(frozen=True)
class RowsToKeep:
    """The `prepare` stage of batch_keeper: the rows of a chunk to keep, each with its full answer."""

    rs: Ruleset
    date_order: str | None = None

    def __call__(self, parsed: ParsedChunk, interpreted: Interpreted, errors: np.ndarray) -> list[CbcToStore]:
        return prepare_rows(parsed, interpreted, errors, self.rs, self.date_order)


def prepare_rows(
    parsed: ParsedChunk, interpreted: Interpreted, errors: np.ndarray, rs: Ruleset, date_order: str | None = None
) -> list[CbcToStore]:
    """The rows of a chunk that are kept (a patient id, no error), with their answers rendered from the engine's
    result the chunk was interpreted with (not run again)."""
    if parsed.patient_ids is None or parsed.n == 0:
        return []
    ids = pd.Series(parsed.patient_ids, dtype=object)
    text = ids.astype(str)
    # Rows whose id is empty, holds control characters (which PostgreSQL text cannot store) or is longer
    # than patients.external_id holds are interpreted but not kept, as the JSON API refuses such an id.
    has_id = (
        ids.notna().to_numpy()
        & (text.str.strip() != "").to_numpy()
        & ~text.str.contains(r"[\x00-\x1f\x7f]", regex=True).to_numpy()
        & (text.str.strip().str.len() <= PATIENT_ID_MAX_LENGTH).to_numpy()
    )
    rows = np.flatnonzero(has_id & (errors == None))  # noqa: E711 (elementwise)
    if rows.size == 0 or interpreted.result is None:
        return []
    result, values = interpreted.result, interpreted.result.cols.values
    # Rows without an error were valid when the chunk was interpreted: each has its row in the result.
    at = np.searchsorted(interpreted.rows, rows).tolist()
    patients = [str(value).strip() for value in ids.to_numpy()[rows]]
    reported = [
        {
            a: {"value": float(values[a][j]), "unit": rs.analytes[a].canonical_unit}
            for a in ANALYTES
            if a in parsed.table and values[a][j] == values[a][j]
        }
        for j in at
    ]
    answers = render_interpretations(result, patients, reported, rows=at)
    when: list[Any] = [None] * rows.size  # datetimes (or None) when the file has collection times
    if parsed.collected_text is not None:
        times, _, _ = parse_dates(pd.Series(parsed.collected_text[rows], dtype=object), date_order)
        when = [None if np.isnat(t) else pd.Timestamp(t, tz="UTC").to_pydatetime() for t in times]
    items = []
    for i, row in enumerate(rows.tolist()):
        doc = {"collected_at": when[i], "patient": {"id": patients[i]}, "context": _context(parsed.table, row)}
        raw = {"line": int(parsed.lines[row]), "values": reported[i]}
        item = to_store(doc, raw, result.cols, at[i], patients[i], answers[i])
        # Computed here, where it may run in the job's other process (labservice.batch.runner): the item is final.
        item.fingerprint = fingerprint(item.patient, item.collected_at, item.values, item.urgency, item.findings)
        items.append(hold_as_text(item))
    return items


def _context(table: dict[str, np.ndarray], row: int) -> dict[str, Any]:
    """The heparin context of a row (clinical-rules §12 v2) as the JSON API's `context` holds it."""
    out: dict[str, Any] = {}
    started = table.get("heparin_started_at")
    if started is not None and started[row] == started[row]:
        out["heparin_started_at"] = datetime.fromtimestamp(float(started[row]), UTC)
    recent = table.get("heparin_in_previous_30_days")
    if recent is not None and recent[row] == recent[row]:
        out["heparin_in_previous_30_days"] = bool(recent[row] == 1.0)
    return out


class QuotaExceeded(Exception):
    """The batch's results would take its owner over BATCH_QUOTA_BYTES: nothing of it is kept."""

    def __init__(self, owner: str, used: int, size: int, limit: int) -> None:
        super().__init__(f"{owner}: {used} bytes kept + {size} > {limit}")
        self.owner, self.used, self.size, self.limit = owner, used, size, limit


def check_quota(used: int, size: int, owner: str | None, quota: int | None) -> None:
    """Raise QuotaExceeded when `size` more bytes take `owner` (who keeps `used`) over `quota` (None: no quota)."""
    if quota is not None and owner is not None and used + size > quota:
        raise QuotaExceeded(owner, used, size, quota)


class BatchTransaction:
    """One batch's rows in one open transaction: `keep_rows` for run_batch, `finish` with the summary, `measured`
    with the size of the result files (checked against the owner's quota), then `commit` (BatchStore.save calls
    the last two once the result files are complete)."""

    def __init__(
        self, session, keep_rows: KeepRows, batch_id: str, owner: str | None = None, quota: int | None = None
    ) -> None:
        self.session = session
        self.keep_rows = keep_rows
        self.batch_id = batch_id
        self.owner = owner
        self.quota = quota
        self.committed = False

    def finish(self, summary: dict[str, Any]) -> None:
        finish_batch(self.session, self.batch_id, summary)

    def measured(self, size: int) -> None:
        if self.owner is not None:
            check_quota(bytes_kept(self.session, self.owner), size, self.owner, self.quota)
        set_result_bytes(self.session, self.batch_id, size)

    def commit(self) -> None:
        self.session.commit()
        self.committed = True


@contextmanager
def batch_transaction(
    database: Database,
    rs: Ruleset,
    window_days: int,
    *,
    batch_id: str,
    content_sha256: str,
    filename: str | None,
    date_order: str | None = None,
    wrap_keep: Callable[[Keep], Keep] | None = None,
    owner: str | None = None,
    quota: int | None = None,
) -> Iterator[BatchTransaction]:
    """Open the batch's transaction and add its row; everything is rolled back unless `commit` was called.

    Raises labservice.store.repository.BatchAlreadyStored when another upload committed this batch (on
    PostgreSQL, an upload of the same batch still running makes this wait until it ends)."""
    with database.sessions() as session:
        session.begin()
        add_batch(session, batch_id, content_sha256, filename, owner=owner)
        keep = keep_in_session(session, rs, window_days, source="batch", batch_id=batch_id)
        if wrap_keep is not None:
            keep = wrap_keep(keep)
        transaction = BatchTransaction(session, batch_keeper(keep, rs, date_order), batch_id, owner, quota)
        try:
            yield transaction
        finally:
            if not transaction.committed:
                session.rollback()


#: Seconds to wait for the files of a batch another upload has just committed (it renames them next).
WAIT_FOR_OTHER_UPLOAD = 10.0


def save_batch(
    store: BatchStore,
    batch_id: str,
    run: RunBatch,
    *,
    database: Database,
    rs: Ruleset,
    window_days: int,
    content_sha256: str,
    filename: str | None,
    date_order: str | None = None,
    wrap_keep: Callable[[Keep], Keep] | None = None,
    store_rows: bool = True,
    owner: str | None = None,
    quota: int | None = None,
) -> tuple[StoredBatch, bool]:
    """Run a batch and keep it: (the batch, True if this call made it).

    `run(csv_out, json_out, keep_rows)` runs the file (labservice.batch.run_batch) and returns the record,
    with the run's `summary`. With `store_rows` the batch's rows are stored in one transaction committed just
    before the files are renamed into place; without (?store=false) no CBC is stored and the batch's row alone
    is added, in a short transaction at that point. When another upload has committed the same batch, its files
    are answered (made again from the file, with the stored summary, if they were lost). `wrap_keep` wraps the
    storing `keep` (the audit trail notes the patients stored). The row names `owner`; when the results would
    take the owner over `quota` bytes kept, QuotaExceeded is raised and nothing is kept.
    """
    try:
        if not store_rows:
            return _save_unstored(
                store,
                batch_id,
                run,
                database=database,
                content_sha256=content_sha256,
                filename=filename,
                owner=owner,
                quota=quota,
            )
        with batch_transaction(
            database,
            rs,
            window_days,
            batch_id=batch_id,
            content_sha256=content_sha256,
            filename=filename,
            date_order=date_order,
            wrap_keep=wrap_keep,
            owner=owner,
            quota=quota,
        ) as transaction:

            def produce(csv_out: TextIO, json_out: TextIO) -> dict[str, Any]:
                record = run(csv_out, json_out, transaction.keep_rows)
                transaction.finish(record["summary"])
                return record

            return store.save(batch_id, produce, commit=transaction.commit, measured=transaction.measured)
    except BatchAlreadyStored:
        pass
    deadline = time.monotonic() + WAIT_FOR_OTHER_UPLOAD
    while time.monotonic() < deadline:
        recover_batches(store, database)
        existing = store.get(batch_id)
        if existing is not None:
            return existing, False
        time.sleep(0.1)
    with database.session() as session:
        summary = stored_batch_summary(session, batch_id)

    def again(csv_out: TextIO, json_out: TextIO) -> dict[str, Any]:
        record = run(csv_out, json_out, None)
        if summary:
            record["summary"] = summary
        return record

    stored, _ = store.save(batch_id, again)
    return stored, False


def _save_unstored(
    store: BatchStore,
    batch_id: str,
    run: RunBatch,
    *,
    database: Database,
    content_sha256: str,
    filename: str | None,
    owner: str | None,
    quota: int | None,
) -> tuple[StoredBatch, bool]:
    """A ?store=false batch: its files, and its row (no CBC) committed just before they are renamed into place.
    Raises BatchAlreadyStored when another upload of it committed first."""
    made: dict[str, Any] = {}

    def produce(csv_out: TextIO, json_out: TextIO) -> dict[str, Any]:
        made["record"] = run(csv_out, json_out, None)
        return made["record"]

    def measured(size: int) -> None:
        if owner is not None and quota is not None:
            with database.session() as session:
                check_quota(bytes_kept(session, owner), size, owner, quota)
        made["size"] = size

    def commit() -> None:
        try:
            with database.session() as session:
                added = add_unstored_batch(
                    session,
                    batch_id=batch_id,
                    content_sha256=content_sha256,
                    filename=filename,
                    owner=owner,
                    summary=made["record"]["summary"],
                    size=made["size"],
                )
        except IntegrityError:
            added = False
        if not added:
            raise BatchAlreadyStored(batch_id)

    return store.save(batch_id, produce, commit=commit, measured=measured)


def recover_batches(store: BatchStore, database: Database) -> list[str]:
    """Settle what uploads killed mid-way left in the batch directory (BatchStore.recover), asking the database
    which batches it committed; when the database does not answer, it is left for the next upload."""

    def committed(batch_id: str) -> bool:  # and not purged since (a new upload taking it up died before its commit)
        with database.session() as session:
            return known_batches(session, [batch_id]).get(batch_id, "no row") is None

    try:
        return store.recover(committed)
    except SQLAlchemyError:
        return []
