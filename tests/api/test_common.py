"""What the endpoints share (labservice.api.common, labservice.errors.first_error): one JSON reader, one summary."""

from __future__ import annotations

import math

import pytest

from labservice.api.common import problem_doc, read_json, schema_ref
from labservice.errors import Problem, first_error
from tests.api.helpers import assert_problem

#: Every endpoint that reads a JSON body, with the media type it takes.
JSON_ENDPOINTS = [
    ("post", "/api/v1/interpretations?store=false", "application/json"),
    ("post", "/api/v1/fhir/interpret?store=false", "application/fhir+json"),
    ("post", "/cds-services/cbc-review", "application/json"),
    ("post", "/cds-services/cbc-review/feedback", "application/json"),
    ("patch", "/api/v1/referrals/1", "application/json"),
]


@pytest.mark.parametrize(
    ("raw", "detail", "error"),
    [
        (
            b'{"a": 1,}',
            "Malformed JSON at line 1 column 9 (character 8): Expecting property name enclosed in double quotes.",
            "Expecting property name enclosed in double quotes",
        ),
        (b'{"a": "\xff"}', "The body is not UTF-8 text (byte 7).", "Not UTF-8."),
        (b"[" * 100_000, "Malformed JSON: nested too deeply.", "Nested too deeply."),
        (b'{"a": NaN}', "Malformed JSON: NaN is not a JSON number.", "NaN is not a JSON number"),
        (b"[-Infinity]", "Malformed JSON: -Infinity is not a JSON number.", "-Infinity is not a JSON number"),
    ],
)
def test_read_json_refuses_what_is_not_json_naming_the_body(raw, detail, error):
    with pytest.raises(Problem) as refused:
        read_json(raw)
    assert (refused.value.code, refused.value.detail, refused.value.errors) == (400, detail, {"body": [error]})


def test_read_json_passes_nan_and_infinity_on_when_the_schema_refuses_them_itself():
    body = read_json(b'{"a": NaN, "b": Infinity}', non_finite=True)
    assert math.isnan(body["a"]) and body["b"] == math.inf


@pytest.mark.parametrize(("method", "url", "content_type"), JSON_ENDPOINTS, ids=[e[1] for e in JSON_ENDPOINTS])
def test_every_json_endpoint_answers_malformed_json_alike(client, method, url, content_type):
    response = getattr(client, method)(url, data=b'{"a": ', content_type=content_type)
    problem = assert_problem(response, 400)
    assert problem["detail"] == "Malformed JSON at line 1 column 7 (character 6): Expecting value."
    assert problem["errors"] == {"body": ["Expecting value"]}


@pytest.mark.parametrize(("method", "url", "content_type"), JSON_ENDPOINTS[1:], ids=[e[1] for e in JSON_ENDPOINTS[1:]])
def test_nan_is_not_json_except_in_a_cbc(client, method, url, content_type):
    """A CBC's NaN is a 422 naming the field (tests/api/test_errors.py); anywhere else it is not JSON (400)."""
    problem = assert_problem(getattr(client, method)(url, data=b'{"a": NaN}', content_type=content_type), 400)
    assert problem["errors"] == {"body": ["NaN is not a JSON number"]}


def test_first_error_names_the_first_path_and_counts_the_rest():
    assert first_error({"results.platelets": ["Not a number."]}) == "results.platelets: Not a number."
    assert first_error({"a": ["first", "second"], "b": ["x"], "c": ["y"]}) == "a: first (and 2 more)"
    assert first_error({}) == "see errors."


def test_problem_doc_is_a_problem_json_response_with_its_cause():
    assert schema_ref("CBC") == {"$ref": "#/components/schemas/CBC"}
    assert problem_doc("No referral with this id.") == {
        "description": "No referral with this id.",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
