"""POST /api/v1/interpretations keeps CBCs with a patient id, on SQLite and PostgreSQL.

Expected values by hand from the issue, clinical-rules.md and the rule tables, for an adult woman with
Hb 13.5 g/dL, WBC 6.0 and neutrophils 3.0 (inside the §2 fallback ranges):
- platelets 250 or 200: normal → `routine`; 100 and 101: thrombocytopenia (< 150, §4) but not < 100 →
  `routine`; 90: thrombocytopenia < 100 → `soon` (§9); 15: below the critical 20 (§3), a new critical value →
  `immediate` (§9; v2 changes the v1 `urgent`: clinical-rules.md §3 lines 99-105, §9 line 243);
- Hb 9.0 g/dL: anaemia (woman < 12.0, §4), moderate (8.0–10.9) → `soon` (§9);
- platelet_drop (thresholds.csv): a fall of 50 % or more from the previous CBC within the delta window
  (7 days by default, LABSERVICE_DELTA_WINDOW_DAYS), sources S23 and S24 of sources.csv: 200 → 100 is
  exactly 50 % (a drop), 200 → 101 is 49.5 % (not one);
- new_cytopenia: a cytopenia present now that the previous CBC had decided absent; not one the previous
  CBC could not assess (its analyte missing);
- a non-routine CBC or a delta finding opens a referral (status new); a later CBC of the same patient
  joins the open one, which keeps the highest urgency of its CBCs; once dismissed, a new urgent
  CBC opens a new one; a routine CBC without delta finding opens none;
- a result is stored once per patient, collection time and values; ?store=false stores nothing; a CBC
  without a patient id is never stored and its answer has no `stored` block.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from labservice.store.database import Database
from labservice.store.models import CbcResult, Interpretation, Patient, Referral
from labservice.store.repository import as_utc, change_referral

URL = "/api/v1/interpretations"
SOURCES = Path(__file__).resolve().parents[2] / "reference_ranges" / "sources.csv"


def cbc(patient: str | None, collected_at: str | None, platelets: float, **results: float) -> dict[str, Any]:
    """An adult woman's CBC, normal apart from the platelets unless `results` says otherwise."""
    doc: dict[str, Any] = {"results": {"platelets": platelets, "hemoglobin": 13.5, "wbc": 6.0, "neutrophils": 3.0}}
    doc["results"].update(results)
    doc["patient"] = (
        {"sex": "female", "age_years": 40} if patient is None else {"id": patient, "sex": "female", "age_years": 40}
    )
    if collected_at is not None:
        doc["collected_at"] = collected_at
    return doc


def day(n: int, hour: int = 8) -> str:
    return f"2026-11-{n:02d}T{hour:02d}:00:00Z"


