"""A patient's results for trends (GET /api/v1/patients/{id}/results), on SQLite and PostgreSQL.

Expected values by hand from clinical-rules.md: 200 000 /uL is 200 x10^9/L and 135 g/L is 13.5 g/dL (§1);
platelets 200 then 80 two days later is a fall of (200 - 80) / 200 = 60 % ≥ the 50 % of thresholds.csv
platelet_drop (S23) → platelet_drop; thrombocytopenia (< 150, §4) is new since the previous CBC decided it
absent → new_cytopenia; 80 < 100 → `soon` where the previous CBC was `routine` (§9) → escalated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.api.helpers import assert_problem
from tests.api.test_referrals import cbc, post
from tests.credentials import CREDENTIALS

URL = "/api/v1/patients/{}/results"
CANONICAL_UNITS = {
    "platelets": "10*9/L",
    "wbc": "10*9/L",
    "neutrophils": "10*9/L",
    "lymphocytes": "10*9/L",
    "hemoglobin": "g/dL",
    "hematocrit": "%",
    "rbc": "10*12/L",
    "mcv": "fL",
    "reticulocytes": "10*9/L",
}


@pytest.fixture
def client(make_app, database_url):
    return make_app(DATABASE_URL=database_url).test_client()


def history(client, patient: str) -> dict[str, Any]:
    response = client.get(URL.format(patient))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@pytest.fixture
def trend(client) -> list[dict[str, Any]]:
    """P-TREND's CBCs posted one by one, the earliest (20 October) last; their answers in posting order."""
    first = cbc("P-TREND", "2026-11-01T08:00:00Z", 0)
    first["results"] = {
        "platelets": {"value": 200000, "unit": "/uL"},
        "hemoglobin": {"value": 135, "unit": "g/L"},
        "wbc": 6.0,
        "neutrophils": 3.0,
    }
    docs = [first, cbc("P-TREND", "2026-11-03T08:00:00Z", 80), cbc("P-TREND", "2026-10-20T08:00:00Z", 250)]
    return [post(client, doc)[0] for doc in docs]


def test_results_oldest_first_with_canonical_values_and_units(client, trend):
    body = history(client, "P-TREND")
    assert body["patient"] == {"id": "P-TREND", "sex": "female", "age_years": 40.0}
    results = body["results"]
    assert [at(r["collected_at"]) for r in results] == [
        datetime(2026, 10, 20, 8, tzinfo=UTC),
        datetime(2026, 11, 1, 8, tzinfo=UTC),
        datetime(2026, 11, 3, 8, tzinfo=UTC),
    ]
    assert [r["values"]["platelets"] for r in results] == [250.0, 200.0, 80.0]
    assert results[1]["values"] == {
        "platelets": 200.0,
        "wbc": 6.0,
        "neutrophils": 3.0,
        "lymphocytes": None,
        "hemoglobin": 13.5,
        "hematocrit": None,
        "rbc": None,
        "mcv": None,
        "reticulocytes": None,
    }
    assert all(r["units"] == CANONICAL_UNITS for r in results)
    assert [r["urgency"] for r in results] == ["routine", "routine", "soon"]
    assert all(r["source"] == "json" for r in results)


def test_results_point_at_their_stored_interpretation(client, trend):
    results = history(client, "P-TREND")["results"]
    by_time = [trend[2], trend[0], trend[1]]  # posting order -> collection order
    assert [r["cbc_id"] for r in results] == [a["stored"]["cbc_id"] for a in by_time]
    assert [r["interpretation_id"] for r in results] == [a["stored"]["interpretation_id"] for a in by_time]
    version = client.get("/healthz").get_json()["ruleset_version"]
    assert all(r["ruleset_version"] == version for r in results)


def test_a_platelet_fall_within_the_window_has_its_delta(client, trend):
    fall = history(client, "P-TREND")["results"][2]
    assert {"thrombocytopenia", "platelet_drop", "new_cytopenia"} <= set(fall["findings"])
    delta = fall["delta"]
    assert delta["assessed"] is True and delta["window_days"] == 7
    assert delta["previous"]["platelets"] == 200.0
    assert at(delta["previous"]["collected_at"]) == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert delta["platelet_fall_percent"] == 60.0 and delta["platelet_drop"] is True
    assert delta["new_cytopenias"] == ["thrombocytopenia"]
    assert delta["urgency_change"] == "escalated"


