"""gather(): prefetch first, else the client's FHIR server (a real HTTP server here), else 412."""

from __future__ import annotations

import pytest

from labservice.adapters.cdshooks.fhir_client import GENERIC_FAILURE, FhirAccess, normalize_base_url
from labservice.adapters.cdshooks.prefetch import PreconditionFailed, gather
from labservice.adapters.cdshooks.request import BadHookRequest, parse_hook_request
from labservice.adapters.cdshooks.service import CBC_REVIEW, prefetch_templates
from labservice.core.ruleset import default_ruleset
from tests.adapters.cdshooks.build import (
    CLINICAL_RULES_CBC_CODES,
    FhirTestServer,
    authorization,
    closed_port_url,
    hook_call,
    searchset,
    synthea_server_data,
)

TEMPLATES = prefetch_templates(default_ruleset())
PATIENT, OBSERVATIONS = synthea_server_data("Clemente_Kreiger")
PID = PATIENT["id"]


def run(body):
    """gather() for a client whose allowlist holds the call's own fhirServer (the allowlist itself is tested in
    test_fhir_client.py and tests/security/test_cds_fhir_server.py)."""
    allowed = frozenset({normalize_base_url(body["fhirServer"])} if body.get("fhirServer") else ())
    return gather(parse_hook_request(body, CBC_REVIEW), TEMPLATES, access=FhirAccess(allowed=allowed, timeout=3))


@pytest.fixture
def server():
    with FhirTestServer([PATIENT], OBSERVATIONS).running() as running:
        yield running


MEDICATIONS_NONE = {"medicationRequests": None, "medicationStatements": None}


def test_prefetched_data_is_used_and_the_server_is_not_called(server):
    prefetch = {"patient": PATIENT, "cbcObservations": searchset(OBSERVATIONS), **MEDICATIONS_NONE}
    gathered = run(hook_call(PID, prefetch, fhirServer=server.base_url, fhirAuthorization=authorization()))
    assert server.requests == []
    assert gathered.patient is PATIENT
    assert [entry.resource["id"] for entry in gathered.entries] == [
        entry["resource"]["id"] for entry in searchset(OBSERVATIONS)["entry"]
    ]
    assert gathered.entries[2].origin == "prefetch.cbcObservations.entry[2].resource"
    assert gathered.fetched == []


def test_null_means_the_client_has_no_data_and_nothing_is_fetched(server):
    gathered = run(
        hook_call(PID, {"patient": None, "cbcObservations": None, **MEDICATIONS_NONE}, fhirServer=server.base_url)
    )
    assert gathered.patient is None and gathered.entries == []
    assert server.requests == []


def test_without_prefetch_both_are_read_from_the_server_with_the_bearer_token(server):
    gathered = run(hook_call(PID, fhirServer=server.base_url, fhirAuthorization=authorization("tok-123")))
    assert gathered.fetched == ["patient", "cbcObservations", "medicationRequests", "medicationStatements"]
    assert gathered.patient == PATIENT
    # Clemente Kreiger: 2 panels of 11 Observations (fixtures README: 22 CBC obs); PDW 32207-3 and
    # MPV 32623-1 are not §1 codes, so the search matches 2 x 9.
    assert len(gathered.entries) == len(OBSERVATIONS) == 18
    assert [r["authorization"] for r in server.requests] == ["Bearer tok-123"] * 4
    patient_read, search, requests, statements = server.requests
    assert (requests["path"], statements["path"]) == ("/fhir/MedicationRequest", "/fhir/MedicationStatement")
    assert requests["query"]["patient"] == statements["query"]["patient"] == [PID]
    assert patient_read["path"] == f"/fhir/Patient/{PID}"
    assert search["path"] == "/fhir/Observation"
    assert search["query"]["patient"] == [PID]
    asked = {code.split("|")[1] for code in search["query"]["code"][0].split(",")}
    assert set(CLINICAL_RULES_CBC_CODES) <= asked
    assert search["query"]["_sort"] == ["-date"]
    assert gathered.entries[0].origin == "cbcObservations (read from fhirServer).entry[0].resource"


def test_only_the_missing_key_is_fetched(server):
    gathered = run(hook_call(PID, {"patient": PATIENT, **MEDICATIONS_NONE}, fhirServer=server.base_url))
    assert gathered.fetched == ["cbcObservations"]
    assert [r["path"] for r in server.requests] == ["/fhir/Observation"]
    assert server.requests[0]["authorization"] is None  # no fhirAuthorization, no token


def test_an_operation_outcome_in_prefetch_counts_as_not_prefetched(server):
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    gathered = run(
        hook_call(PID, {"patient": PATIENT, "cbcObservations": outcome, **MEDICATIONS_NONE}, fhirServer=server.base_url)
    )
    assert gathered.fetched == ["cbcObservations"] and len(gathered.entries) == len(OBSERVATIONS)


