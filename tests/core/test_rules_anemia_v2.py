"""§4 *v2* anaemia severity for every group (WHO 2011 [S9]), the sex-unknown cut-off and its words,
under 6 months by the laboratory's range; §9 *v2* moderate or severe anaemia is `soon` in every group.

Children 6-59 months and pregnancy: moderate 7.0-9.9, severe < 7.0; children 5-14 y, non-pregnant
women and men: moderate 8.0-10.9, severe < 8.0; "mild" starts at the group's cut-off.
"""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import cbc, female, finding, interpret, male, not_assessed, pregnant, res, unknown_sex

P = pytest.param


@pytest.mark.parametrize(
    ("patient", "hb", "severity", "urgency"),
    [
        # children 6-59 months (cut-offs 10.5 / 11.0): moderate 7.0-9.9, severe < 7.0
        P(female(1.0), 10.0, "mild", "routine", id="§4 v2 6-59 mo: Hb 10.0 mild (moderate below 10.0)"),
        P(female(1.0), 9.99, "moderate", "soon", id="§4 v2 6-59 mo: Hb 9.99 moderate, soon (§9 v2)"),
        P(male(3), 7.0, "moderate", "soon", id="§4 v2 6-59 mo: Hb 7.0 on bound moderate"),
        P(male(3), 7.1, "moderate", "soon", id="§4 v2 6-59 mo: Hb 7.1 moderate"),
        P(male(3), 6.99, "severe", "immediate", id="§4 v2 6-59 mo: Hb 6.99 severe (< 7.0; also critical §3)"),
        # pregnancy (cut-offs 11.0 / 10.5): the same bands
        P(pregnant(1), 10.0, "mild", "routine", id="§4 v2 pregnancy: Hb 10.0 mild"),
        P(pregnant(1), 9.99, "moderate", "soon", id="§4 v2 pregnancy: Hb 9.99 moderate, soon"),
        P(pregnant(2), 7.0, "moderate", "soon", id="§4 v2 pregnancy T2: Hb 7.0 moderate"),
        P(pregnant(None), 9.0, "moderate", "soon", id="§4 v2 pregnancy trimester unknown: Hb 9.0 moderate"),
        # children 5-14 y (cut-offs 11.5 / 12.0): moderate 8.0-10.9, severe < 8.0
        P(male(8), 11.0, "mild", "routine", id="§4 v2 5-14 y: Hb 11.0 mild"),
        P(male(8), 10.99, "moderate", "soon", id="§4 v2 5-14 y: Hb 10.99 moderate, soon"),
        P(male(8), 8.0, "moderate", "soon", id="§4 v2 5-14 y: Hb 8.0 on bound moderate"),
        P(male(8), 7.99, "severe", "soon", id="§4 v2 5-14 y: Hb 7.99 severe"),
        P(female(13), 9.0, "moderate", "soon", id="§4 v2 5-14 y: girl 13 Hb 9.0 moderate"),
        # adults unchanged (§4 v1 bands)
        P(female(40), 11.0, "mild", "routine", id="§4 women: Hb 11.0 mild"),
        P(female(40), 10.99, "moderate", "soon", id="§4 women: Hb 10.99 moderate"),
        P(male(40), 7.99, "severe", "soon", id="§4 men: Hb 7.99 severe"),
    ],
)
def test_severity_in_every_group(patient: dict, hb: float, severity: str, urgency: str) -> None:
    ans = interpret(cbc(patient, hemoglobin=hb))
    f = finding(ans, "anemia")
    assert f is not None
    assert f["severity"] == severity
    assert ans["urgency"] == urgency
    assert ("moderate_or_severe_anemia" in ans["urgency_reasons"]) is (severity in ("moderate", "severe"))


def test_issue_boy_of_8_with_hb_7_1_is_soon_with_severity() -> None:
    # issue 13: "A boy of 8 with Hb 7.1 is routine, at 30 he is soon"; §4 v2 5-14 y severe < 8.0, §9 v2 soon
    ans = interpret(cbc(male(8), hemoglobin=7.1))
    assert finding(ans, "anemia")["severity"] == "severe"
    assert ans["urgency"] == "soon"
    assert ans["urgency"] == interpret(cbc(male(30), hemoglobin=7.1))["urgency"]


@pytest.mark.parametrize(
    ("hb", "present"),
    [
        P(11.99, True, id="§4 v2 sex unknown adult: 11.99 below the lowest cut-off 12.0"),
        P(12.0, False, id="§4 v2 sex unknown adult: 12.0 on the lowest cut-off: not anaemia"),
        P(12.5, False, id="§4 v2 sex unknown adult: 12.5 (between 12 and 13): the cut-off is 12.0"),
    ],
)
def test_sex_unknown_uses_the_lowest_cutoff(hb: float, present: bool) -> None:
    ans = interpret(cbc(unknown_sex(40), hemoglobin=hb))
    assert (finding(ans, "anemia") is not None) is present
    assert not_assessed(ans, "anemia") is None


def test_sex_unknown_text_says_the_lowest_cutoff_and_whose_it_is() -> None:
    # issue 13: "below the WHO cut-off of 12 ... for men from 15 years" (12 is the women's); §4 v2
    detail = finding(interpret(cbc(unknown_sex(40), hemoglobin=11.0)), "anemia")["detail"]
    assert "12" in detail and "lowest" in detail and "sex not given" in detail
    assert "women from 15 years" in detail
    assert "for men" not in detail


@pytest.mark.parametrize(
    ("low", "hb", "present"),
    [
        P(10.0, 9.99, True, id="§4 v2 under 6 months: Hb 9.99 below the lab's 10.0: anaemia"),
        P(10.0, 10.0, False, id="§4 v2 under 6 months: Hb 10.0 on the lab's lower limit: not anaemia"),
    ],
)
def test_under_6_months_by_the_lab_range(low: float, hb: float, present: bool) -> None:
    ans = interpret(cbc(female(0.25), hemoglobin=res(hb, "g/dL", low=low, high=14.0)))
    f = finding(ans, "anemia")
    assert (f is not None) is present
    assert not_assessed(ans, "anemia") is None
    if f is not None:
        assert f["severity"] is None  # no WHO cut-off, no WHO severity under 6 months
        assert "laboratory" in f["detail"]


def test_under_6_months_without_a_lab_range_is_not_assessed() -> None:
    # §4 v2 "Under 6 months ... decided by the lab's range only, else not assessed"
    ans = interpret(cbc(female(0.25), hemoglobin=9.0))
    assert finding(ans, "anemia") is None
    na = not_assessed(ans, "anemia")
    assert na is not None and "6 months" in na["reason"]


@pytest.mark.parametrize(
    ("age", "severity"),
    [
        P(4.9, "moderate", id="§4 v2 child 4.9 y (6-59 months) Hb 7.5: moderate 7.0-9.9"),
        P(5.0, "severe", id="§4 v2 child 5 y (5-14 y, on the bound) Hb 7.5: severe < 8.0"),
        P(5.1, "severe", id="§4 v2 child 5.1 y Hb 7.5: severe < 8.0"),
    ],
)
def test_the_severity_bands_change_at_5_years(age: float, severity: str) -> None:
    f = finding(interpret(cbc(female(age), hemoglobin=7.5)), "anemia")
    assert f is not None and f["severity"] == severity
