"""§4 anaemia: WHO 2024 cut-offs per population, WHO 2011 severity bands, CTCAE anaemia grade."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.core.rules_helpers import (
    COLLECTED_AT,
    analyte,
    cbc,
    female,
    finding,
    interpret,
    male,
    not_assessed,
    pregnant,
    unknown_sex,
)

P = pytest.param


@pytest.mark.parametrize(
    ("patient", "hb", "present"),
    [
        # men >= 15 y: 13.0
        P(male(40), 12.99, True, id="§4 WHO men>=15y cut 13.0: 12.99 anaemia"),
        P(male(40), 13.0, False, id="§4 WHO men>=15y: 13.0 on cut-off not anaemia"),
        P(male(15), 12.99, True, id="§4 WHO men>=15y: age 15 uses 13.0"),
        P(male(15), 13.0, False, id="§4 WHO men>=15y: age 15 Hb 13.0"),
        P(male(16), 12.5, True, id="§4 WHO men>=15y: age 16 (child ref range, adult WHO cut)"),
        # non-pregnant women >= 15 y: 12.0
        P(female(40), 11.99, True, id="§4 WHO women>=15y cut 12.0: 11.99"),
        P(female(40), 12.0, False, id="§4 WHO women>=15y: 12.0 on cut-off"),
        P(female(15), 11.99, True, id="§4 WHO women>=15y: age 15"),
        P(female(40, pregnant=False), 11.5, True, id="§4 pregnant=False uses 12.0"),
        P(female(40, pregnant=None), 11.5, True, id="§4 pregnancy not stated = not pregnant: 12.0"),
        # pregnancy
        P(pregnant(1), 10.99, True, id="§4 WHO pregnancy T1 cut 11.0: 10.99"),
        P(pregnant(1), 11.0, False, id="§4 WHO pregnancy T1: 11.0 on cut-off"),
        P(pregnant(1), 11.5, False, id="§4 WHO pregnancy T1: 11.5 (would be anaemia non-pregnant)"),
        P(pregnant(2), 10.49, True, id="§4 WHO pregnancy T2 cut 10.5: 10.49"),
        P(pregnant(2), 10.5, False, id="§4 WHO pregnancy T2: 10.5 on cut-off"),
        P(pregnant(2), 10.9, False, id="§4 WHO pregnancy T2: 10.9 (T1/T3 would be anaemia)"),
        P(pregnant(3), 10.99, True, id="§4 WHO pregnancy T3 cut 11.0: 10.99"),
        P(pregnant(3), 11.0, False, id="§4 WHO pregnancy T3: 11.0 on cut-off"),
        P(pregnant(None), 10.99, True, id="§4 WHO pregnancy trimester unknown -> 11.0: 10.99"),
        P(pregnant(None), 10.6, True, id="§4 trimester unknown uses 11.0 not 10.5: 10.6"),
        P(pregnant(None), 11.0, False, id="§4 trimester unknown: 11.0 on cut-off"),
        # children 6-23 months: 10.5
        P(female(0.5), 10.49, True, id="§4 WHO children 6-23 mo cut 10.5: 6 months 10.49"),
        P(female(0.5), 10.5, False, id="§4 WHO children 6-23 mo: 6 months 10.5"),
        P(male(1.0), 10.49, True, id="§4 WHO children 6-23 mo: 12 months 10.49"),
        P(male(1.0), 10.5, False, id="§4 WHO children 6-23 mo: 12 months 10.5"),
        P(male(1.0), 10.9, False, id="§4 WHO children 6-23 mo: 12 months 10.9 (24-59 mo would be)"),
        P(female(1.9), 10.49, True, id="§4 WHO children 6-23 mo: 22.8 months 10.49"),
        # 24-59 months: 11.0
        P(male(2.0), 10.99, True, id="§4 WHO children 24-59 mo cut 11.0: 24 months 10.99"),
        P(male(2.0), 11.0, False, id="§4 WHO children 24-59 mo: 24 months 11.0"),
        P(female(3), 10.99, True, id="§4 WHO children 24-59 mo: 3 y 10.99"),
        P(female(3), 11.0, False, id="§4 WHO children 24-59 mo: 3 y 11.0"),
        P(male(4.9), 10.99, True, id="§4 WHO children 24-59 mo: 58.8 months 10.99"),
        P(male(4.9), 11.2, False, id="§4 WHO children 24-59 mo: 4.9 y 11.2 (5-11 y would be)"),
        # 5-11 y: 11.5
        P(female(5), 11.49, True, id="§4 WHO children 5-11 y cut 11.5: 5 y 11.49"),
        P(female(5), 11.5, False, id="§4 WHO children 5-11 y: 5 y 11.5"),
        P(male(8), 11.49, True, id="§4 WHO children 5-11 y: 8 y 11.49"),
        P(male(8), 11.5, False, id="§4 WHO children 5-11 y: 8 y 11.5"),
        P(female(11), 11.49, True, id="§4 WHO children 5-11 y: 11 y 11.49"),
        P(female(11), 11.8, False, id="§4 WHO children 5-11 y: 11 y 11.8 (12-14 y would be)"),
        # 12-14 y: 12.0 (both sexes)
        P(male(12), 11.99, True, id="§4 WHO children 12-14 y cut 12.0: 12 y 11.99"),
        P(male(12), 12.0, False, id="§4 WHO children 12-14 y: 12 y 12.0"),
        P(female(13), 11.99, True, id="§4 WHO children 12-14 y: 13 y 11.99"),
        P(female(13), 12.0, False, id="§4 WHO children 12-14 y: 13 y 12.0"),
        P(male(13), 12.5, False, id="§4 WHO children 12-14 y: boy 13 y 12.5 (men's 13.0 from 15 y)"),
        P(male(14.9), 12.5, False, id="§4 WHO children 12-14 y: boy 14.9 y 12.5"),
        # sex unknown adult (engine convention): < 12.0 anaemia, >= 13.0 none
        P(unknown_sex(40), 11.99, True, id="§4 sex unknown adult: 11.99 below both cut-offs"),
        P(unknown_sex(40), 13.0, False, id="§4 sex unknown adult: 13.0 at/above both cut-offs"),
        P(unknown_sex(8), 11.49, True, id="§4 sex unknown child 8 y: children cut-off is sex-free"),
    ],
)
def test_who_cutoffs(patient: dict, hb: float, present: bool) -> None:
    ans = interpret(cbc(patient, hemoglobin=hb))
    assert (finding(ans, "anemia") is not None) is present
    if not present:
        assert not_assessed(ans, "anemia") is None


@pytest.mark.parametrize(
    "hb",
    [
        P(12.0, id="§4 v2 sex unknown adult 12.0: on the lowest cut-off that could apply (12.0), not anaemia"),
        P(12.5, id="§4 v2 sex unknown adult 12.5: above the lowest cut-off, not anaemia"),
        P(12.99, id="§4 v2 sex unknown adult 12.99: above the lowest cut-off, not anaemia"),
    ],
)
def test_sex_unknown_between_cutoffs_uses_the_lowest(hb: float) -> None:
    # clinical-rules §4 v2: "With sex unknown, the cut-off is the lowest that could apply (women's 12.0
    # from 15 y)" (v1 left these not assessed)
    ans = interpret(cbc(unknown_sex(40), hemoglobin=hb))
    assert finding(ans, "anemia") is None
    assert not_assessed(ans, "anemia") is None


@pytest.mark.parametrize(
    ("birth", "hb", "present"),
    [
        P(dt.date(2010, 1, 1), 12.5, True, id="§4 birth_date -> 16.9 y boy: men's cut 13.0"),
        P(dt.date(2013, 1, 1), 12.5, False, id="§4 birth_date -> 13.9 y boy: 12-14 y cut 12.0"),
        P(dt.date(2021, 11, 1), 10.9, True, id="§4 birth_date -> 5.05 y: 5-11 y cut 11.5"),
        P(dt.date(2025, 11, 1), 10.9, False, id="§4 birth_date -> 12.6 months: 6-23 mo cut 10.5"),
    ],
)
def test_age_from_birth_date(birth: dt.date, hb: float, present: bool) -> None:
    patient = {"sex": "male", "birth_date": birth}
    ans = interpret(cbc(patient, hemoglobin=hb, collected_at=COLLECTED_AT))
    assert (finding(ans, "anemia") is not None) is present


@pytest.mark.parametrize(
    ("patient", "hb", "severity"),
    [
        P(female(40), 11.99, "mild", id="§4 WHO 2011 mild: down to 11.0 (11.99)"),
        P(female(40), 11.0, "mild", id="§4 WHO 2011 mild: 11.0 on bound"),
        P(female(40), 10.99, "moderate", id="§4 WHO 2011 moderate 8.0-10.9 (10.99)"),
        P(female(40), 8.0, "moderate", id="§4 WHO 2011 moderate: 8.0 on bound"),
        P(female(40), 7.99, "severe", id="§4 WHO 2011 severe <8.0 (7.99)"),
        P(male(40), 12.99, "mild", id="§4 WHO 2011 mild: man 12.99"),
        P(male(40), 11.0, "mild", id="§4 WHO 2011 mild: man 11.0"),
        P(male(40), 10.9, "moderate", id="§4 WHO 2011 moderate: man 10.9"),
        P(male(40), 7.9, "severe", id="§4 WHO 2011 severe: man 7.9"),
        P(female(15), 10.5, "moderate", id="§4 WHO 2011 bands apply from 15 y"),
        P(female(13), 9.0, "moderate", id="§4 v2 severity for every group: child 13 y 9.0 moderate (8.0-10.9)"),
        P(male(8), 7.0, "severe", id="§4 v2 severity for every group: child 8 y 7.0 severe (< 8.0)"),
        P(pregnant(1), 9.0, "moderate", id="§4 v2 severity for every group: pregnancy 9.0 moderate (7.0-9.9)"),
    ],
)
def test_severity_bands(patient: dict, hb: float, severity: str | None) -> None:
    f = finding(interpret(cbc(patient, hemoglobin=hb)), "anemia")
    assert f is not None
    assert f["severity"] == severity


@pytest.mark.parametrize(
    ("patient", "hb", "grade"),
    [
        P(female(40), 12.0, None, id="§4 CTCAE anaemia: female LLN 12.0 not graded"),
        P(female(40), 11.99, 1, id="§4 CTCAE anaemia grade 1: <LLN-10.0 (11.99)"),
        P(female(40), 10.0, 1, id="§4 CTCAE anaemia grade 1: 10.0 on bound"),
        P(female(40), 9.99, 2, id="§4 CTCAE anaemia grade 2: <10.0-8.0 (9.99)"),
        P(female(40), 8.0, 2, id="§4 CTCAE anaemia grade 2: 8.0 on bound"),
        P(female(40), 7.99, 3, id="§4 CTCAE anaemia grade 3: <8.0 (7.99)"),
        P(female(40), 5.0, 3, id="§4 CTCAE anaemia grade 3: 5.0 (no count-based grade 4)"),
        P(male(40), 13.0, None, id="§4 CTCAE anaemia: male LLN 13.0 not graded"),
        P(male(40), 12.99, 1, id="§4 CTCAE anaemia grade 1: male <13.0 (12.99)"),
    ],
)
def test_ctcae_anemia_grade(patient: dict, hb: float, grade: int | None) -> None:
    ans = interpret(cbc(patient, hemoglobin=hb))
    assert analyte(ans, "hemoglobin")["ctcae_grade"] == grade
    f = finding(ans, "anemia")
    if f is not None:
        assert f["grade"] == grade


def test_anemia_uses_who_cutoff_not_lab_range() -> None:
    # §4 anaemia = Hb below the WHO cut-off; a lab LLN of 11.5 still sets the flag (§2)
    ans = interpret(
        cbc(female(40), hemoglobin={"value": 11.8, "unit": "g/dL", "reference_range": {"low": 11.5, "high": 15.5}})
    )
    assert finding(ans, "anemia") is not None
    assert analyte(ans, "hemoglobin")["flag"] == "N"


def test_anemia_not_from_lab_range_when_above_who_cutoff() -> None:
    ans = interpret(
        cbc(female(40), hemoglobin={"value": 12.2, "unit": "g/dL", "reference_range": {"low": 12.5, "high": 16.0}})
    )
    assert finding(ans, "anemia") is None
    assert analyte(ans, "hemoglobin")["flag"] == "L"


def test_infant_under_6_months_not_silently_normal() -> None:
    # §4 has no WHO cut-off below 6 months; §5 "missing ... is not assessed, never normal"
    ans = interpret(cbc(female(0.25), hemoglobin=9.0))
    assert finding(ans, "anemia") is not None or not_assessed(ans, "anemia") is not None


@pytest.mark.parametrize(
    ("hb", "severity"),
    [
        P(11.99, None, id="§4 sex unknown 11.99: mild for both sexes"),
        P(10.5, "moderate", id="§4 sex unknown 10.5: moderate 8.0-10.9 (sex-independent band)"),
        P(7.9, "severe", id="§4 sex unknown 7.9: severe < 8.0"),
    ],
)
def test_sex_unknown_severity(hb: float, severity: str | None) -> None:
    f = finding(interpret(cbc(unknown_sex(40), hemoglobin=hb)), "anemia")
    assert f is not None
    if severity is not None:
        assert f["severity"] == severity
    else:
        assert f["severity"] in ("mild", None)
