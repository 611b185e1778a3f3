"""The OpenAPI document and the Swagger UI are served, and document the contract."""

from __future__ import annotations

import pytest

OPENAPI = "/api/v1/openapi.json"


@pytest.fixture
def spec(client):
    response = client.get(OPENAPI)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def _resolve(spec, node):
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = spec["components"]["schemas"][name]
    return node


def test_document_is_openapi_3_with_the_paths(spec):
    assert spec["openapi"] == "3.0.3"
    assert spec["info"]["title"] and spec["info"]["version"]
    assert "post" in spec["paths"]["/api/v1/interpretations"]
    assert "get" in spec["paths"]["/healthz"]


def test_request_body_is_one_cbc_or_an_array_of_them(spec):
    operation = spec["paths"]["/api/v1/interpretations"]["post"]
    choices = operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    resolved = [_resolve(spec, choice) for choice in choices]
    cbc = next(schema for schema in resolved if schema.get("type") == "object")
    batch = next(schema for schema in resolved if schema.get("type") == "array")
    assert cbc["required"] == ["results"]
    assert cbc["additionalProperties"] is False
    assert _resolve(spec, batch["items"]) == cbc
    assert batch["maxItems"] == 1000


def test_cbc_schema_lists_every_contract_analyte(spec):
    cbc = spec["components"]["schemas"]["CBC"]
    results = _resolve(spec, cbc["properties"]["results"])
    assert set(results["properties"]) == {
        "platelets",
        "wbc",
        "neutrophils",
        "lymphocytes",
        "hemoglobin",
        "hematocrit",
        "rbc",
        "mcv",
        "mch",
        "mchc",
        "rdw",
        "reticulocytes",
        "reticulocytes_percent",
        "neutrophils_percent",
        # api-contract v2 / clinical-rules §1 v2: RDW-SD and lymphocyte %
        "rdw_sd",
        "lymphocytes_percent",
        # api-contract.md v2 (clinical-rules §10): the differential beyond the five-part count
        "blasts_percent",
        "promyelocytes_percent",
        "myelocytes_percent",
        "metamyelocytes_percent",
        "bands_percent",
        "nrbc_per_100_wbc",
    }
    assert "oneOf" in results["properties"]["platelets"]


def test_answer_is_one_interpretation_or_an_array_of_them(spec):
    operation = spec["paths"]["/api/v1/interpretations"]["post"]
    choices = operation["responses"]["200"]["content"]["application/json"]["schema"]["oneOf"]
    resolved = [_resolve(spec, choice) for choice in choices]
    answer = next(schema for schema in resolved if schema.get("type") == "object")
    assert {
        "id",
        "ruleset_version",
        "ctcae_version",
        "analytes",
        "findings",
        "aplastic_anemia",
        "skin",
        "urgency",
        "summary",
    } <= set(answer["properties"])
    assert any(schema.get("type") == "array" for schema in resolved)


@pytest.mark.parametrize("status", ["400", "413", "415", "422"])
def test_problem_responses_are_documented(spec, status):
    response = spec["paths"]["/api/v1/interpretations"]["post"]["responses"][status]
    problem = _resolve(spec, response["content"]["application/problem+json"]["schema"])
    assert {"type", "title", "status", "detail", "errors"} <= set(problem["properties"])


def test_swagger_ui_is_served(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b"swagger-ui" in response.data
    assert OPENAPI.encode() in response.data


def test_swagger_ui_assets_are_served_locally(client):
    """The docs page must work without internet access: its script and stylesheet come from us."""
    page = client.get("/api/docs").get_data(as_text=True)
    assert "/api/docs/assets/swagger-ui-bundle.js" in page
    assert "http" not in page.split("<script")[1].split(">")[0]
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        response = client.get(f"/api/docs/assets/{asset}")
        assert response.status_code == 200, asset
        assert len(response.data) > 10_000


def test_the_answer_schema_documents_every_field_the_service_returns(client):
    """Dump a real answer through the documented schema: no field may be undocumented."""
    from labservice.api.schemas import InterpretationSchema
    from labservice.examples import CONTRACT_EXAMPLE

    answer = client.post("/api/v1/interpretations", json=CONTRACT_EXAMPLE).get_json()
    assert InterpretationSchema().validate(answer) == {}
    documented = set(
        client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]["Interpretation"]["properties"]
    )
    assert set(answer) <= documented


def test_the_document_is_valid_openapi_3(client):
    from openapi_spec_validator import validate

    validate(client.get("/api/v1/openapi.json").get_json())
