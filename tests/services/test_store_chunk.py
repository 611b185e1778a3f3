"""services.store_results.store_chunk: a batch job's chunk stored in one transaction, idempotent per chunk, on
SQLite and PostgreSQL (issue 12 item 1: "resumes or restarts without storing any row twice (... idempotent chunk
commits)", "the history of a chunk's patients fetched in one query, the delta computed over the chunk").

Expected values by hand: a result is the same result when its patient, collection time, values and conclusion are
(the fingerprint, unique per patient); platelet_drop is a fall of 50 % or more from the previous CBC within the
7-day window (thresholds.csv platelet_drop, S23 S24), so 200 -> 100 is a drop.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from labservice.core.ruleset import default_ruleset
from labservice.services.store_results import ChunkStored, keep_in, store_chunk
from labservice.store import repository
from labservice.store.database import Database
from labservice.store.models import CbcResult, Interpretation, Referral
from labservice.store.repository import add_batch
from tests.store.test_repository import item


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = Database.connect(database_url)
    yield database
    database.engine.dispose()


def new_batch(database: Database) -> str:
    batch_id = uuid.uuid4().hex
    with database.session() as session:
        add_batch(session, batch_id, "0" * 64, "chunk.csv")
    return batch_id


def chunk(database: Database, batch_id: str, items, **kwargs) -> ChunkStored:
    return store_chunk(database, list(items), batch_id=batch_id, rs=default_ruleset(), window_days=7, **kwargs)


def rows(database: Database, model: type = CbcResult) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_chunk_run_again_stores_nothing_twice(database: Database) -> None:
    batch_id = new_batch(database)
    items = [item(f"C{n % 3}", day=n // 3, platelets=250.0 - n) for n in range(9)]
    first = chunk(database, batch_id, items)
    assert (first.stored, first.already, first.duplicates) == (9, 0, 0)
    again = chunk(database, batch_id, items)  # a job restarted after this chunk's commit
    assert (again.stored, again.already, again.duplicates) == (0, 9, 0)
    assert rows(database) == 9 and rows(database, Interpretation) == 9
    assert [r.cbc_id for r in again.results] == [r.cbc_id for r in first.results]
    assert [r.delta for r in again.results] == [r.delta for r in first.results]


def test_a_row_twice_in_a_chunk_is_counted_the_same_on_every_run(database: Database) -> None:
    batch_id = new_batch(database)
    items = [item("D1", day=0), item("D1", day=0), item("D2", day=0)]
    first = chunk(database, batch_id, items)
    assert (first.stored, first.already, first.duplicates) == (2, 0, 1)
    again = chunk(database, batch_id, items)
    assert (again.stored + again.already, again.duplicates) == (2, 1)
    assert rows(database) == 2


def test_a_result_kept_by_another_request_is_a_duplicate_not_already(database: Database) -> None:
    keep_in(database, default_ruleset(), 7)([item("E1", day=0)])
    out = chunk(database, new_batch(database), [item("E1", day=0), item("E1", day=1)])
    assert (out.stored, out.already, out.duplicates) == (1, 0, 1)


def test_the_delta_is_computed_over_the_chunk_and_the_stored_history(database: Database) -> None:
    keep_in(database, default_ruleset(), 7)([item("F1", day=0, platelets=200.0)])
    out = chunk(
        database,
        new_batch(database),
        [item("F1", day=2, platelets=90.0), item("F1", day=1, platelets=180.0), item("F2", day=1, platelets=100.0)],
    )
    by_day = {r.delta.get("previous", {}).get("platelets"): r for r in out.results}
    # day 1 (180) is compared with the stored day 0 (200): a 10 % fall; day 2 (90) with day 1 of the same chunk
    # (180): exactly 50 %, a drop; F2 has no previous CBC: not assessed.
    assert by_day[200.0].delta["platelet_fall_percent"] == 10.0 and by_day[200.0].delta["platelet_drop"] is False
    assert by_day[180.0].delta["platelet_fall_percent"] == 50.0 and by_day[180.0].delta["platelet_drop"] is True
    assert [f["code"] for f in by_day[180.0].delta_findings] == ["platelet_drop"]
    assert out.results[2].delta["assessed"] is False
    with database.session() as session:  # the drop opened F1's referral (a delta finding alone opens one)
        assert session.scalar(select(func.count()).select_from(Referral).where(Referral.status == "new")) == 1


def test_a_failure_before_the_commit_keeps_nothing_of_the_chunk(database: Database) -> None:
    batch_id = new_batch(database)

    def progress_fails(session, counts: ChunkStored) -> None:
        assert counts.stored == 3  # the chunk's rows are there, uncommitted
        raise RuntimeError("progress row could not be written")

    with pytest.raises(RuntimeError):
        chunk(database, batch_id, [item(f"G{n}", day=0) for n in range(3)], before_commit=progress_fails)
    assert rows(database) == 0
    assert chunk(database, batch_id, [item(f"G{n}", day=0) for n in range(3)]).stored == 3


def test_lookups_of_more_values_than_one_statement_takes_are_split(database: Database, monkeypatch) -> None:
    monkeypatch.setattr(repository, "IN_CHUNK", 2)  # 5 patients: three statements per look-up
    batch_id = new_batch(database)
    first = chunk(database, batch_id, [item(f"H{n}", day=0, platelets=200.0) for n in range(5)])
    second = chunk(database, batch_id, [item(f"H{n}", day=1, platelets=100.0) for n in range(5)])
    assert first.stored == second.stored == 5
    assert all(r.delta["platelet_drop"] for r in second.results)  # every patient's history was found
    assert chunk(database, batch_id, [item(f"H{n}", day=1, platelets=100.0) for n in range(5)]).already == 5


def test_the_window_is_the_one_given(database: Database) -> None:
    keep_in(database, default_ruleset(), 7)([item("J1", day=0, platelets=200.0)])
    out = store_chunk(
        database,
        [item("J1", day=8, platelets=100.0)],
        batch_id=new_batch(database),
        rs=default_ruleset(),
        window_days=7,
    )
    assert out.results[0].delta["assessed"] is False  # 8 days > the 7-day window
    assert timedelta(days=out.results[0].delta["window_days"]) == timedelta(days=7)


def stored_rows(database: Database, prefix: str) -> list[tuple]:
    """Every column of the results and interpretations stored for patients `prefix`-*, in the order stored, with
    what names the patient or the row (ids, fingerprint, patient id text) left out."""
    with database.session() as session:
        found = session.execute(
            select(CbcResult, Interpretation)
            .join(Interpretation, Interpretation.cbc_id == CbcResult.id)
            .join(repository.Patient, repository.Patient.id == CbcResult.patient_id)
            .where(repository.Patient.external_id.like(f"{prefix}-%"))
            .order_by(CbcResult.id)
        ).all()
        skip = {"id", "patient_id", "cbc_id", "fingerprint", "batch_id", "received_at", "created_at"}
        return [
            tuple(
                (name, getattr(row, name))
                for model, row in ((CbcResult, result), (Interpretation, interpretation))
                for name in model.__table__.columns.keys()  # noqa: SIM118 (a ColumnCollection)
                if name not in skip
            )
            for result, interpretation in found
        ]


def test_a_chunk_added_in_bulk_is_stored_as_one_added_row_by_row(database: Database, monkeypatch) -> None:
    """From COPY_FROM_ROWS rows a chunk is added with COPY (PostgreSQL) or the driver's executemany (SQLite); the
    rows stored, and the ids answered for them, are those of the many-row INSERT ... RETURNING of smaller chunks."""
    size = 3 * repository.COPY_FROM_ROWS

    # Texts COPY must escape (its own escape character, tab and line break) beside JSON's (a quote), and non-ASCII.
    tricky = 'a "quote", a backslash \\ (and \\n), a tab \t, a line\nbreak, \u2265 150 \u00d7 10\u2079/L'

    def items(prefix: str) -> list:
        out = [
            item(f"{prefix}-{n % 40}", day=n // 40, platelets=300.0 - 2 * n, findings=("thrombocytopenia",) * (n % 2))
            for n in range(size)
        ]
        for one in out:
            one.answer = {**one.answer, "summary": tricky}
            one.raw = {**one.raw, "note": tricky}
        return out

    bulk = chunk(database, new_batch(database), items("BULK"))
    monkeypatch.setattr(repository, "COPY_FROM_ROWS", 10 * size)  # the same rows through INSERT ... RETURNING
    row_by_row = chunk(database, new_batch(database), items("ROWS"))
    assert bulk.stored == row_by_row.stored == size
    assert stored_rows(database, "BULK") == stored_rows(database, "ROWS")
    assert len(stored_rows(database, "BULK")) == size
    assert {dict(row)["answer"]["summary"] for row in stored_rows(database, "BULK")} == {tricky}
    assert {dict(row)["raw"]["note"] for row in stored_rows(database, "BULK")} == {tricky}
    with database.session() as session:  # each answered id is its own row's (the order of the ids is the items')
        for answered, sent in zip(bulk.results, items("BULK"), strict=True):
            result = session.get(CbcResult, answered.cbc_id)
            interpretation = session.get(Interpretation, answered.interpretation_id)
            assert result is not None and interpretation is not None
            assert result.platelets == sent.values["platelets"]
            assert repository.as_utc(result.collected_at) == sent.collected_at
            assert interpretation.cbc_id == result.id
            assert interpretation.findings[: len(sent.findings)] == sent.findings  # then the delta findings, if any


def test_answers_held_as_text_are_stored_as_the_same_answers(database: Database) -> None:
    """A batch job's other process sends each answer as JSON text (store_results.hold_as_text). Stored, each is the
    same answer as when sent as a dict: with its delta block added last, and the delta finding of the second CBC
    (200 -> 100: a fall of 50 %, thresholds.csv platelet_drop) added to its findings (read from its text then)."""
    from labservice.services.store_results import hold_as_text

    def answers(batch_id: str, items) -> list:
        stored = chunk(database, batch_id, items)
        assert stored.stored == 2
        with database.session() as session:
            kept = dict(session.execute(select(Interpretation.id, Interpretation.answer)).all())
        return [kept[result.interpretation_id] for result in stored.results] + [r.answer for r in stored.results]

    as_text = [hold_as_text(item("T1", day=0, platelets=200.0)), hold_as_text(item("T1", day=1, platelets=100.0))]
    assert all("answer" not in cbc.__dict__ and cbc.answer_text is not None for cbc in as_text)
    from_text = answers(new_batch(database), as_text)
    from_dicts = answers(new_batch(database), [item("D1", day=0, platelets=200.0), item("D1", day=1, platelets=100.0)])
    assert from_text == from_dicts
    assert "platelet_drop" in [f["code"] for f in from_text[1]["findings"]]
    assert all("delta" in answer for answer in from_text)
