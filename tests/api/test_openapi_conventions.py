"""Issue 14 item 3: the OpenAPI document follows what code generators and Swagger users expect
(labservice.api.openapi_conventions)."""

from __future__ import annotations

import pytest

from labservice.api.openapi_conventions import operation_id

OPENAPI = "/api/v1/openapi.json"
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def spec(client):
    return client.get(OPENAPI).get_json()


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_every_operation_has_a_unique_operation_id(spec):
    ids = [operation.get("operationId") for _, _, operation in _operations(spec)]
    assert ids and all(ids), [(p, m) for p, m, o in _operations(spec) if not o.get("operationId")]
    assert len(ids) == len(set(ids))
    assert spec["paths"]["/api/v1/interpretations"]["post"]["operationId"] == "createInterpretations"


def test_operation_ids_are_the_view_names_in_lower_camel_case():
    assert operation_id("interpretations.create_interpretations") == "createInterpretations"
    assert operation_id("fhir.interpret_fhir") == "interpretFhir"
    assert operation_id("health.healthz") == "healthz"


def test_servers_name_the_server_the_document_came_from(spec):
    assert spec["servers"] == [{"url": "/", "description": "The server this document was fetched from."}]


@pytest.mark.parametrize(
    "path", ["/api/v1/interpretations", "/api/v1/fhir/interpret", "/api/v1/hl7v2/interpret", "/api/v1/batches"]
)
def test_every_storing_operation_documents_store_with_false_as_the_example(spec, path):
    parameters = [p for p in spec["paths"][path]["post"]["parameters"] if isinstance(p, dict)]
    store = [p for p in parameters if p.get("name") == "store"]
    assert len(store) == 1
    assert store[0]["in"] == "query"
    assert store[0]["schema"]["default"] is True  # what the service does when it is left out
    assert store[0]["example"] is False  # what Swagger's Try it out sends: nothing stored


def test_the_idempotency_key_has_no_fixed_example_to_prefill(spec):
    parameter = spec["components"]["parameters"]["IdempotencyKey"]
    assert "example" not in parameter and "example" not in parameter["schema"]
    assert "examples" not in parameter


def test_the_cds_hooks_endpoints_are_listed(spec):
    assert spec["paths"]["/cds-services"]["get"]["operationId"] == "discoverCdsServices"
    assert spec["paths"]["/cds-services"]["get"]["security"] == []
    call = spec["paths"]["/cds-services/{service_id}"]["post"]
    assert call["operationId"] == "callCdsService"
    assert "https://cds-hooks.hl7.org/2.0/" in call["description"]
    assert {"400", "401", "404", "412", "422"} <= set(call["responses"])
    assert spec["paths"]["/cds-services/{service_id}/feedback"]["post"]["operationId"] == "sendCdsFeedback"


def test_the_documented_cds_hooks_discovery_answers_as_documented(client, spec):
    assert "get" in spec["paths"]["/cds-services"]
    response = client.get("/cds-services")
    assert response.status_code == 200
    assert isinstance(response.get_json()["services"], list)
