"""§4 *v2* erythrocytosis: haematocrit > 52 % men / > 48 % women (sex unknown > 52 %) is a raised
haematocrit to repeat and, if persistent, investigate (`routine`); > 60 % men / > 56 % women (sex
unknown > 60 %) is an absolute erythrocytosis, `soon` (§9 v2) [S28]. Never name a disease."""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import cbc, female, finding, interpret, male, text_of, unknown_sex

P = pytest.param


@pytest.mark.parametrize(
    ("patient", "hct", "severity", "urgency"),
    [
        P(male(40), 52.0, None, "routine", id="§4 v2 men: Hct 52 on the limit (> 52): none"),
        P(male(40), 52.1, "raised_hematocrit", "routine", id="§4 v2 men: Hct 52.1 > 52 raised, routine"),
        P(male(40), 60.0, "raised_hematocrit", "routine", id="§4 v2 men: Hct 60 on the absolute limit: raised"),
        P(male(40), 60.1, "absolute_erythrocytosis", "soon", id="§4 v2 men: Hct 60.1 > 60 absolute, soon"),
        P(female(40), 48.0, None, "routine", id="§4 v2 women: Hct 48 on the limit: none"),
        P(female(40), 48.1, "raised_hematocrit", "routine", id="§4 v2 women: Hct 48.1 > 48 raised"),
        P(female(40), 56.0, "raised_hematocrit", "routine", id="§4 v2 women: Hct 56 on the absolute limit"),
        P(female(40), 56.1, "absolute_erythrocytosis", "soon", id="§4 v2 women: Hct 56.1 > 56 absolute, soon"),
        P(unknown_sex(40), 50.0, None, "routine", id="§4 v2 sex unknown: Hct 50 (> 48 only): none (> 52)"),
        P(unknown_sex(40), 52.0, None, "routine", id="§4 v2 sex unknown: Hct 52 on the limit: none"),
        P(unknown_sex(40), 52.1, "raised_hematocrit", "routine", id="§4 v2 sex unknown: Hct 52.1 > 52 raised"),
        P(unknown_sex(40), 58.0, "raised_hematocrit", "routine", id="§4 v2 sex unknown: Hct 58 (> 56 only): raised"),
        P(unknown_sex(40), 60.0, "raised_hematocrit", "routine", id="§4 v2 sex unknown: Hct 60 on the limit"),
        P(unknown_sex(40), 60.1, "absolute_erythrocytosis", "soon", id="§4 v2 sex unknown: Hct 60.1 > 60 absolute"),
    ],
)
def test_erythrocytosis_bounds(patient: dict, hct: float, severity: str | None, urgency: str) -> None:
    ans = interpret(cbc(patient, full=True, hemoglobin=15.0, hematocrit=hct))
    f = finding(ans, "erythrocytosis")
    assert (f is not None) is (severity is not None)
    assert ans["urgency"] == urgency
    if f is not None:
        assert f["severity"] == severity
        assert "[S28]" in f["detail"]
        assert ("absolute_erythrocytosis" in ans["urgency_reasons"]) is (urgency == "soon")


def test_issue_synthea_female_is_not_called_normal() -> None:
    # issue 13: Synthea female Hb 16.3 H, Hct 49.4 H, RBC 5.72 H got "No abnormal finding in the counts sent."
    ans = interpret(cbc(female(40), hemoglobin=16.3, hematocrit=49.4, rbc=5.72))
    f = finding(ans, "erythrocytosis")
    assert f is not None and f["severity"] == "raised_hematocrit"  # §4 v2 women > 48 %
    assert "repeat" in f["detail"] and "investigate" in f["detail"]
    assert "No abnormal finding" not in ans["summary"]
    assert ans["urgency"] == "routine"


def test_never_names_polycythaemia() -> None:
    # §4 v2 "Never name a disease from counts (polycythaemia vera needs criteria the counts cannot give)"
    # (the citation [S28] keeps its published title; the answer's own words never name the disease)
    for hct in (53.0, 65.0):
        ans = interpret(cbc(male(40), hematocrit=hct))
        words = [(f["title"], f["detail"], f["severity"]) for f in ans["findings"]]
        txt = text_of([words, ans["summary"], ans["urgency_reasons"]])
        assert "erythrocytosis" in txt
        assert "polycyth" not in txt and "vera" not in txt


@pytest.mark.parametrize(
    ("patient", "present"),
    [
        P(
            male(14.9),
            False,
            id="§4 v2 'men' from 15 y (erythrocytosis_from_age_years): boy 14.9 y Hct 55: not applied",
        ),
        P(male(15), True, id="§4 v2 man of 15 (on the bound) Hct 55 > 52: raised"),
        P(male(15.1), True, id="§4 v2 man of 15.1 Hct 55: raised"),
        P({"sex": "male"}, True, id="§4 v2 no age given: read as adult (§2), Hct 55 raised"),
    ],
)
def test_erythrocytosis_applies_to_men_and_women_from_15(patient: dict, present: bool) -> None:
    ans = interpret(cbc(patient, hematocrit=55.0))
    assert (finding(ans, "erythrocytosis") is not None) is present
