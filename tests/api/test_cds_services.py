"""CDS Hooks 2.0 over HTTP: discovery, the cbc-review service, 412, feedback, JSON errors.

Calls are shaped like the CDS Hooks sandbox's; prefetch is built from the real-client fixtures, and
the "no prefetch" calls read from a real FHIR server on loopback (tests/adapters/cdshooks/build.py).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labservice.adapters.cdshooks.fhir_client import GENERIC_FAILURE
from labservice.app import create_app
from labservice.store.models import CbcResult, Interpretation, Patient, Referral
from tests.adapters.cdshooks.build import (
    CLINICAL_RULES_CBC_CODES,
    FhirTestServer,
    authorization,
    closed_port_url,
    hook_call,
    loinc_of,
    mimic_observations,
    searchset,
    spec_example_observations,
    synthea_server_data,
)
from tests.api.helpers import assert_problem
from tests.credentials import CREDENTIALS, add_test_credentials

URL = "/cds-services/cbc-review"
MIMIC_TIMES = ["2171-07-23 10:32:00", "2171-07-23 19:14:00", "2171-07-24 01:30:00"]


@pytest.fixture
def feedback_file(tmp_path: Path) -> Path:
    return tmp_path / "feedback" / "cds.jsonl"


@pytest.fixture
def app(make_app, feedback_file):
    return make_app(CDS_FEEDBACK_FILE=str(feedback_file))


def allowlist(client, url: str) -> None:
    """Let the test client's API key have the service read this FHIR server (CDS_FHIR_SERVERS)."""
    app = client.application
    app.config["CDS_FHIR_SERVERS"] = json.dumps({f"api_key:{app.extensions[CREDENTIALS].key_name}": [url]})


def stored_rows(app) -> tuple[int, ...]:
    database = app.extensions["labservice.database"]
    with database.session() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Patient, CbcResult, Interpretation, Referral)
        )


# --- discovery ----------------------------------------------------------------------------------------


