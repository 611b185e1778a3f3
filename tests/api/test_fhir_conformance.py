"""Issue 14 item 1, FHIR conventions: the CapabilityStatement at /api/v1/fhir/metadata, the $interpret operation
(declared by an OperationDefinition, accepting the same bodies as /interpret), errors as OperationOutcome when the
client asked for FHIR, and a bare DiagnosticReport told to come in a Bundle. The resources are validated with
fhir.resources (R4B, the closest release it ships to R4)."""

from __future__ import annotations

import json

import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationdefinition import OperationDefinition
from fhir.resources.R4B.operationoutcome import OperationOutcome

from labservice.api.fhir import EXAMPLE
from tests.api.helpers import assert_problem

FHIR_JSON = "application/fhir+json"
BASE = "/api/v1/fhir"


def test_the_capability_statement_is_public_fhir_r4_and_declares_interpret(anonymous_client):
    response = anonymous_client.get(f"{BASE}/metadata")
    assert response.status_code == 200
    assert response.mimetype == FHIR_JSON
    statement = response.get_json()
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1" and statement["kind"] == "instance"
    assert FHIR_JSON in statement["format"]
    (operation,) = statement["rest"][0]["operation"]
    assert operation["name"] == "interpret"
    assert operation["definition"] == f"http://localhost{BASE}/OperationDefinition/interpret"


def test_the_operation_definition_is_where_the_capability_statement_says(anonymous_client):
    statement = anonymous_client.get(f"{BASE}/metadata").get_json()
    definition_url = statement["rest"][0]["operation"][0]["definition"]
    response = anonymous_client.get(definition_url.removeprefix("http://localhost"))
    assert response.status_code == 200 and response.mimetype == FHIR_JSON
    definition = response.get_json()
    OperationDefinition.model_validate(definition)
    assert definition["url"] == definition_url
    assert (definition["code"], definition["system"], definition["instance"]) == ("interpret", True, False)
    assert {(p["name"], p["use"]) for p in definition["parameter"]} >= {("resource", "in"), ("return", "out")}


def test_dollar_interpret_takes_the_same_bodies_and_gives_the_same_answers(client):
    body = json.dumps(EXAMPLE)
    plain = client.post(f"{BASE}/interpret?store=false", data=body, content_type=FHIR_JSON)
    dollar = client.post(f"{BASE}/$interpret?store=false", data=body, content_type=FHIR_JSON)
    assert plain.status_code == dollar.status_code == 200

    def without_ids(answer):  # each interpretation gets its own id
        return [{k: v for k, v in i.items() if k != "id"} for i in answer["interpretations"]]

    assert without_ids(dollar.get_json()) == without_ids(plain.get_json())
    assert dollar.get_json()["unused"] == plain.get_json()["unused"]
    as_fhir = client.post(f"{BASE}/$interpret?store=false&_format=fhir", data=body, content_type=FHIR_JSON)
    assert as_fhir.mimetype == FHIR_JSON and as_fhir.get_json()["resourceType"] == "Bundle"


def test_the_openapi_document_lists_dollar_interpret_and_the_conformance_resources(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert paths[f"{BASE}/$interpret"]["post"]["operationId"] == "interpretFhirOperation"
    assert "get" in paths[f"{BASE}/metadata"] and "get" in paths[f"{BASE}/OperationDefinition/interpret"]


BAD_VALUE = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "777-3"}]},
    "valueQuantity": {"value": "many", "unit": "10*3/uL"},
}


@pytest.mark.parametrize(("query", "accept"), [("?store=false", FHIR_JSON), ("?store=false&_format=fhir", None)])
def test_a_client_that_asked_for_fhir_gets_an_operation_outcome_naming_the_fhir_path(client, query, accept):
    headers = {"Accept": accept} if accept else {}
    response = client.post(
        f"{BASE}/$interpret{query}", data=json.dumps(BAD_VALUE), content_type=FHIR_JSON, headers=headers
    )
    assert response.status_code == 422
    assert response.mimetype == FHIR_JSON
    outcome = response.get_json()
    OperationOutcome.model_validate(outcome)
    assert all(issue["severity"] == "error" and issue["code"] == "invalid" for issue in outcome["issue"])
    expressions = [e for issue in outcome["issue"] for e in issue.get("expression", [])]
    assert any("valueQuantity.value" in expression for expression in expressions), outcome


def test_other_clients_keep_problem_json(client):
    response = client.post(f"{BASE}/interpret?store=false", data=json.dumps(BAD_VALUE), content_type=FHIR_JSON)
    body = assert_problem(response, 422)
    assert any("valueQuantity.value" in path for path in body["errors"])


@pytest.mark.parametrize(
    ("status", "code", "call"),
    [
        (
            401,
            "login",
            lambda c: c.post(
                f"{BASE}/$interpret",
                data="{}",
                content_type=FHIR_JSON,
                headers={"Accept": FHIR_JSON, "Authorization": "Bearer nope"},
            ),
        ),
        (
            415,
            "not-supported",
            lambda c: c.post(f"{BASE}/$interpret", data="x", content_type="text/plain", headers={"Accept": FHIR_JSON}),
        ),
    ],
)
def test_refusals_before_the_view_are_operation_outcomes_too(app, client, status, code, call):
    from tests.credentials import anonymous

    response = call(anonymous(app) if status == 401 else client)
    assert response.status_code == status and response.mimetype == FHIR_JSON
    outcome = response.get_json()
    OperationOutcome.model_validate(outcome)
    assert outcome["issue"][0]["code"] == code
    if status == 401:
        assert response.headers["WWW-Authenticate"]  # the headers of the refusal are kept


def test_a_bare_diagnostic_report_is_told_to_come_in_a_bundle_with_its_observations(client):
    report = next(e["resource"] for e in EXAMPLE["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    response = client.post(f"{BASE}/interpret?store=false", data=json.dumps(report), content_type=FHIR_JSON)
    body = assert_problem(response, 422)
    assert "Post a Bundle that includes the Observations" in body["detail"]
    assert any("result[0]" in path for path in body["errors"])  # which reference did not resolve
