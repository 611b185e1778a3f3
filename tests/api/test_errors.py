"""Every error kind of the contract answers RFC 9457 problem+json (api-contract.md, Errors)."""

from __future__ import annotations

import json

import pytest

from tests.api.helpers import URL, assert_problem

# --- 400 malformed JSON --------------------------------------------------------------------------


def test_malformed_json_is_400_naming_the_position(client):
    response = client.post(URL, data='{"results": {"platelets": 45,}}', content_type="application/json")
    body = assert_problem(response, 400)
    assert "line 1 column 30" in body["detail"]


def test_empty_body_is_400(client):
    assert_problem(client.post(URL, data=b"", content_type="application/json"), 400)


def test_body_that_is_not_utf8_is_400(client):
    response = client.post(URL, data=b'{"results": {"\xff": 1}}', content_type="application/json")
    assert_problem(response, 400)


def test_deeply_nested_json_is_400_not_500(client):
    response = client.post(URL, data="[" * 100_000, content_type="application/json")
    assert_problem(response, 400)


# --- 413 too large -------------------------------------------------------------------------------


def test_body_over_max_content_length_is_413(make_app):
    client = make_app(MAX_CONTENT_LENGTH=100).test_client()
    data = json.dumps({"results": {"platelets": 45}, "patient": {"id": "x" * 200}})
    body = assert_problem(client.post(URL, data=data, content_type="application/json"), 413)
    assert "100 bytes" in body["detail"]


def test_more_items_than_max_batch_items_is_413(make_app):
    client = make_app(MAX_BATCH_ITEMS=3).test_client()
    items = [{"results": {"platelets": 45}}] * 4
    body = assert_problem(client.post(URL, json=items), 413)
    assert "3" in body["detail"]


def test_default_limits_come_from_config(app):
    assert app.config["MAX_CONTENT_LENGTH"] == 2 * 1024 * 1024
    assert app.config["MAX_BATCH_ITEMS"] == 1000


# --- 415 wrong content type ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", "text/json"]
)
def test_wrong_content_type_is_415(client, content_type):
    response = client.post(URL, data='{"results": {"platelets": 45}}', content_type=content_type)
    assert_problem(response, 415)


def test_missing_content_type_is_415(client):
    assert_problem(client.post(URL, data='{"results": {"platelets": 45}}'), 415)


# --- 422 parses but is not a valid CBC -----------------------------------------------------------


def _errors_for(client, body) -> dict[str, list[str]]:
    return assert_problem(client.post(URL, json=body), 422)["errors"]


def test_unknown_top_level_field_is_422(client, example_cbc):
    example_cbc["colour"] = "red"
    assert "colour" in _errors_for(client, example_cbc)


def test_unknown_analyte_is_422_with_its_path(client, example_cbc):
    example_cbc["results"]["plt"] = 45
    assert "results.plt" in _errors_for(client, example_cbc)


def test_unknown_nested_field_is_422_with_its_path(client, example_cbc):
    example_cbc["results"]["platelets"]["flag"] = "L"
    assert "results.platelets.flag" in _errors_for(client, example_cbc)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("patient.age_years", "34"),
        ("patient.age_years", True),
        ("patient.sex", "f"),
        ("patient.pregnant", "no"),
        ("patient.pregnant", 0),
        ("patient.pregnancy_trimester", 2.5),
        ("collected_at", "yesterday"),
        ("collected_at", "2026-11-20T08:30:00"),  # no UTC offset
        ("reticulocyte_method", "by eye"),
        ("options.ctcae_version", 5),
        ("marrow.cellularity_percent", 120),
        ("skin.fever", "yes"),
        ("context.myelosuppressive_therapy", "yes"),  # clinical-rules §11 v2: a boolean
    ],
)
def test_wrong_type_or_value_is_422_naming_the_field(client, example_cbc, path, value):
    *parents, leaf = path.split(".")
    target = example_cbc
    for key in parents:
        target = target.setdefault(key, {})
    target[leaf] = value
    assert path in _errors_for(client, example_cbc)


def test_boolean_analyte_value_is_422(client):
    errors = _errors_for(client, {"results": {"platelets": {"value": True, "unit": "10*9/L"}}})
    assert "results.platelets.value" in errors


def test_bare_string_value_is_422(client):
    assert "results.platelets" in _errors_for(client, {"results": {"platelets": "45"}})


def test_string_value_in_result_object_is_422(client):
    errors = _errors_for(client, {"results": {"platelets": {"value": "45", "unit": "10*9/L"}}})
    assert "results.platelets.value" in errors


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_422(client, literal):
    bare = client.post(URL, data=f'{{"results": {{"platelets": {literal}}}}}', content_type="application/json")
    assert "results.platelets" in assert_problem(bare, 422)["errors"]
    nested = client.post(
        URL,
        data=f'{{"results": {{"platelets": {{"value": {literal}, "unit": "10*9/L"}}}}}}',
        content_type="application/json",
    )
    assert "results.platelets.value" in assert_problem(nested, 422)["errors"]


def test_null_result_is_422(client):
    assert "results.platelets" in _errors_for(client, {"results": {"platelets": None}})


def test_result_object_without_unit_is_422(client):
    body = {"results": {"platelets": {"value": 45}}}
    assert "results.platelets.unit" in _errors_for(client, body)


def test_missing_results_is_422(client, example_cbc):
    del example_cbc["results"]
    assert "results" in _errors_for(client, example_cbc)


def test_empty_results_is_422(client):
    assert "results" in _errors_for(client, {"results": {}})


def test_results_must_be_an_object(client):
    assert "results" in _errors_for(client, {"results": [45]})