def test_discovery_lists_the_service(client):
    response = client.get("/cds-services")
    assert response.status_code == 200 and response.mimetype == "application/json"
    review, order_check = response.get_json()["services"]  # issue 14 item 2: the order-sign service too
    assert (order_check["hook"], order_check["id"]) == ("order-sign", "platelet-order-check")
    service = review
    assert {"hook", "title", "description", "id", "prefetch"} == set(service)
    assert (service["hook"], service["id"]) == ("patient-view", "cbc-review")
    assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    template = service["prefetch"]["cbcObservations"]
    assert template.startswith("Observation?patient={{context.patientId}}&code=")
    assert all(f"http://loinc.org|{code}" in template for code in CLINICAL_RULES_CBC_CODES)
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_a_cors_preflight_is_answered(client):
    response = client.options(
        URL, headers={"Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST"}
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


# --- the service with prefetch -----------------------------------------------------------------------


def test_synthea_prefetch_gives_one_card_and_stores_nothing(app, client):
    patient, observations = synthea_server_data("Cleo_Friesen")
    body = hook_call(
        patient["id"],
        {"patient": patient, "cbcObservations": searchset(observations)},
        fhirServer="https://ehr.example.org/fhir",
        fhirAuthorization=authorization(),
    )
    response = client.post(URL, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    [card] = response.get_json()["cards"]
    # Newest panel: WBC 1.71 (§3 critical < 2.0, new -> §9 immediate -> critical). v2 changes this v1
    # expectation (urgent -> warning): clinical-rules.md §9 lines 243 and 253 (*v2*).
    assert card["indicator"] == "critical" and "urgency immediate" in card["summary"]
    assert len(card["summary"]) < 140
    assert uuid.UUID(card["uuid"])
    assert card["source"]["label"].startswith("labservice") and card["source"]["url"].endswith("/api/v1/ruleset")
    # Issue 14 item 2: no dashboard link for a patient the record of results does not have (it would be a 404).
    assert "links" not in card
    assert stored_rows(app) == (0, 0, 0, 0)  # a patient-view call is a read


def test_fhir_spec_example_neutropenia(client):
    body = hook_call("pat2", {"patient": None, "cbcObservations": searchset(spec_example_observations())})
    [card] = client.post(URL, json=body).get_json()["cards"]
    # Neutrophils 0.9 x10*9/L: §4 neutropenia (< 1.5); the laboratory flags it LL, honoured (clinical-rules §3 v2):
    # a new critical value asks for immediate (§9 v2), indicator critical.
    assert "neutropenia" in card["summary"] and card["indicator"] == "critical"


def test_mimic_low_platelets_card_without_a_skin_examination_has_no_citrate_suggestion(client):
    body = hook_call(
        "mimic-160445",
        {"patient": None, "cbcObservations": searchset(mimic_observations("160445", MIMIC_TIMES, "mimic-160445"))},
    )
    [card] = client.post(URL, json=body).get_json()["cards"]
    # Newest 2171-07-24 01:30: platelets 42 K/uL (§4 < 150, §9 soon); isolated, but a CDS Hooks call sends no
    # skin examination: clinical-rules §8 v2 ("skin not sent is not 'no bleeding signs'") suggests neither the
    # citrate repeat nor the film (v1 did; tests/adapters/cdshooks/test_cards.py sends the skin and gets both).
    assert card["summary"].startswith("CBC 2171-07-24: thrombocytopenia")
    assert card["indicator"] == "warning"
    assert "suggestions" not in card
    assert "2 older CBCs" in card["detail"]


def test_public_base_url_sets_the_links_for_a_stored_patient(make_app, feedback_file):
    client = make_app(PUBLIC_BASE_URL="https://labs.example.org/", CDS_FEEDBACK_FILE=str(feedback_file)).test_client()
    body = hook_call(
        "mimic-160445",
        {"patient": None, "cbcObservations": searchset(mimic_observations("160445", MIMIC_TIMES[-1:], "mimic-160445"))},
    )
    [card] = client.post(URL, json=body).get_json()["cards"]
    assert "links" not in card  # not stored yet: the dashboard would answer 404
    stored = client.post(
        "/api/v1/interpretations",
        json={
            "patient": {"id": "Patient/mimic-160445"},
            "collected_at": "2026-11-01T08:00:00Z",
            "results": {"platelets": {"value": 42, "unit": "10*9/L"}},
        },
    )
    assert stored.status_code == 200, stored.get_data(as_text=True)
    [card] = client.post(URL, json=body).get_json()["cards"]
    assert card["links"][0]["url"] == "https://labs.example.org/dashboard/patients/Patient%2Fmimic-160445"
    assert client.get("/dashboard/patients/Patient%2Fmimic-160445").status_code == 200  # where it leads exists


def test_no_cbc_answers_an_empty_card_list(client):
    response = client.post(URL, json=hook_call("p1", {"patient": None, "cbcObservations": None}))
    assert response.status_code == 200 and response.get_json() == {"cards": []}


# --- no prefetch: the FHIR server, or 412 ------------------------------------------------------------


def test_without_prefetch_the_service_reads_the_fhir_server_with_the_token(client):
    patient, observations = synthea_server_data("Clemente_Kreiger")
    with FhirTestServer([patient], observations).running() as server:
        allowlist(client, server.base_url)
        body = hook_call(patient["id"], fhirServer=server.base_url, fhirAuthorization=authorization("abc.def"))
        response = client.post(URL, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    [card] = response.get_json()["cards"]
    newest_platelets = max((o for o in observations if loinc_of(o) == "777-3"), key=lambda o: o["effectiveDateTime"])
    assert f"Observation/{newest_platelets['id']}" in card["detail"]
    assert card["indicator"] == "info"  # platelets 305.99, WBC 8.81, Hb 15.47 (man): no §4 finding
    # The Patient, the Observations and (clinical-rules §11, §12 v2) the two medication searches.
    assert [r["authorization"] for r in server.requests] == ["Bearer abc.def"] * 4


def test_without_prefetch_and_without_a_fhir_server_answers_412(client):
    response = client.post(URL, json=hook_call("p1"))
    body = assert_problem(response, 412)
    assert set(body["errors"]) == {"prefetch.patient", "prefetch.cbcObservations"}


def test_an_unreachable_fhir_server_answers_412(client):
    url = closed_port_url()
    allowlist(client, url)
    response = client.post(URL, json=hook_call("p1", fhirServer=url, fhirAuthorization=authorization("s3cret")))
    body = assert_problem(response, 412)
    assert body["errors"] == {"fhirServer": [GENERIC_FAILURE]}  # the same for every cause (see test_cds_fhir_server)
    assert "s3cret" not in response.get_data(as_text=True)


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hook": "order-select"}, "hook"),
        ({"hookInstance": "123"}, "hookInstance"),
        ({"context": {"userId": "Practitioner/x"}}, "context.patientId"),
        ({"prefetch": "Patient/1"}, "prefetch"),
        ({"fhirServer": "ftp://ehr.example.org"}, "fhirServer"),
        (
            {"fhirServer": "https://ehr.example.org", "fhirAuthorization": {"token_type": "Bearer"}},
            "fhirAuthorization.access_token",
        ),
    ],
)
def test_a_malformed_call_answers_400_naming_the_field(client, change, field):
    body = assert_problem(client.post(URL, json={**hook_call("p1"), **change}), 400)
    assert field in body["errors"]


def test_malformed_json_answers_400(client):
    body = assert_problem(client.post(URL, data="{", content_type="application/json"), 400)
    assert "line 1" in body["detail"]


def test_another_content_type_answers_415(client):
    assert_problem(client.post(URL, data="x", content_type="text/plain"), 415)


def test_a_wrong_patient_in_prefetch_answers_400(client):
    patient, _ = synthea_server_data("Clemente_Kreiger")
    body = assert_problem(client.post(URL, json=hook_call("someone-else", {"patient": patient})), 400)
    assert "prefetch.patient.id" in body["errors"]


def test_an_implausible_latest_value_gets_a_warning_card_naming_the_entry(client):
    # Platelets 210000 K/uL is above the plausibility limit of clinical-rules §1 (> 5000 x10^9/L).
    observations = mimic_observations("160445", MIMIC_TIMES[-1:], "p1")
    next(o for o in observations if loinc_of(o) == "777-3")["valueQuantity"]["value"] = 210000.0
    response = client.post(URL, json=hook_call("p1", {"patient": None, "cbcObservations": searchset(observations)}))
    assert response.status_code == 200
    [card] = response.get_json()["cards"]
    assert card["indicator"] == "warning"
    assert "not interpreted" in card["summary"] and len(card["summary"]) < 140
    assert "prefetch.cbcObservations.entry\\[" in card["detail"]
    assert "suggestions" not in card


def test_malformed_fhir_in_prefetch_answers_422_naming_the_entry(client):
    observations = mimic_observations("160445", MIMIC_TIMES[-1:], "p1")
    next(o for o in observations if loinc_of(o) == "777-3")["valueQuantity"]["value"] = "many"
    body = assert_problem(
        client.post(URL, json=hook_call("p1", {"patient": None, "cbcObservations": searchset(observations)})), 422
    )
    assert all(path.startswith("prefetch.cbcObservations.entry[") for path in body["errors"])


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("post", "/cds-services/no-such-service", 404),
        ("post", "/cds-services/no-such-service/feedback", 404),
        ("get", "/cds-services/a/b/c", 404),
        ("get", URL, 405),
        ("post", "/cds-services", 405),
        ("get", URL + "/feedback", 405),
    ],
)
def test_errors_under_cds_services_are_json(client, method, path, status):
    assert_problem(getattr(client, method)(path, json={}), status)