def test_without_prefetch_and_without_a_server_the_precondition_fails():
    with pytest.raises(PreconditionFailed) as caught:
        run(hook_call(PID))
    assert set(caught.value.errors) == {"prefetch.patient", "prefetch.cbcObservations"}


def test_one_missing_key_without_a_server_fails_naming_that_key():
    with pytest.raises(PreconditionFailed) as caught:
        run(hook_call(PID, {"patient": PATIENT}))
    assert set(caught.value.errors) == {"prefetch.cbcObservations"}


def test_an_unreachable_server_fails_the_precondition_with_the_generic_message():
    url = closed_port_url()
    with pytest.raises(PreconditionFailed) as caught:
        run(hook_call(PID, fhirServer=url, fhirAuthorization=authorization("secret-token")))
    assert caught.value.errors == {"fhirServer": [GENERIC_FAILURE]}


def test_a_patient_the_server_does_not_know_fails_the_precondition(server):
    with pytest.raises(PreconditionFailed) as caught:
        run(hook_call("unknown-patient", fhirServer=server.base_url))
    assert caught.value.errors == {"fhirServer": [GENERIC_FAILURE]}  # the HTTP 404 goes to the log only
    assert len(server.requests) == 1  # the Patient read failed: the search is not tried


def test_a_redirect_is_not_followed(server):
    with (
        FhirTestServer([], [], redirect_to=server.base_url).running() as front,
        pytest.raises(PreconditionFailed) as caught,
    ):
        run(hook_call(PID, fhirServer=front.base_url, fhirAuthorization=authorization("tok-9")))
    assert caught.value.errors == {"fhirServer": [GENERIC_FAILURE]}
    assert [r["authorization"] for r in front.requests] == ["Bearer tok-9"]
    assert server.requests == []


def test_a_prefetched_patient_other_than_the_one_in_context_is_refused():
    with pytest.raises(BadHookRequest) as caught:
        run(hook_call("someone-else", {"patient": PATIENT, "cbcObservations": None}))
    assert "prefetch.patient.id" in caught.value.errors


def test_observations_of_another_patient_are_refused_naming_the_entry():
    other = {**OBSERVATIONS[0], "subject": {"reference": "https://ehr.example.org/fhir/Patient/other"}}
    with pytest.raises(BadHookRequest) as caught:
        run(hook_call(PID, {"patient": PATIENT, "cbcObservations": searchset([other])}))
    assert list(caught.value.errors) == ["prefetch.cbcObservations.entry[0].resource.subject"]


@pytest.mark.parametrize(
    ("prefetch", "field"),
    [
        ({"patient": {"resourceType": "Practitioner", "id": "x"}, "cbcObservations": None}, "prefetch.patient"),
        ({"patient": None, "cbcObservations": OBSERVATIONS[0]}, "prefetch.cbcObservations"),
        (
            {"patient": None, "cbcObservations": {"resourceType": "Bundle", "entry": {}}},
            "prefetch.cbcObservations.entry",
        ),
        (
            {"patient": None, "cbcObservations": {"resourceType": "Bundle", "entry": [{"resource": {"id": "x"}}]}},
            "prefetch.cbcObservations.entry[0].resource",
        ),
    ],
)
def test_prefetched_data_of_the_wrong_shape_is_a_bad_request(prefetch, field):
    with pytest.raises(BadHookRequest) as caught:
        run(hook_call(PID, prefetch))
    assert field in caught.value.errors


def test_medication_records_are_optional_without_a_server():
    """clinical-rules §11, §12 v2: the medication keys give context; a client that sends neither and has no
    fhirServer still gets its card (read without that context), not a 412."""
    gathered = run(hook_call(PID, {"patient": PATIENT, "cbcObservations": searchset(OBSERVATIONS)}))
    assert gathered.patient is PATIENT and len(gathered.entries) == len(OBSERVATIONS)


def test_medication_records_are_read_from_the_server_for_the_patient():
    record = {
        "resourceType": "MedicationRequest",
        "id": "folfox",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{PID}"},
        "authoredOn": "2020-01-01T00:00:00Z",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1736776"}]
        },
    }
    with FhirTestServer([PATIENT], OBSERVATIONS, medications=[record]).running() as running:
        gathered = run(
            hook_call(
                PID, {"patient": PATIENT, "cbcObservations": searchset(OBSERVATIONS)}, fhirServer=running.base_url
            )
        )
    assert gathered.fetched == ["medicationRequests", "medicationStatements"]
    assert [e.origin for e in gathered.entries if e.resource["id"] == "folfox"] == [
        "medicationRequests (read from fhirServer).entry[0].resource"
    ]


def test_a_server_that_cannot_give_the_medication_records_does_not_fail_the_call():
    url = closed_port_url()
    gathered = run(hook_call(PID, {"patient": PATIENT, "cbcObservations": searchset(OBSERVATIONS)}, fhirServer=url))
    assert gathered.fetched == [] and len(gathered.entries) == len(OBSERVATIONS)