def post(client, body: Any, query: str = "") -> Any:
    response = client.post(f"{URL}{query}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def codes(answer: dict[str, Any]) -> list[str]:
    return [finding["code"] for finding in answer["findings"]]


def finding(answer: dict[str, Any], code: str) -> dict[str, Any]:
    return next(f for f in answer["findings"] if f["code"] == code)


def citation(tag: str) -> str:
    with SOURCES.open(newline="", encoding="utf-8") as handle:
        return next(row["citation"] for row in csv.DictReader(handle) if row["tag"] == tag)


@pytest.fixture
def database(database_url: str):
    database = Database.connect(database_url)
    yield database
    database.engine.dispose()


@pytest.fixture
def client(make_app, database_url: str):
    return make_app(DATABASE_URL=database_url).test_client()


def count(database: Database, model: type, *where: Any) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def counts(database: Database) -> tuple[int, int, int, int]:
    return tuple(count(database, model) for model in (Patient, CbcResult, Interpretation, Referral))


# -- stored or not ---------------------------------------------------------------------------


def test_a_cbc_with_a_patient_id_is_stored(client, database) -> None:
    body = cbc("P1", day(1), 250)
    answer = post(client, body)
    stored = answer["stored"]
    assert isinstance(stored["cbc_id"], int) and isinstance(stored["interpretation_id"], int)
    assert stored["duplicate"] is False and stored["referral_id"] is None
    assert answer["delta"]["assessed"] is False
    assert counts(database) == (1, 1, 1, 0)
    with database.session() as session:
        row = session.get(CbcResult, stored["cbc_id"])
        assert row.raw == body  # the JSON as sent
        assert row.platelets == 250.0 and row.hemoglobin == 13.5
        assert as_utc(row.collected_at) == datetime(2026, 11, 1, 8, tzinfo=UTC)
        assert row.patient.external_id == "P1"
        interpretation = session.get(Interpretation, stored["interpretation_id"])
        assert interpretation.urgency == "routine" == answer["urgency"]
        assert interpretation.answer["urgency"] == answer["urgency"]
        assert [f["code"] for f in interpretation.answer["findings"]] == codes(answer)


@pytest.mark.parametrize("value", ["false", "False", "0", "no"])
def test_store_false_does_not_store(client, database, value: str) -> None:
    answer = post(client, cbc("P1", day(1), 15), f"?store={value}")
    assert "stored" not in answer
    # still interpreted; a new critical value (clinical-rules.md §3 lines 99-105 and §9 line 243, *v2*; v1: urgent)
    assert answer["urgency"] == "immediate"
    assert counts(database) == (0, 0, 0, 0)


def test_store_false_applies_to_every_cbc_of_an_array(client, database) -> None:
    answers = post(client, [cbc("P1", day(1), 200), cbc("P1", day(2), 80)], "?store=false")
    assert all("stored" not in answer for answer in answers)
    assert counts(database) == (0, 0, 0, 0)


def test_the_same_result_posted_twice_is_stored_once(client, database) -> None:
    first = post(client, cbc("P1", day(1), 15))
    again = post(client, cbc("P1", day(1), 15))
    assert first["stored"]["duplicate"] is False and again["stored"]["duplicate"] is True
    assert again["stored"]["cbc_id"] == first["stored"]["cbc_id"]
    assert again["stored"]["interpretation_id"] == first["stored"]["interpretation_id"]
    assert counts(database) == (1, 1, 1, 1)


def test_the_same_result_twice_in_one_array_is_stored_once(client, database) -> None:
    first, again = post(client, [cbc("P1", day(1), 250), cbc("P1", day(1), 250)])
    assert again["stored"]["duplicate"] is True and again["stored"]["cbc_id"] == first["stored"]["cbc_id"]
    assert count(database, CbcResult) == 1


def test_the_same_result_in_another_unit_and_time_zone_is_stored_once(client, database) -> None:
    post(client, cbc("P1", day(1), 250))
    other = cbc("P1", "2026-11-01T09:00:00+01:00", 250)  # the same instant
    other["results"]["hemoglobin"] = {"value": 135, "unit": "g/L"}  # 13.5 g/dL
    again = post(client, other)
    assert again["stored"]["duplicate"] is True
    assert count(database, CbcResult) == 1


def test_the_same_values_at_another_collection_time_are_another_row(client, database) -> None:
    first = post(client, cbc("P1", day(1), 250))
    later = post(client, cbc("P1", day(2), 250))
    assert later["stored"]["duplicate"] is False
    assert later["stored"]["cbc_id"] != first["stored"]["cbc_id"]
    assert counts(database) == (1, 2, 2, 0)


@pytest.mark.parametrize(
    "patient",
    [
        pytest.param(None, id="patient without id"),
        pytest.param("missing", id="no patient object"),
    ],
)
def test_a_cbc_without_a_patient_id_is_not_stored(client, database, patient: str | None) -> None:
    body = cbc(None, day(1), 15)
    if patient == "missing":
        del body["patient"]
    answer = post(client, body)
    assert "stored" not in answer
    # no patient id: history is not consulted, the critical value is new
    # (clinical-rules.md §3 lines 99-105 and §9 line 243, *v2*; v1: urgent)
    assert answer["urgency"] == "immediate"
    assert counts(database) == (0, 0, 0, 0)


def test_in_an_array_only_the_cbcs_with_a_patient_id_are_stored(client, database) -> None:
    with_id, without = post(client, [cbc("P1", day(1), 250), cbc(None, day(1), 250)])
    assert "stored" in with_id and "stored" not in without
    assert counts(database) == (1, 1, 1, 0)


# -- delta checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "drop", "fall"),
    [
        pytest.param(100, True, 50.0, id="200→100: exactly 50 %, platelet_drop"),
        pytest.param(101, False, 49.5, id="200→101: 49.5 %, no platelet_drop"),
    ],
)
def test_platelet_drop_boundary(client, now: float, drop: bool, fall: float) -> None:
    post(client, cbc("P1", day(1), 200))
    answer = post(client, cbc("P1", day(3), now))
    delta = answer["delta"]
    assert delta["assessed"] is True and delta["window_days"] == 7
    assert delta["previous"]["platelets"] == 200
    assert datetime.fromisoformat(delta["previous"]["collected_at"]) == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert delta["platelet_fall_percent"] == pytest.approx(fall)
    assert delta["platelet_drop"] is drop
    assert ("platelet_drop" in codes(answer)) is drop
    # Both counts are thrombocytopenia (< 150) and 200 was not: new either way.
    assert delta["new_cytopenias"] == ["thrombocytopenia"]
    assert "new_cytopenia" in codes(answer)


