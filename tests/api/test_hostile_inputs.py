"""Hostile and malformed bodies: each gets a 4xx problem+json naming what is wrong, never a 5xx."""

from __future__ import annotations

import pytest

HOSTILE = [
    ("number overflowing to infinity", b'{"results": {"platelets": 1e400}}', 422, "results.platelets"),
    ("NaN literal", b'{"results": {"platelets": NaN}}', 422, "results.platelets"),
    ("Infinity literal", b'{"results": {"platelets": {"value": Infinity, "unit": "K/uL"}}}', 422, "results.platelets"),
    ("arrays nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    ("objects nested 50,000 deep", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, 400, "nested too deeply"),
    ("invalid UTF-8", b'{"results": {"platelets": 45}, "x": "\xff\xfe"}', 400, "UTF-8"),
    ("array of numbers", b"[1, 2, 3]", 422, "index 0, 1, 2"),
    ("results null", b'{"results": null}', 422, "results"),
    ("value as a string", b'{"results": {"platelets": "45"}}', 422, "results.platelets"),
    ("value as a boolean", b'{"results": {"platelets": true}}', 422, "results.platelets"),
    ("huge but finite value", b'{"results": {"platelets": 1e300}}', 422, "plausibility"),
    (
        "integer beyond float precision",
        b'{"results": {"platelets": 123456789012345678901234567890}}',
        422,
        "plausibility",
    ),
    ("negative count", b'{"results": {"platelets": -5}}', 422, "negative"),
    ("unit as a number", b'{"results": {"platelets": {"value": 45, "unit": 5}}}', 422, "results.platelets"),
    ("lesion with nothing", b'{"results": {"platelets": 45}, "skin": {"lesions": [{}]}}', 422, "skin.lesions.0"),
    ("age 500", b'{"results": {"platelets": 45}, "patient": {"age_years": 500}}', 422, "patient.age_years"),
    (
        "unknown CTCAE version",
        b'{"results": {"platelets": 45}, "options": {"ctcae_version": "9.0"}}',
        422,
        "options.ctcae_version",
    ),
    ("empty body", b"", 400, "Malformed JSON"),
    ("a bare string", b'"hello"', 422, "object or an array"),
    ("RDW-SD in fL", b'{"results": {"rdw": {"value": 45, "unit": "fL"}}}', 422, "RDW-SD"),
    # clinical-rules §1 v2 (issue 13): "a JSON integer of 5,001 digits is a 500" -> a 422 naming the field.
    # Python reads at most 4,300 digits of an integer (int-str conversion limit); a float holds at most 309.
    ("integer of 5,001 digits", b'{"results": {"platelets": 1' + b"0" * 5000 + b"}}", 422, "results.platelets"),
    (
        "integer of 5,001 digits in a result",
        b'{"results": {"platelets": {"value": 1' + b"0" * 5000 + b', "unit": "10*9/L"}}}',
        422,
        "results.platelets",
    ),
    ("negative integer of 5,001 digits", b'{"results": {"wbc": -1' + b"0" * 5000 + b"}}", 422, "results.wbc"),
    (
        "integer of 400 digits (beyond a float)",
        b'{"results": {"platelets": {"value": 1' + b"0" * 399 + b', "unit": "10*9/L"}}}',
        422,
        "results.platelets",
    ),
    (
        "age of 5,001 digits",
        b'{"results": {"platelets": 45}, "patient": {"age_years": 1' + b"0" * 5000 + b"}}",
        422,
        "patient.age_years",
    ),
    (
        "marrow cellularity 200 %",
        b'{"results": {"platelets": 45}, "marrow": {"cellularity_percent": 200}}',
        422,
        "marrow.cellularity_percent",
    ),
]


@pytest.mark.parametrize(("name", "body", "status", "named"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_body_gets_a_clear_4xx(client, name, body, status, named):
    response = client.post("/api/v1/interpretations", data=body, content_type="application/json")
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == status
    assert named in problem["detail"] + " ".join(problem.get("errors", {}))
