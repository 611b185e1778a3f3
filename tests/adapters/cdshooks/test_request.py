"""parse_hook_request: the fields of the CDS Hooks 2.0 request table and the patient-view context."""

from __future__ import annotations

import pytest

from labservice.adapters.cdshooks.request import BadHookRequest, parse_hook_request
from labservice.adapters.cdshooks.service import CBC_REVIEW
from tests.adapters.cdshooks.build import authorization, hook_call

#: The specification's own request example ("Calling a CDS Service"), with its prefetch.
SPEC_EXAMPLE = {
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "fhirServer": "http://hooks.smarthealthit.org:9080",
    "hook": "patient-view",
    "fhirAuthorization": {
        "access_token": "some-opaque-fhir-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/Patient.read patient/Observation.read",
        "subject": "cds-service4",
    },
    "context": {"userId": "Practitioner/example", "patientId": "1288992", "encounterId": "89284"},
    "prefetch": {
        "patientToGreet": {
            "resourceType": "Patient",
            "gender": "male",
            "birthDate": "1925-12-23",
            "id": "1288992",
            "active": True,
        }
    },
}


def errors_of(body) -> dict[str, list[str]]:
    with pytest.raises(BadHookRequest) as caught:
        parse_hook_request(body, CBC_REVIEW)
    return caught.value.errors


def test_the_specifications_example_request_is_accepted():
    parsed = parse_hook_request(SPEC_EXAMPLE, CBC_REVIEW)
    assert parsed.hook == "patient-view"
    assert parsed.hook_instance == "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
    assert parsed.patient_id == "1288992"
    assert parsed.user_id == "Practitioner/example"
    assert parsed.encounter_id == "89284"
    assert parsed.fhir_server == "http://hooks.smarthealthit.org:9080"
    assert parsed.access_token == "some-opaque-fhir-access-token"
    assert parsed.prefetch == SPEC_EXAMPLE["prefetch"]


def test_a_call_without_prefetch_or_server_parses_with_neither():
    parsed = parse_hook_request(hook_call("123"), CBC_REVIEW)
    assert parsed.prefetch is None
    assert parsed.fhir_server is None and parsed.access_token is None


def test_a_trailing_slash_on_the_server_is_dropped():
    parsed = parse_hook_request(hook_call("123", fhirServer="https://ehr.example.org/fhir/"), CBC_REVIEW)
    assert parsed.fhir_server == "https://ehr.example.org/fhir"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hook": None}, "hook"),
        ({"hook": "order-sign"}, "hook"),
        ({"hook": 7}, "hook"),
        ({"hookInstance": None}, "hookInstance"),
        ({"hookInstance": "not-a-uuid"}, "hookInstance"),
        ({"context": None}, "context"),
        ({"context": "123"}, "context"),
        ({"context": {"userId": "Practitioner/example"}}, "context.patientId"),
        ({"context": {"patientId": ""}}, "context.patientId"),
        ({"context": {"patientId": "../Observation"}}, "context.patientId"),
        ({"context": {"patientId": "x" * 65}}, "context.patientId"),
        ({"context": {"patientId": "123", "userId": 5}}, "context.userId"),
        ({"context": {"patientId": "123", "encounterId": "a/b"}}, "context.encounterId"),
        ({"prefetch": ["Patient/123"]}, "prefetch"),
        ({"fhirServer": "file:///etc/passwd"}, "fhirServer"),
        ({"fhirServer": "ehr.example.org/fhir"}, "fhirServer"),
        ({"fhirServer": 42}, "fhirServer"),
        ({"fhirAuthorization": authorization()}, "fhirServer"),  # a token needs a server
        ({"fhirServer": "https://ehr.example.org/fhir", "fhirAuthorization": "token"}, "fhirAuthorization"),
        (
            {"fhirServer": "https://ehr.example.org/fhir", "fhirAuthorization": {"token_type": "Bearer"}},
            "fhirAuthorization.access_token",
        ),
        (
            {
                "fhirServer": "https://ehr.example.org/fhir",
                "fhirAuthorization": {**authorization(), "token_type": "MAC"},
            },
            "fhirAuthorization.token_type",
        ),
        (
            {
                "fhirServer": "https://ehr.example.org/fhir",
                "fhirAuthorization": {**authorization(), "expires_in": "300"},
            },
            "fhirAuthorization.expires_in",
        ),
    ],
)
def test_a_malformed_call_names_the_field(change, field):
    body = {**hook_call("123"), **change}
    body = {key: value for key, value in body.items() if value is not None}
    assert field in errors_of(body)


def test_every_problem_is_reported_at_once():
    errors = errors_of({"hook": "order-sign", "context": {}})
    assert {"hook", "hookInstance", "context.patientId"} <= set(errors)


def test_a_body_that_is_not_an_object_is_refused():
    assert "body" in errors_of(["patient-view"])


def test_fields_the_service_does_not_use_may_be_left_out():
    body = hook_call(
        "123",
        fhirServer="https://ehr.example.org/fhir",
        fhirAuthorization={"access_token": "t", "token_type": "bearer"},
    )
    body["context"].pop("userId")
    parsed = parse_hook_request(body, CBC_REVIEW)
    assert parsed.access_token == "t" and parsed.user_id is None