def test_each_delta_finding_cites_its_sources(client) -> None:
    post(client, cbc("P1", day(1), 200))
    answer = post(client, cbc("P1", day(2), 90))
    drop, new = finding(answer, "platelet_drop"), finding(answer, "new_cytopenia")
    for tag in ("S23", "S24"):
        assert any(citation(tag) in source for source in drop["sources"]), (tag, drop["sources"])
    assert any(citation("S24") in source for source in new["sources"]), new["sources"]
    assert drop["evidence"]["previous_platelets"] == 200 and drop["evidence"]["platelets"] == 90
    assert drop["evidence"]["fall_percent"] == pytest.approx(55.0)
    assert all(any(citation(tag) in source for source in answer["delta"]["sources"]) for tag in ("S23", "S24"))


def test_a_previous_cbc_8_days_earlier_is_not_assessed(client) -> None:
    post(client, cbc("P1", day(1), 200))
    answer = post(client, cbc("P1", day(9), 80))
    assert answer["delta"]["assessed"] is False
    assert "platelet_drop" not in codes(answer) and "new_cytopenia" not in codes(answer)


def test_the_window_is_configurable(make_app, database_url) -> None:
    client = make_app(DATABASE_URL=database_url, DELTA_WINDOW_DAYS=10).test_client()
    post(client, cbc("P1", day(1), 200))
    answer = post(client, cbc("P1", day(9), 80))
    assert answer["delta"]["assessed"] is True and answer["delta"]["window_days"] == 10
    assert "platelet_drop" in codes(answer)


def test_the_window_comes_from_labservice_delta_window_days(make_app, database_url, monkeypatch) -> None:
    monkeypatch.setenv("LABSERVICE_DELTA_WINDOW_DAYS", "10")
    client = make_app(DATABASE_URL=database_url).test_client()
    post(client, cbc("P1", day(1), 200))
    answer = post(client, cbc("P1", day(9), 80))
    assert answer["delta"]["assessed"] is True and answer["delta"]["window_days"] == 10


def test_a_cbc_without_collection_time_is_not_assessed(client) -> None:
    post(client, cbc("P1", day(1), 200))
    answer = post(client, cbc("P1", None, 80))
    assert answer["stored"]["duplicate"] is False
    assert answer["delta"]["assessed"] is False
    assert "platelet_drop" not in codes(answer)


#: analyte missing on the previous CBC -> (the results now, the cytopenia they show); §4 adult woman limits.
LOW = {
    "platelets": ({"platelets": 90}, "thrombocytopenia"),  # < 150
    "hemoglobin": ({"hemoglobin": 9.0}, "anemia"),  # < 12.0
    "wbc": ({"wbc": 3.5, "neutrophils": 2.0, "lymphocytes": 1.2}, "leukopenia"),  # < 4.0
    "neutrophils": ({"neutrophils": 0.9}, "neutropenia"),  # < 1.5
    "lymphocytes": ({"lymphocytes": 0.6}, "lymphopenia"),  # < 1.0
}


@pytest.mark.parametrize("analyte", list(LOW))
@pytest.mark.parametrize(
    "decided_before",
    [
        pytest.param(True, id="decided absent before: new"),
        pytest.param(False, id="not assessed before (analyte missing): not new"),
    ],
)
def test_new_cytopenia(client, analyte: str, decided_before: bool) -> None:
    before = cbc("P1", day(1), 250, lymphocytes=2.0)
    if not decided_before:
        del before["results"][analyte]
    first = post(client, before)
    results, cytopenia = LOW[analyte]
    assert (cytopenia in [entry["code"] for entry in first["not_assessed"]]) is not decided_before
    now = cbc("P1", day(2), 250, lymphocytes=2.0)
    now["results"].update(results)
    answer = post(client, now)
    assert cytopenia in codes(answer)
    assert answer["delta"]["assessed"] is True
    if decided_before:
        assert answer["delta"]["new_cytopenias"] == [cytopenia]
        assert finding(answer, "new_cytopenia")["evidence"]["new"] == [cytopenia]
    else:
        assert answer["delta"]["new_cytopenias"] == []
        assert "new_cytopenia" not in codes(answer)


