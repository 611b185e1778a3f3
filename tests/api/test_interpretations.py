"""POST /api/v1/interpretations answers the contract's 200 shape (api-contract.md, The answer).

Clinical values are tested in tests/core; here only the presence and types of contract fields.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from labservice.core import vocabulary
from tests.api.helpers import URL

FLAGS = {"N", "L", "H", "LL", "HH"}
FINDING_CODES = set(vocabulary.ENGINE_FINDING_CODES)  # pinned to api-contract.md in tests/core/test_findings_table.py
ASSESSMENTS = {"very_severe", "severe", "indeterminate", "not_severe", "not_applicable"}
MARROW_CRITERIA = {"met", "not_met", "not_provided"}
ATTRIBUTIONS = {"consistent", "may_contribute", "not_explained", "not_assessed", "none"}
URGENCIES = set(vocabulary.URGENCY_NAMES)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def assert_contract_answer(answer: dict[str, Any], sent_analytes: set[str]) -> None:
    """Every field the contract names is present with its documented type."""
    for key in ("id", "ruleset_version", "ctcae_version", "summary"):
        assert isinstance(answer[key], str) and answer[key], key

    analytes = answer["analytes"]
    assert isinstance(analytes, dict)
    assert sent_analytes <= set(analytes)
    for name, analyte in analytes.items():
        assert _is_number(analyte["value"]), name
        assert isinstance(analyte["unit"], str), name
        rng = analyte["reference_range"]
        assert rng is None or {"low", "high", "source"} <= set(rng), name
        assert analyte["flag"] in FLAGS | {None}, name
        grade = analyte["ctcae_grade"]
        assert grade is None or (isinstance(grade, int) and not isinstance(grade, bool) and 1 <= grade <= 4), name
        assert isinstance(analyte["derived"], bool), name

    codes = []
    for finding in answer["findings"]:
        assert finding["code"] in FINDING_CODES
        codes.append(finding["code"])
        assert isinstance(finding["title"], str) and finding["title"]
        assert isinstance(finding["detail"], str) and finding["detail"]
        assert finding["grade"] is None or isinstance(finding["grade"], int)
        assert isinstance(finding["evidence"], dict)
        assert isinstance(finding["sources"], list)
        assert all(isinstance(source, str) for source in finding["sources"])
    assert len(codes) == len(set(codes)), "each finding code appears at most once per CBC"

    aplastic = answer["aplastic_anemia"]
    assert aplastic["assessment"] in ASSESSMENTS
    assert isinstance(aplastic["criteria_met"], list)
    assert all(isinstance(item, str) for item in aplastic["criteria_met"])
    assert aplastic["marrow_criterion"] in MARROW_CRITERIA
    assert isinstance(aplastic["caveat"], str) and aplastic["caveat"]

    skin = answer["skin"]
    assert isinstance(skin["lesions"], list)
    for lesion in skin["lesions"]:
        assert isinstance(lesion, dict)
        assert {"type", "hemorrhagic"} <= set(lesion)
    assert skin["attribution"] in ATTRIBUTIONS
    assert skin["expected_presentation"] is None or isinstance(skin["expected_presentation"], str)

    assert answer["urgency"] in URGENCIES


def test_contract_example_answers_200_with_every_contract_field(client, example_cbc):
    response = client.post(URL, json=example_cbc)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    answer = response.get_json()
    assert isinstance(answer, dict)
    assert_contract_answer(answer, set(example_cbc["results"]))
    assert answer["ctcae_version"] == "5.0"
    assert len(answer["skin"]["lesions"]) == len(example_cbc["skin"]["lesions"])


def test_ruleset_version_matches_healthz(client, example_cbc):
    answer = client.post(URL, json=example_cbc).get_json()
    assert answer["ruleset_version"] == client.get("/healthz").get_json()["ruleset_version"]


def test_only_results_is_required_and_a_bare_number_is_accepted(client):
    response = client.post(URL, json={"results": {"platelets": 300}})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert_contract_answer(response.get_json(), {"platelets"})


def test_lesion_with_size_but_no_type_is_accepted(client, example_cbc):
    example_cbc["skin"]["lesions"] = [{"size_mm": 5, "blanching": False}]
    assert client.post(URL, json=example_cbc).status_code == 200


def test_birth_date_with_collected_at_is_accepted(client, example_cbc):
    del example_cbc["patient"]["age_years"]
    example_cbc["patient"]["birth_date"] = "1992-03-01"
    assert client.post(URL, json=example_cbc).status_code == 200


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/fhir+json", "Application/JSON"]
)
def test_json_media_types_are_accepted(client, content_type):
    response = client.post(URL, data='{"results": {"platelets": 300}}', content_type=content_type)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_array_in_array_out_in_the_same_order(client, example_cbc):
    platelets = [45, 300, 20, 160]
    items = []
    for index, count in enumerate(platelets):
        item = copy.deepcopy(example_cbc)
        item["patient"]["id"] = f"MRN-{index}"
        item["results"]["platelets"] = {"value": count, "unit": "10*9/L"}
        items.append(item)
    response = client.post(URL, json=items)
    assert response.status_code == 200, response.get_data(as_text=True)
    answers = response.get_json()
    assert isinstance(answers, list) and len(answers) == len(items)
    for answer, count in zip(answers, platelets, strict=True):
        assert_contract_answer(answer, set(example_cbc["results"]))
        assert answer["analytes"]["platelets"]["value"] == count
    assert len({answer["id"] for answer in answers}) == len(answers)


def test_array_of_one_answers_an_array_of_one(client, example_cbc):
    answers = client.post(URL, json=[example_cbc]).get_json()
    assert isinstance(answers, list) and len(answers) == 1


def test_empty_array_answers_an_empty_array(client):
    response = client.post(URL, json=[])
    assert response.status_code == 200
    assert response.get_json() == []


def test_exactly_max_batch_items_is_accepted(make_app):
    client = make_app(MAX_BATCH_ITEMS=3).test_client()
    response = client.post(URL, json=[{"results": {"platelets": 300}}] * 3)
    assert response.status_code == 200
    assert len(response.get_json()) == 3