def test_pages_outside_cds_services_keep_their_own_errors(client):
    # The blueprint's JSON errors do not leak to the rest of the site (labservice.errors decides there).
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response.mimetype != "application/problem+json"


# --- feedback -------------------------------------------------------------------------------------


def test_feedback_is_recorded_without_the_comment(client, feedback_file):
    items = [
        {
            "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
            "outcomeTimestamp": "2020-12-11T00:00:00Z",
        },
        {
            "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
            "outcome": "overridden",
            "overrideReason": {
                "reason": {"code": "d7ecf885", "system": "https://example.com/override"},
                "userComment": "Patient J. Smith refused",
            },
            "outcomeTimestamp": "2020-12-11T00:00:00Z",
        },
    ]
    response = client.post(URL + "/feedback", json={"feedback": items})
    assert response.status_code == 200 and response.get_json() == {"recorded": 2}
    lines = [json.loads(line) for line in feedback_file.read_text(encoding="utf-8").splitlines()]
    assert [(line["service"], line["card"], line["outcome"]) for line in lines] == [
        ("cbc-review", items[0]["card"], "accepted"),
        ("cbc-review", items[1]["card"], "overridden"),
    ]
    assert lines[0]["acceptedSuggestions"] == ["e56e1945-20b3-4393-8503-a1a20fd73152"]
    assert "Smith" not in feedback_file.read_text(encoding="utf-8")


def test_malformed_feedback_answers_400_naming_the_field(client, feedback_file):
    body = assert_problem(client.post(URL + "/feedback", json={"feedback": [{"card": "x", "outcome": "maybe"}]}), 400)
    assert {"feedback[0].outcome", "feedback[0].outcomeTimestamp"} <= set(body["errors"])
    assert not feedback_file.exists()


def test_the_default_feedback_file_is_in_the_instance_folder(sqlite_url, tmp_path):
    app = create_app({"TESTING": True, "DATABASE_URL": sqlite_url, "BATCH_DIRECTORY": str(tmp_path / "b")})
    add_test_credentials(app)
    app.instance_path = str(tmp_path / "instance")
    item = {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2020-12-11T00:00:00Z"}
    assert app.test_client().post(URL + "/feedback", json={"feedback": [item]}).status_code == 200
    assert (tmp_path / "instance" / "cds-feedback.jsonl").is_file()