@pytest.mark.parametrize(
    ("before", "now", "change"),
    [
        pytest.param(250, 90, "escalated", id="routine → soon: escalated"),
        pytest.param(90, 85, "unchanged", id="soon → soon: unchanged"),
        pytest.param(15, 90, "de-escalated", id="urgent → soon: de-escalated"),
    ],
)
def test_urgency_change(client, before: float, now: float, change: str) -> None:
    post(client, cbc("P1", day(1), before))
    answer = post(client, cbc("P1", day(2), now))
    assert answer["delta"]["urgency_change"] == change


def test_an_older_cbc_posted_later_is_compared_with_its_own_previous_cbc(client) -> None:
    post(client, cbc("P1", day(1), 200))
    post(client, cbc("P1", day(6), 80))
    late = post(client, cbc("P1", day(4), 190))
    previous = late["delta"]["previous"]
    assert datetime.fromisoformat(previous["collected_at"]) == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert previous["platelets"] == 200
    assert late["delta"]["platelet_fall_percent"] == pytest.approx(5.0)
    assert "platelet_drop" not in codes(late)


def test_several_cbcs_of_one_patient_in_one_array_are_compared_in_time_order(client) -> None:
    # Newest first in the array: day 5 (80), day 1 (200), day 3 (150).
    newest, oldest, middle = post(client, [cbc("P1", day(5), 80), cbc("P1", day(1), 200), cbc("P1", day(3), 150)])
    assert oldest["delta"]["assessed"] is False
    assert middle["delta"]["previous"]["platelets"] == 200
    assert middle["delta"]["platelet_fall_percent"] == pytest.approx(25.0)
    assert newest["delta"]["previous"]["platelets"] == 150
    assert newest["delta"]["platelet_fall_percent"] == pytest.approx(46.7)
    assert "platelet_drop" not in codes(newest)  # 46.7 % from the day-3 CBC, not 60 % from day 1
    assert newest["delta"]["urgency_change"] == "escalated"  # routine (150) → soon (80)


def test_patients_in_one_array_are_compared_only_with_themselves(client) -> None:
    a1, b1, a2 = post(client, [cbc("A", day(1), 200), cbc("B", day(2), 300), cbc("A", day(3), 90)])
    assert a1["delta"]["assessed"] is False and b1["delta"]["assessed"] is False
    assert a2["delta"]["previous"]["platelets"] == 200 and "platelet_drop" in codes(a2)


# -- referrals -------------------------------------------------------------------------------


def test_a_routine_cbc_without_delta_opens_no_referral(client, database) -> None:
    first = post(client, cbc("P1", day(1), 250))
    later = post(client, cbc("P1", day(2), 240))
    assert first["stored"]["referral_id"] is None and later["stored"]["referral_id"] is None
    assert count(database, Referral) == 0


def test_a_non_routine_interpretation_opens_a_referral(client, database) -> None:
    answer = post(client, cbc("P1", day(1), 15))
    # the patient's first CBC: a new critical value (clinical-rules.md §3 lines 99-105, §9 line 243, *v2*; v1: urgent)
    assert answer["urgency"] == "immediate"
    with database.session() as session:
        referral = session.get(Referral, answer["stored"]["referral_id"])
        assert referral.status == "new" and referral.urgency == "immediate"
        assert referral.interpretation_id == answer["stored"]["interpretation_id"]
        assert "critical_value" in referral.findings


def test_a_delta_finding_opens_a_referral_for_a_routine_cbc(client, database) -> None:
    post(client, cbc("P1", day(1), 200))
    answer = post(client, cbc("P1", day(3), 100))
    assert answer["urgency"] == "routine" and "platelet_drop" in codes(answer)
    with database.session() as session:
        referral = session.get(Referral, answer["stored"]["referral_id"])
        assert referral.status == "new" and "platelet_drop" in referral.findings