def test_reference_range_low_not_below_high_is_set_aside_not_422(client):
    # clinical-rules §2 v2: "a range that is not [plausible] is set aside with a note, never a 422" (v1 refused it)
    body = {"results": {"wbc": {"value": 2.1, "unit": "10*9/L", "reference_range": {"low": 11, "high": 4}}}}
    response = client.post(URL, json=body)
    assert response.status_code == 200
    rr = response.get_json()["analytes"]["wbc"]["reference_range"]
    assert (rr["low"], rr["high"], rr["origin"]) == (4.0, 10.0, "fallback")  # §2 adult WBC 4.0-10.0
    assert "set aside" in rr["note"]


def test_lesion_without_type_or_size_is_422(client, example_cbc):
    example_cbc["skin"]["lesions"] = [{"type": "petechiae"}, {"blanching": False}]
    assert "skin.lesions.1" in _errors_for(client, example_cbc)


def test_birth_date_without_collected_at_is_422_naming_collected_at(client):
    body = {"patient": {"birth_date": "1990-01-01"}, "results": {"platelets": 45}}
    assert "collected_at" in _errors_for(client, body)


def test_unknown_unit_is_422_naming_the_unit(client, example_cbc):
    example_cbc["results"]["platelets"]["unit"] = "furlongs"
    assert "results.platelets.unit" in _errors_for(client, example_cbc)


@pytest.mark.parametrize("body", [42, "a CBC", None, True])
def test_body_that_is_neither_object_nor_array_is_422(client, body):
    response = client.post(URL, data=json.dumps(body), content_type="application/json")
    assert "body" in assert_problem(response, 422)["errors"]


def test_list_with_one_bad_item_is_422_naming_its_index(client, example_cbc):
    bad = {"results": {"platelets": {"value": "45", "unit": "10*9/L"}}}
    body = assert_problem(client.post(URL, json=[example_cbc, bad, example_cbc]), 422)
    assert list(body["errors"]) == ["1.results.platelets.value"]
    assert "1" in body["detail"]


def test_list_with_an_item_that_is_not_an_object_names_its_index(client, example_cbc):
    body = assert_problem(client.post(URL, json=[example_cbc, 45]), 422)
    assert "1" in body["errors"]


def test_list_with_one_unknown_unit_is_422_naming_its_index(client, example_cbc):
    bad = json.loads(json.dumps(example_cbc))
    bad["results"]["platelets"]["unit"] = "furlongs"
    body = assert_problem(client.post(URL, json=[example_cbc, example_cbc, bad]), 422)
    assert "2.results.platelets.unit" in body["errors"]
    assert not any(path.startswith(("0.", "1.")) for path in body["errors"])


# --- 404 / 405 under /api ------------------------------------------------------------------------


def test_unknown_path_under_api_is_404_problem(client):
    assert_problem(client.get("/api/v1/nothing-here"), 404)


def test_wrong_method_under_api_is_405_problem_with_allow(client):
    response = client.get(URL)
    assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]


def test_outside_api_errors_keep_flask_pages(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype != "application/problem+json"


def test_unexpected_error_under_api_is_500_problem(make_app, monkeypatch):
    from labservice.api import interpretations

    def boom(*args, **kwargs):
        raise RuntimeError("engine failure")

    monkeypatch.setattr(interpretations, "interpret_documents", boom)
    app = make_app()
    app.testing = False  # let Flask turn the exception into a 500 instead of re-raising it
    body = assert_problem(app.test_client().post(URL, json={"results": {"platelets": 45}}), 500)
    assert "engine failure" not in body["detail"]


def test_a_male_patient_marked_pregnant_is_422_naming_the_field(client):
    # clinical-rules §8 v2 "a male patient marked pregnant is a 422"
    body = {"patient": {"sex": "male", "pregnant": True}, "results": {"platelets": 120}}
    errors = assert_problem(client.post(URL, json=body), 422)["errors"]
    assert list(errors) == ["patient.pregnant"]


def test_an_implausible_laboratory_range_is_not_a_422(client):
    # clinical-rules §2 v2: an implausible lab range is set aside with a note, "never a 422"
    body = {
        "patient": {"sex": "female", "age_years": 34},
        "results": {"hemoglobin": {"value": 7.2, "unit": "g/dL", "reference_range": {"low": 10, "high": 7.5}}},
    }
    response = client.post(URL, json=body)
    assert response.status_code == 200
    rr = response.get_json()["analytes"]["hemoglobin"]["reference_range"]
    assert rr["origin"] == "fallback" and "set aside" in rr["note"]


def test_a_laboratory_flag_is_not_part_of_a_json_result(client):
    # api-contract.md: a result is {"value", "unit", "reference_range"?}; unknown fields are a 422
    body = {"results": {"neutrophils": {"value": 0.9, "unit": "10*9/L", "flag": "LL"}}}
    errors = assert_problem(client.post(URL, json=body), 422)["errors"]
    assert "results.neutrophils.flag" in errors


def test_myelosuppressive_therapy_context_is_accepted_over_http(client, example_cbc):
    # clinical-rules §11 v2 / api-contract.md v2 `context` {`myelosuppressive_therapy`}: WBC 0.3 on treatment
    example_cbc["results"] = {"wbc": 0.3, "neutrophils": 0.1, "platelets": 15, "hemoglobin": 8.0}
    example_cbc["context"] = {"myelosuppressive_therapy": True}
    response = client.post("/api/v1/interpretations", json=example_cbc)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["aplastic_anemia"]["assessment"] == "not_applicable"
    assert answer["aplastic_anemia"]["not_applicable_reasons"] == ["myelosuppressive_therapy"]
    assert answer["urgency"] == "urgent"
    assert "critical_value_possible_nadir" in answer["urgency_reasons"]
