"""Storing through the repository (issue 4 §2-§4): services.store_results.store_cbcs directly, on SQLite and
PostgreSQL.

The items are built by hand (findings and urgencies as the interpretation would give them), so only
the storing, the delta checks and the referrals are under test. Expected values from the issue:
- a result is stored once per patient, collection time and values; another collection time is another row;
- platelet_drop: a fall of 50 % or more (thresholds.csv, S23 S24) from the previous CBC within the window
  (7 days by default); 200 → 100 is exactly 50 %; a previous CBC 8 days earlier is not compared;
- a non-routine CBC, or one with a delta finding, opens a referral (status new); a later one of the same
  patient joins the open referral, whose urgency is the highest of its CBCs' and which shows the
  CBC of that urgency collected last; once it is closed (dismissed or referred) a new one is opened;
- two sessions storing the same result at once leave one row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from labservice.core.ruleset import default_ruleset
from labservice.services.store_results import CbcToStore, StoredCbc, keep_in, store_cbcs
from labservice.store.database import Database
from labservice.store.models import VALUE_COLUMNS, CbcResult, Interpretation, Patient, Referral
from labservice.store.repository import (
    ReferralNotFound,
    WorklistQuery,
    as_utc,
    change_referral,
    get_referral,
    lock_referral,
    worklist,
)

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
URGENT = ("critical_value", "thrombocytopenia")  # platelets < 20: critical (clinical-rules §3) → urgent (§9)


def item(
    patient: str = "P1",
    day: float | None = 0,
    platelets: float | None = 250.0,
    *,
    urgency: str = "routine",
    findings: tuple[str, ...] = (),
    not_assessed: tuple[str, ...] = (),
    hemoglobin: float = 13.5,
    collected_at: datetime | None = None,
) -> CbcToStore:
    """One interpreted CBC of an adult woman, collected `day` days after T0 (None: no collection time)."""
    values: dict[str, float | None] = dict.fromkeys(VALUE_COLUMNS)
    values.update(platelets=platelets, hemoglobin=hemoglobin, wbc=6.0, neutrophils=3.0)
    when = collected_at if collected_at is not None else (None if day is None else T0 + timedelta(days=day))
    return CbcToStore(
        patient=patient,
        collected_at=when,
        raw={"results": {"platelets": platelets}},
        values=values,
        urgency=urgency,
        findings=list(findings),
        not_assessed=list(not_assessed),
        reason="test",
        answer={"urgency": urgency, "findings": []},
        sex="female",
        age_years=40.0,
    )


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = Database.connect(database_url)
    yield database
    database.engine.dispose()


def store(database: Database, *items: CbcToStore, window: timedelta = WEEK) -> list[StoredCbc]:
    with database.session() as session:
        return store_cbcs(session, list(items), source="json", rs=default_ruleset(), window=window)


def count(database: Database, model: type, *where: Any) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def referral(database: Database, referral_id: int) -> Referral:
    with database.session() as session:
        return session.get(Referral, referral_id)


def close(database: Database, referral_id: int, status: str) -> None:
    with database.session() as session:
        change_referral(
            session,
            referral_id,
            status,
            actor="dr test",
            note="seen",
            reason="already_managed" if status == "dismissed" else None,
        )


# -- stored once -----------------------------------------------------------------------------


def test_a_result_is_stored_with_its_interpretation(database: Database) -> None:
    [stored] = store(database, item(platelets=250.0))
    assert stored.duplicate is False
    with database.session() as session:
        cbc = session.get(CbcResult, stored.cbc_id)
        assert cbc.platelets == 250.0 and cbc.hemoglobin == 13.5 and cbc.source == "json"
        assert as_utc(cbc.collected_at) == T0
        assert cbc.raw == {"results": {"platelets": 250.0}}
        interpretation = session.get(Interpretation, stored.interpretation_id)
        assert interpretation.cbc_id == cbc.id
        assert interpretation.urgency == "routine" and interpretation.urgency_rank == 0
        assert interpretation.ruleset_version == default_ruleset().version
        patient = session.scalars(select(Patient)).one()
        assert (patient.external_id, patient.sex, patient.age_years) == ("P1", "female", 40.0)


def test_the_same_result_stored_twice_is_kept_once(database: Database) -> None:
    [first] = store(database, item())
    [again] = store(database, item())
    assert again.duplicate is True
    assert (again.cbc_id, again.interpretation_id) == (first.cbc_id, first.interpretation_id)
    assert count(database, CbcResult) == 1 and count(database, Interpretation) == 1


def test_the_same_result_twice_in_one_call_is_kept_once(database: Database) -> None:
    first, again = store(database, item(), item())
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.cbc_id == first.cbc_id
    assert count(database, CbcResult) == 1


def test_the_same_collection_time_in_another_time_zone_is_the_same_result(database: Database) -> None:
    store(database, item(collected_at=T0))
    india = timezone(timedelta(hours=5, minutes=30))
    [again] = store(database, item(collected_at=T0.astimezone(india)))  # 13:30 +05:30, the same instant
    assert again.duplicate is True
    assert count(database, CbcResult) == 1


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(item(day=1), id="same values, another collection time"),
        pytest.param(item(platelets=251.0), id="same time, another value"),
        pytest.param(item(patient="P2"), id="same time and values, another patient"),
        pytest.param(item(day=None), id="same values, no collection time"),
    ],
)
def test_another_result_is_another_row(database: Database, other: CbcToStore) -> None:
    store(database, item())
    [stored] = store(database, other)
    assert stored.duplicate is False
    assert count(database, CbcResult) == 2


def test_nothing_to_store(database: Database) -> None:
    assert store(database) == []
    assert count(database, Patient) == 0


# -- delta checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "drop", "fall"),
    [
        pytest.param(100.0, True, 50.0, id="200→100: exactly 50 %, a drop"),
        pytest.param(101.0, False, 49.5, id="200→101: 49.5 %, no drop"),
    ],
)
def test_platelet_drop_boundary(database: Database, now: float, drop: bool, fall: float) -> None:
    store(database, item(day=0, platelets=200.0))
    [stored] = store(database, item(day=2, platelets=now, urgency="routine", findings=("thrombocytopenia",)))
    assert stored.delta["assessed"] is True
    assert stored.delta["platelet_fall_percent"] == pytest.approx(fall)
    assert stored.delta["platelet_drop"] is drop
    codes = [finding["code"] for finding in stored.delta_findings]
    assert ("platelet_drop" in codes) is drop
    with database.session() as session:
        interpretation = session.get(Interpretation, stored.interpretation_id)
        assert ("platelet_drop" in interpretation.findings) is drop
        assert interpretation.delta == stored.delta
        assert interpretation.answer["delta"] == stored.delta
        assert ("platelet_drop" in [f["code"] for f in interpretation.answer["findings"]]) is drop


def test_delta_findings_cite_their_sources(database: Database) -> None:
    rs = default_ruleset()
    store(database, item(day=0, platelets=200.0))
    [stored] = store(database, item(day=1, platelets=90.0, urgency="soon", findings=("thrombocytopenia",)))
    by_code = {finding["code"]: finding for finding in stored.delta_findings}
    assert set(by_code) == {"platelet_drop", "new_cytopenia"}
    assert by_code["platelet_drop"]["sources"] == [f"[S23] {rs.sources['S23']}", f"[S24] {rs.sources['S24']}"]
    assert f"[S24] {rs.sources['S24']}" in by_code["new_cytopenia"]["sources"]
    assert by_code["new_cytopenia"]["evidence"] == {"new": ["thrombocytopenia"]}


@pytest.mark.parametrize(
    ("days", "window_days", "assessed"),
    [
        pytest.param(8, 7, False, id="8 days earlier, 7-day window: not assessed"),
        pytest.param(8, 10, True, id="8 days earlier, 10-day window"),
        pytest.param(6, 7, True, id="6 days earlier"),
    ],
)
def test_window(database: Database, days: int, window_days: int, assessed: bool) -> None:
    store(database, item(day=0, platelets=200.0), window=timedelta(days=window_days))
    [stored] = store(database, item(day=days, platelets=80.0), window=timedelta(days=window_days))
    assert stored.delta["assessed"] is assessed
    assert stored.delta["window_days"] == window_days
    assert bool(stored.delta_findings) is assessed


def test_a_cbc_without_collection_time_is_not_assessed(database: Database) -> None:
    store(database, item(day=0, platelets=200.0))
    [stored] = store(database, item(day=None, platelets=80.0))
    assert stored.delta["assessed"] is False and stored.delta_findings == []


def test_a_cytopenia_the_previous_cbc_could_not_assess_is_not_new(database: Database) -> None:
    store(database, item(day=0, not_assessed=("anemia",)))
    [stored] = store(database, item(day=1, urgency="soon", findings=("anemia",), hemoglobin=9.0))
    assert stored.delta["assessed"] is True and stored.delta["new_cytopenias"] == []
    store(database, item("P2", day=0))
    [decided] = store(database, item("P2", day=1, urgency="soon", findings=("anemia",), hemoglobin=9.0))
    assert decided.delta["new_cytopenias"] == ["anemia"]


@pytest.mark.parametrize(
    ("before", "now", "change"),
    [
        pytest.param("routine", "urgent", "escalated", id="escalated"),
        pytest.param("soon", "soon", "unchanged", id="unchanged"),
        pytest.param("immediate", "soon", "de-escalated", id="de-escalated"),
    ],
)
def test_urgency_change(database: Database, before: str, now: str, change: str) -> None:
    store(database, item(day=0, urgency=before))
    [stored] = store(database, item(day=1, platelets=240.0, urgency=now))
    assert stored.delta["urgency_change"] == change
    assert stored.delta["previous"]["urgency"] == before


def test_an_older_cbc_stored_later_is_compared_with_its_own_previous_one(database: Database) -> None:
    store(database, item(day=0, platelets=200.0), item(day=5, platelets=80.0, urgency="soon"))
    [late] = store(database, item(day=3, platelets=190.0))
    previous = late.delta["previous"]
    assert datetime.fromisoformat(previous["collected_at"]) == T0
    assert previous["platelets"] == 200.0
    assert late.delta["platelet_fall_percent"] == pytest.approx(5.0)
    assert late.delta["platelet_drop"] is False


def test_several_cbcs_of_one_patient_in_one_call_are_compared_in_time_order(database: Database) -> None:
    newest, oldest = store(database, item(day=2, platelets=80.0, urgency="soon"), item(day=0, platelets=200.0))
    assert oldest.delta["assessed"] is False
    assert datetime.fromisoformat(newest.delta["previous"]["collected_at"]) == T0
    assert newest.delta["platelet_fall_percent"] == pytest.approx(60.0) and newest.delta["platelet_drop"] is True


def test_a_duplicate_answers_with_the_delta_it_was_stored_with(database: Database) -> None:
    store(database, item(day=0, platelets=200.0))
    [first] = store(database, item(day=1, platelets=90.0, urgency="soon"))
    [again] = store(database, item(day=1, platelets=90.0, urgency="soon"))
    assert again.duplicate is True
    assert again.delta == first.delta
    assert [f["code"] for f in again.delta_findings] == [f["code"] for f in first.delta_findings]


# -- referrals -------------------------------------------------------------------------------


def test_a_routine_cbc_without_delta_opens_no_referral(database: Database) -> None:
    [stored] = store(database, item(day=0, platelets=250.0))
    assert stored.referral_id is None
    [later] = store(database, item(day=1, platelets=240.0))
    assert later.referral_id is None
    assert count(database, Referral) == 0


def test_a_non_routine_cbc_opens_a_new_referral(database: Database) -> None:
    [stored] = store(database, item(day=0, platelets=15.0, urgency="urgent", findings=URGENT))
    opened = referral(database, stored.referral_id)
    assert opened.status == "new"
    assert (opened.urgency, opened.urgency_rank) == ("urgent", 2)
    assert opened.interpretation_id == stored.interpretation_id
    assert opened.findings == list(URGENT)
    assert as_utc(opened.collected_at) == T0


def test_a_delta_finding_alone_opens_a_referral(database: Database) -> None:
    store(database, item(day=0, platelets=300.0))
    [stored] = store(database, item(day=3, platelets=140.0, urgency="routine", findings=("thrombocytopenia",)))
    assert stored.referral_id is not None
    opened = referral(database, stored.referral_id)
    assert opened.status == "new" and opened.urgency == "routine"
    assert "platelet_drop" in opened.findings


def test_a_later_equally_urgent_cbc_updates_the_open_referral(database: Database) -> None:
    [first] = store(database, item(day=0, platelets=15.0, urgency="urgent", findings=URGENT))
    [later] = store(database, item(day=2, platelets=12.0, urgency="urgent", findings=URGENT))
    assert later.referral_id == first.referral_id
    updated = referral(database, first.referral_id)
    assert updated.status == "new"
    assert updated.interpretation_id == later.interpretation_id
    assert updated.urgency == "urgent" and as_utc(updated.collected_at) == T0 + timedelta(days=2)
    assert count(database, Referral) == 1


def test_a_later_less_urgent_cbc_joins_the_open_referral_without_lowering_it(database: Database) -> None:
    [first] = store(database, item(day=0, platelets=15.0, urgency="urgent", findings=URGENT))
    [later] = store(database, item(day=2, platelets=90.0, urgency="soon", findings=("thrombocytopenia",)))
    assert later.referral_id == first.referral_id
    kept = referral(database, first.referral_id)
    assert kept.interpretation_id == first.interpretation_id
    assert kept.urgency == "urgent" and as_utc(kept.collected_at) == T0
    assert count(database, Referral) == 1


def test_an_older_more_urgent_cbc_arriving_late_escalates_the_referral(database: Database) -> None:
    [newer] = store(database, item(day=5, platelets=90.0, urgency="soon", findings=("thrombocytopenia",)))
    [older] = store(database, item(day=3, platelets=15.0, urgency="urgent", findings=URGENT))
    assert older.referral_id == newer.referral_id
    escalated = referral(database, newer.referral_id)
    assert (escalated.urgency, escalated.urgency_rank) == ("urgent", 2)
    assert escalated.interpretation_id == older.interpretation_id
    assert as_utc(escalated.collected_at) == T0 + timedelta(days=3)


def test_an_acknowledged_referral_is_still_the_open_one(database: Database) -> None:
    [first] = store(database, item(day=0, platelets=15.0, urgency="urgent", findings=URGENT))
    close(database, first.referral_id, "acknowledged")
    [later] = store(database, item(day=1, platelets=12.0, urgency="urgent", findings=URGENT))
    assert later.referral_id == first.referral_id
    assert referral(database, first.referral_id).status == "acknowledged"
    assert count(database, Referral) == 1


@pytest.mark.parametrize("closed", ["dismissed", "referred"])
def test_after_the_referral_is_closed_a_new_urgent_cbc_opens_a_new_one(database: Database, closed: str) -> None:
    [first] = store(database, item(day=0, platelets=15.0, urgency="urgent", findings=URGENT))
    close(database, first.referral_id, closed)
    [later] = store(database, item(day=1, platelets=12.0, urgency="urgent", findings=URGENT))
    assert later.referral_id is not None and later.referral_id != first.referral_id
    assert referral(database, later.referral_id).status == "new"
    assert referral(database, first.referral_id).status == closed
    assert referral(database, first.referral_id).interpretation_id == first.interpretation_id
    assert count(database, Referral) == 2
    assert count(database, Referral, Referral.status.in_(("new", "acknowledged"))) == 1


def test_an_older_cbc_arriving_late_does_not_replace_the_newer_one_in_the_referral(database: Database) -> None:
    [newer] = store(database, item(day=5, platelets=15.0, urgency="urgent", findings=URGENT))
    [older] = store(database, item(day=3, platelets=90.0, urgency="soon", findings=("thrombocytopenia",)))
    assert older.referral_id == newer.referral_id
    kept = referral(database, newer.referral_id)
    assert kept.interpretation_id == newer.interpretation_id
    assert as_utc(kept.collected_at) == T0 + timedelta(days=5)


def test_several_non_routine_cbcs_of_one_patient_in_one_call_share_one_referral(database: Database) -> None:
    first, later = store(
        database,
        item(day=0, platelets=15.0, urgency="urgent", findings=URGENT),
        item(day=1, platelets=90.0, urgency="soon", findings=("thrombocytopenia",)),
    )
    assert first.referral_id == later.referral_id
    assert referral(database, first.referral_id).interpretation_id == first.interpretation_id  # the more urgent
    assert count(database, Referral) == 1


def test_each_patient_has_their_own_referral(database: Database) -> None:
    a, b = store(
        database,
        item("A", platelets=15.0, urgency="urgent", findings=URGENT),
        item("B", platelets=15.0, urgency="urgent", findings=URGENT),
    )
    assert a.referral_id != b.referral_id
    assert count(database, Referral) == 2


# -- concurrency -----------------------------------------------------------------------------


def _in_thread(target) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = target()
        except Exception as error:  # recorded for the assertion in the main thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _while_first_is_uncommitted(database: Database, first: list[CbcToStore], second) -> dict[str, Any]:
    """Store `first` in one session and, before it commits, run `second` in another thread; commit after 0.5 s."""
    with database.session() as session:
        store_cbcs(session, first, source="json", rs=default_ruleset(), window=WEEK)
        thread, outcome = _in_thread(second)
        time.sleep(0.5)  # the second transaction reaches the unique constraint and waits for this one
    thread.join(60)
    assert not thread.is_alive()
    return outcome


def test_two_requests_storing_the_same_result_at_once_keep_one_row(database: Database) -> None:
    keep = keep_in(database, default_ruleset(), 7)
    outcome = _while_first_is_uncommitted(database, [item()], lambda: keep([item()]))
    assert "error" not in outcome, repr(outcome.get("error"))
    [stored] = outcome["result"]
    assert stored.duplicate is True
    assert count(database, CbcResult) == 1 and count(database, Patient) == 1


def test_two_sessions_storing_the_same_result_at_once_keep_one_row(database: Database) -> None:
    """store_cbcs itself does not absorb the race: the losing transaction fails on the unique constraint
    (IntegrityError) and keep_in runs it again. Either way the database keeps one row."""

    def second() -> list[StoredCbc]:
        return store(database, item())

    outcome = _while_first_is_uncommitted(database, [item()], second)
    if "error" in outcome:
        assert isinstance(outcome["error"], IntegrityError), repr(outcome["error"])
    else:
        assert outcome["result"][0].duplicate is True
    assert count(database, CbcResult) == 1 and count(database, Patient) == 1


def test_two_requests_opening_a_referral_at_once_leave_one_open(database: Database) -> None:
    store(database, item(day=0))  # the patient exists; no referral yet
    keep = keep_in(database, default_ruleset(), 7)
    outcome = _while_first_is_uncommitted(
        database,
        [item(day=1, platelets=15.0, urgency="urgent", findings=URGENT)],
        lambda: keep([item(day=2, platelets=12.0, urgency="urgent", findings=URGENT)]),
    )
    assert "error" not in outcome, repr(outcome.get("error"))
    assert count(database, CbcResult) == 3
    assert count(database, Referral) == 1
    [stored] = outcome["result"]
    assert referral(database, stored.referral_id).interpretation_id == stored.interpretation_id


# -- ids and pages beyond what the database can hold (found by schemathesis, issue 6) -----------------


@pytest.mark.parametrize("referral_id", [0, -1, 2**31, 2**63, 537962847466487545856])
def test_an_id_beyond_the_integer_column_is_not_found_rather_than_a_database_error(
    database: Database, referral_id: int
) -> None:
    [stored] = store(database, item(platelets=15.0, urgency="urgent", findings=URGENT))
    assert stored.referral_id is not None
    with database.session() as session:
        with pytest.raises(ReferralNotFound):
            get_referral(session, referral_id)
        with pytest.raises(ReferralNotFound):
            lock_referral(session, referral_id)
        with pytest.raises(ReferralNotFound):
            change_referral(session, referral_id, "acknowledged", actor="fuzz")
        assert get_referral(session, stored.referral_id).status == "new"


@pytest.mark.parametrize("page", [2, 10**6, 839877248606071040, 10**30])
def test_a_page_past_the_last_is_empty_whatever_its_number(database: Database, page: int) -> None:
    store(database, item(platelets=15.0, urgency="urgent", findings=URGENT))
    with database.session() as session:
        assert [r.status for r in worklist(session, WorklistQuery(page=1))[0]] == ["new"]
        assert worklist(session, WorklistQuery(page=page, per_page=200)) == ([], 1)


def test_lists_of_values_are_one_array_parameter_on_postgresql_and_bound_values_on_sqlite() -> None:
    """A batch chunk looks up thousands of patients at once: on PostgreSQL as `= ANY(array)`, one parameter (psycopg
    parses every placeholder of a statement in Python); SQLite has no arrays and takes an IN list."""
    from sqlalchemy.dialects import postgresql, sqlite

    from labservice.store import repository

    for lookups, dialect, expected in (
        (repository._LOOKUPS["postgresql"], postgresql.dialect(), "= ANY (%(ids)s::INTEGER[])"),
        (repository._LOOKUPS["sqlite"], sqlite.dialect(), "IN (__[POSTCOMPILE_ids])"),
    ):
        for statement in (lookups.kept, lookups.prints_of_patients, lookups.history, lookups.open_referrals):
            assert expected in str(statement.compile(dialect=dialect))