def test_a_later_more_urgent_cbc_of_the_same_patient_updates_the_open_referral(client, database) -> None:
    first = post(client, cbc("P1", day(1), 90))
    later = post(client, cbc("P1", day(2), 15))
    assert later["stored"]["referral_id"] == first["stored"]["referral_id"]
    with database.session() as session:
        referral = session.get(Referral, first["stored"]["referral_id"])
        assert referral.interpretation_id == later["stored"]["interpretation_id"]
        # 90 (soon) then 15: no critical value in the previous CBC, so a new one
        # (clinical-rules.md §3 lines 99-105 and §9 line 243, *v2*; v1: urgent)
        assert referral.urgency == "immediate" and referral.status == "new"
    assert count(database, Referral) == 1


def test_a_later_routine_cbc_joins_the_open_referral_without_lowering_it(client, database) -> None:
    first = post(client, cbc("P1", day(1), 15))
    later = post(client, cbc("P1", day(2), 250))  # recovered: routine; 15 → 250 is a rise, no delta finding
    assert later["urgency"] == "routine" and later["delta"]["platelet_drop"] is False
    assert later["stored"]["referral_id"] == first["stored"]["referral_id"]
    with database.session() as session:
        referral = session.get(Referral, first["stored"]["referral_id"])
        assert referral.interpretation_id == first["stored"]["interpretation_id"]
        # the first CBC's new critical value (clinical-rules.md §3 lines 99-105 and §9 line 243, *v2*; v1: urgent)
        assert referral.urgency == "immediate"
        assert as_utc(referral.collected_at) == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert count(database, Referral) == 1


def test_after_dismissal_a_new_urgent_cbc_opens_a_new_referral(client, database) -> None:
    first = post(client, cbc("P1", day(1), 15))
    with database.session() as session:
        change_referral(
            session,
            first["stored"]["referral_id"],
            "dismissed",
            actor="dr test",
            note="known ITP",
            reason="already_managed",
        )
    later = post(client, cbc("P1", day(2), 12))
    assert later["stored"]["referral_id"] not in (None, first["stored"]["referral_id"])
    with database.session() as session:
        assert session.get(Referral, later["stored"]["referral_id"]).status == "new"
        assert session.get(Referral, first["stored"]["referral_id"]).status == "dismissed"
    assert count(database, Referral) == 2
    assert count(database, Referral, Referral.status == "new") == 1


# -- bugs found by these tests, now fixed ----------------------------------------------------


def test_a_result_that_differs_only_in_rdw_and_mch_is_another_row(client, database) -> None:
    post(client, cbc("P1", day(1), 250, rdw=13.0, mch=30.0))
    other = post(client, cbc("P1", day(1), 250, rdw=18.5, mch=24.0))  # other values: not the same result
    assert other["stored"]["duplicate"] is False
    assert count(database, CbcResult) == 2


def test_a_non_routine_interpretation_of_already_stored_values_opens_a_referral(client, database) -> None:
    first = post(client, cbc("P1", day(1), 250))
    assert first["urgency"] == "routine" and first["stored"]["referral_id"] is None
    body = cbc("P1", day(1), 250)
    body["skin"] = {"fever": True, "lesions": [{"type": "petechiae", "blanching": False}]}  # §7 red flag
    again = post(client, body)
    assert again["urgency"] == "immediate"
    assert again["stored"]["referral_id"] is not None
    assert count(database, Referral) == 1


def test_a_patient_id_with_a_nul_character_is_never_a_server_error(make_app, database_url) -> None:
    client = make_app(DATABASE_URL=database_url, TESTING=False).test_client()
    response = client.post(URL, json=cbc("P\x001", day(1), 250))
    assert response.status_code in (200, 422), response.get_data(as_text=True)


def test_a_patient_id_with_a_lone_surrogate_is_422(make_app, database_url) -> None:
    """JSON allows the escape "\\ud800", and json.loads of bytes passes the raw bytes ED A0 80 through as well, but
    a lone surrogate cannot be encoded as UTF-8 for the database: it was a 500 (found by the hostile corpus)."""
    client = make_app(DATABASE_URL=database_url, TESTING=False).test_client()
    for body in (
        b'{"patient": {"id": "P\\ud8001"}, "results": {"platelets": 250}}',
        b'{"patient": {"id": "P\xed\xa0\x801"}, "results": {"platelets": 250}}',
    ):
        response = client.post(URL, data=body, content_type="application/json")
        assert response.status_code == 422, response.get_data(as_text=True)
        assert "lone surrogates" in response.get_json()["errors"]["patient.id"][0]
