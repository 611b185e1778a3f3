"""A key without `read` learns nothing stored from an interpretation's answer.

Before, an interpret-only key posting a CBC for an existing patient got `delta.previous` (another caller's CBC:
its date, urgency and platelets) and `stored.duplicate` said whether that exact result was already held. Now,
without `read`, the answer has no `delta` block and its `stored` block says only that the result is kept: no
duplicate hint, no ids (a referral id would tell that the patient has an open referral). The delta findings
themselves stay: they describe this CBC. A key with `read` sees everything as before. The same holds on the
FHIR and HL7 v2 endpoints; CDS Hooks answers carry no stored data at all. SQLite and PostgreSQL.

Values (clinical-rules.md, adult woman, Hb 13.5, WBC 6.0, neutrophils 3.0): platelets 200 then 80 two days
later is a fall of 60 % (>= 50 %: platelet_drop, thresholds.csv).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from labservice.security.keys import create_key
from tests.adapters.cdshooks.build import hook_call, searchset, spec_example_observations
from tests.adapters.fhir.build import observation
from tests.adapters.hl7v2.samples import ER7, NHAPI_ORU, raw

INTERPRET = "/api/v1/interpretations"
#: What the answer's `stored` block says to a key without `read`.
KEPT_ONLY = {"kept": True}


def cbc(patient: str, collected_at: str, platelets: float) -> dict[str, Any]:
    return {
        "patient": {"id": patient, "sex": "female", "age_years": 40},
        "collected_at": collected_at,
        "results": {"platelets": platelets, "hemoglobin": 13.5, "wbc": 6.0, "neutrophils": 3.0},
    }


@pytest.fixture
def app(make_app, database_url):
    return make_app(DATABASE_URL=database_url)


def client_with(app, name: str, scopes: list[str]) -> FlaskClient:
    with app.extensions["labservice.database"].session() as session:
        token = create_key(session, name, scopes).token
    client = FlaskClient(app, app.response_class, use_cookies=False)
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


@pytest.fixture
def reader(app) -> FlaskClient:
    """Another caller, with `read`: the one whose CBCs are stored first."""
    return client_with(app, "ward-system", ["interpret", "read"])


@pytest.fixture
def interpret_only(app) -> FlaskClient:
    return client_with(app, "interpret-only", ["interpret"])


def post(client: FlaskClient, body: Any) -> Any:
    response = client.post(INTERPRET, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def assert_nothing_stored_shown(answer: dict[str, Any]) -> None:
    assert "delta" not in answer
    assert answer["stored"] == KEPT_ONLY
    text = json.dumps({key: value for key, value in answer.items() if key != "findings"})  # findings may stay
    assert "duplicate" not in text and "previous" not in text


# --- JSON ----------------------------------------------------------------------------------------------------


def test_without_read_the_answer_has_no_delta_block_and_no_ids(reader, interpret_only):
    post(reader, cbc("P1", "2026-11-01T08:00:00Z", 200))
    answer = post(interpret_only, cbc("P1", "2026-11-03T08:00:00Z", 80))
    assert_nothing_stored_shown(answer)
    assert "platelet_drop" in [finding["code"] for finding in answer["findings"]]  # describes this CBC


def test_without_read_a_duplicate_looks_like_a_new_result(reader, interpret_only):
    post(reader, cbc("P1", "2026-11-01T08:00:00Z", 200))
    again = post(interpret_only, cbc("P1", "2026-11-01T08:00:00Z", 200))  # the other caller's exact result
    fresh = post(interpret_only, cbc("P2", "2026-11-01T08:00:00Z", 200))  # never seen before
    assert again["stored"] == fresh["stored"] == KEPT_ONLY
    assert set(again) == set(fresh)
    assert_nothing_stored_shown(again)


def test_without_read_an_open_referral_is_not_revealed(reader, interpret_only):
    post(reader, cbc("P1", "2026-11-01T08:00:00Z", 15))  # critical: opens a referral
    answer = post(interpret_only, cbc("P1", "2026-11-02T08:00:00Z", 250))  # routine, no delta finding
    assert "referral_id" not in answer["stored"]
    assert_nothing_stored_shown(answer)


def test_without_read_every_cbc_of_an_array_is_answered_alike(reader, interpret_only):
    post(reader, cbc("P1", "2026-11-01T08:00:00Z", 200))
    answers = post(interpret_only, [cbc("P1", "2026-11-01T08:00:00Z", 200), cbc("P1", "2026-11-03T08:00:00Z", 80)])
    for answer in answers:
        assert_nothing_stored_shown(answer)


def test_with_read_the_answer_still_has_the_delta_block_and_the_duplicate_hint(reader):
    first = post(reader, cbc("P1", "2026-11-01T08:00:00Z", 200))
    later = post(reader, cbc("P1", "2026-11-03T08:00:00Z", 80))
    again = post(reader, cbc("P1", "2026-11-01T08:00:00Z", 200))
    assert later["delta"]["previous"]["platelets"] == 200
    assert later["stored"]["duplicate"] is False and isinstance(later["stored"]["referral_id"], int)
    assert again["stored"]["duplicate"] is True and again["stored"]["cbc_id"] == first["stored"]["cbc_id"]


def test_without_read_the_cbc_is_still_stored(app, reader, interpret_only):
    post(interpret_only, cbc("P1", "2026-11-01T08:00:00Z", 200))
    later = post(reader, cbc("P1", "2026-11-03T08:00:00Z", 80))
    assert later["delta"]["previous"]["platelets"] == 200  # the interpret-only key's CBC was kept


# --- FHIR ----------------------------------------------------------------------------------------------------


def fhir_platelets(ident: str, value: float, when: str) -> dict[str, Any]:
    return observation(ident, "777-3", value, "10*9/L", subject={"reference": "Patient/p1"}, effectiveDateTime=when)


def test_fhir_without_read_no_delta_block_and_no_duplicate_hint(reader, interpret_only):
    def send(client, resource):
        response = client.post(
            "/api/v1/fhir/interpret", data=json.dumps(resource), content_type="application/fhir+json"
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["interpretations"][0]

    seen = send(reader, fhir_platelets("a", 200, "2026-11-01T08:00:00Z"))
    assert seen["stored"]["duplicate"] is False
    assert_nothing_stored_shown(send(interpret_only, fhir_platelets("a", 200, "2026-11-01T08:00:00Z")))
    later = send(interpret_only, fhir_platelets("b", 80, "2026-11-03T08:00:00Z"))
    assert_nothing_stored_shown(later)
    assert "platelet_drop" in [finding["code"] for finding in later["findings"]]


# --- HL7 v2 --------------------------------------------------------------------------------------------------


def test_hl7v2_without_read_no_delta_block_and_no_duplicate_hint(reader, interpret_only):
    def send(client):
        response = client.post("/api/v1/hl7v2/interpret", data=raw(NHAPI_ORU), content_type=ER7)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["interpretations"][0]

    assert send(reader)["stored"]["duplicate"] is False
    assert_nothing_stored_shown(send(interpret_only))  # the same message again: a duplicate, not said


# --- CDS Hooks -------------------------------------------------------------------------------------------------


def test_cds_hooks_answers_carry_nothing_stored(app, reader, interpret_only):
    """The FHIR spec example (Patient/pat2) stored first by another caller, then reviewed over CDS Hooks."""
    observations = spec_example_observations()
    stored = reader.post(
        "/api/v1/fhir/interpret",
        data=json.dumps(
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in observations]}
        ),
        content_type="application/fhir+json",
    )
    assert stored.status_code == 200, stored.get_data(as_text=True)
    call = hook_call("pat2", {"patient": None, "cbcObservations": searchset(observations)})
    response = interpret_only.post("/cds-services/cbc-review", json=call)
    assert response.status_code == 200, response.get_data(as_text=True)
    text = response.get_data(as_text=True)
    assert response.get_json()["cards"]
    assert all(word not in text for word in ("duplicate", "delta", "previous", "cbc_id", "referral_id"))
