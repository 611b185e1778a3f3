"""clinical-rules §10 v2: nucleated red cells (> 0 per 100 leukocytes, patient older than 28 days) with any
cytopenia ask for a film review ("a leucoerythroblastic picture calls for a film review"); the card suggests
it, with LOINC 5909-7 "Blood smear finding [Identifier] in Blood by Light microscopy" (loinc.org/5909-7)."""

from __future__ import annotations

import pytest

from labservice.adapters.cbc_schema import CBC_SCHEMA
from labservice.adapters.cdshooks.suggestions import reflex_tests_for, suggestion
from labservice.core.ruleset import default_ruleset
from labservice.services.interpret import interpret_documents


def answer(nrbc: float, platelets: float) -> dict:
    doc = {
        "patient": {"sex": "female", "age_years": 40},
        "results": {"platelets": platelets, "wbc": 6.0, "hemoglobin": 13.5, "nrbc_per_100_wbc": nrbc},
    }
    return interpret_documents([CBC_SCHEMA.load(doc)])[0]


@pytest.mark.parametrize(
    ("nrbc", "platelets", "suggested"),
    [
        pytest.param(2.0, 90.0, True, id="clinical-rules §10 v2: NRBC 2 with thrombocytopenia -> film review"),
        pytest.param(0.0, 90.0, False, id="clinical-rules §10 v2: NRBC 0 -> no film review"),
        pytest.param(2.0, 250.0, False, id="clinical-rules §10 v2: NRBC without a cytopenia -> no film review"),
    ],
)
def test_nrbc_with_a_cytopenia_suggests_a_film_review(nrbc: float, platelets: float, suggested: bool) -> None:
    keys = [test.key for test in reflex_tests_for(answer(nrbc, platelets))]
    assert ("blood_film_review" in keys) is suggested


def test_the_film_review_is_a_draft_service_request_with_its_loinc_code() -> None:
    [test] = [t for t in reflex_tests_for(answer(2.0, 90.0)) if t.key == "blood_film_review"]
    made = suggestion(test, default_ruleset(), "p1", None)
    resource = made["actions"][0]["resource"]
    assert resource["code"]["coding"][0]["code"] == "5909-7"
    assert "leucoerythroblastic picture calls for a film review" in resource["reasonCode"][0]["text"]