def test_a_cbc_with_nothing_to_compare_has_an_unassessed_delta(client, trend):
    oldest, first, _ = history(client, "P-TREND")["results"]
    # 1 November: nothing stored before it when it came; 20 October came last but nothing precedes it.
    assert first["delta"]["assessed"] is False and "platelet_drop" not in first["findings"]
    assert oldest["delta"]["assessed"] is False


def test_a_fall_outside_the_window_is_not_a_platelet_drop(client):
    post(client, cbc("P-SLOW", "2026-11-01T08:00:00Z", 200))
    post(client, cbc("P-SLOW", "2026-11-10T08:00:00Z", 80))  # 9 days later: outside the 7-day window
    later = history(client, "P-SLOW")["results"][1]
    assert later["delta"]["assessed"] is False
    assert "platelet_drop" not in later["findings"] and "thrombocytopenia" in later["findings"]


def test_the_patients_referrals_come_with_the_results(client, trend):
    referral_id = trend[1]["stored"]["referral_id"]
    assert referral_id is not None
    assert trend[0]["stored"]["referral_id"] is None
    assert trend[2]["stored"]["referral_id"] == referral_id  # stored while it is open: joins it, routine
    client.patch(f"/api/v1/referrals/{referral_id}", json={"status": "acknowledged", "actor": "dr.smith"})
    referrals = history(client, "P-TREND")["referrals"]
    key_name = client.application.extensions[CREDENTIALS].key_name
    assert [(r["id"], r["status"], r["status_by"], r["urgency"]) for r in referrals] == [
        (referral_id, "acknowledged", f"api_key:{key_name}", "soon")
    ]  # the key, not the sent name
    assert referrals[0]["status_on_behalf_of"] == "dr.smith"
    assert referrals[0]["links"]["patient"] == URL.format("P-TREND")


def test_referrals_newest_first(client):
    first = post(client, cbc("P-TWICE", "2026-11-01T08:00:00Z", 15))[0]["stored"]["referral_id"]
    client.patch(f"/api/v1/referrals/{first}", json={"status": "dismissed", "reason": "already_managed"})
    second = post(client, cbc("P-TWICE", "2026-11-20T08:00:00Z", 12))[0]["stored"]["referral_id"]
    assert [(r["id"], r["status"]) for r in history(client, "P-TWICE")["referrals"]] == [
        (second, "new"),
        (first, "dismissed"),
    ]


def test_a_cbc_without_collection_time_comes_last(client):
    post(client, cbc("P-UNTIMED", None, 250))
    post(client, cbc("P-UNTIMED", "2026-11-01T08:00:00Z", 240))
    results = history(client, "P-UNTIMED")["results"]
    assert [(at(r["collected_at"]), r["values"]["platelets"]) for r in results] == [
        (datetime(2026, 11, 1, 8, tzinfo=UTC), 240.0),
        (None, 250.0),
    ]


def test_the_same_cbc_posted_twice_is_one_result(client):
    doc = cbc("P-AGAIN", "2026-11-01T08:00:00Z", 250)
    post(client, doc)
    post(client, doc)
    assert len(history(client, "P-AGAIN")["results"]) == 1


def test_a_patient_with_only_routine_cbcs_has_results_and_no_referrals(client):
    post(client, cbc("P-NORMAL", "2026-11-01T08:00:00Z", 250))
    body = history(client, "P-NORMAL")
    assert [r["urgency"] for r in body["results"]] == ["routine"] and body["referrals"] == []


def test_an_id_with_a_slash_and_the_worklist_link_to_it(client):
    post(client, cbc("WARD/7 0001", "2026-11-01T08:00:00Z", 15))
    item = client.get("/api/v1/referrals").get_json()["items"][0]
    link = item["links"]["patient"]
    response = client.get(link)
    assert response.status_code == 200, link
    assert response.get_json()["patient"]["id"] == "WARD/7 0001"


def test_an_unknown_patient_is_404(client):
    post(client, cbc("P-KNOWN", "2026-11-01T08:00:00Z", 250))
    assert "P-UNKNOWN" in assert_problem(client.get(URL.format("P-UNKNOWN")), 404)["detail"]


def test_a_cbc_posted_with_store_false_is_not_in_the_history(client):
    response = client.post("/api/v1/interpretations?store=false", json=cbc("P-NOSTORE", "2026-11-01T08:00:00Z", 15))
    assert response.status_code == 200
    assert_problem(client.get(URL.format("P-NOSTORE")), 404)
