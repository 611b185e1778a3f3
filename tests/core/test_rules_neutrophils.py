"""§4 neutropenia (< 1.5; Duffy-null < 1.2), bands, CTCAE v5 grades, Duffy caveat; §2 Duffy ranges."""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import analyte, cbc, female, finding, interpret, res

P = pytest.param


@pytest.mark.parametrize(
    ("neut", "present"),
    [
        P(1.51, False, id="§4 neutropenia: 1.51 above"),
        P(1.5, False, id="§4 neutropenia: exactly 1.5 is not (strict <)"),
        P(1.49, True, id="§4 neutropenia: 1.49 < 1.5"),
        P(0.05, True, id="§4 neutropenia: 0.05"),
    ],
)
def test_neutropenia_threshold(neut: float, present: bool) -> None:
    ans = interpret(cbc(full=True, neutrophils=neut))
    assert (finding(ans, "neutropenia") is not None) is present


@pytest.mark.parametrize(
    ("neut", "band"),
    [
        P(1.49, "mild", id="§4 band mild 1.0-1.49 (1.49)"),
        P(1.0, "mild", id="§4 band mild: 1.0 on bound"),
        P(0.99, "moderate", id="§4 band moderate 0.5-0.99 (0.99)"),
        P(0.5, "moderate", id="§4 band moderate: 0.5 on bound"),
        P(0.49, "severe", id="§4 band severe <0.5 (0.49)"),
        P(0.1, "severe", id="§4 band severe: 0.1 (profound is <0.1)"),
        P(0.09, "profound", id="§4 band profound <0.1 (0.09)"),
    ],
)
def test_neutropenia_bands(neut: float, band: str) -> None:
    f = finding(interpret(cbc(full=True, neutrophils=neut)), "neutropenia")
    assert f is not None
    assert f["severity"] == band


@pytest.mark.parametrize(
    ("neut", "grade"),
    [
        P(2.0, None, id="§4 CTCAE v5: 2.0 = fallback LLN, not graded"),
        P(1.99, 1, id="§4 CTCAE v5 grade 1: <LLN-1.5 (1.99)"),
        P(1.5, 1, id="§4 CTCAE v5 grade 1: 1.5 on bound"),
        P(1.49, 2, id="§4 CTCAE v5 grade 2: <1.5-1.0 (1.49)"),
        P(1.0, 2, id="§4 CTCAE v5 grade 2: 1.0 on bound"),
        P(0.99, 3, id="§4 CTCAE v5 grade 3: <1.0-0.5 (0.99)"),
        P(0.5, 3, id="§4 CTCAE v5 grade 3: 0.5 on bound"),
        P(0.49, 4, id="§4 CTCAE v5 grade 4: <0.5 (0.49)"),
    ],
)
def test_ctcae_v5_neutrophil_grade(neut: float, grade: int | None) -> None:
    ans = interpret(cbc(full=True, neutrophils=neut))
    assert analyte(ans, "neutrophils")["ctcae_grade"] == grade
    f = finding(ans, "neutropenia")
    if f is not None:
        assert f["grade"] == grade


def test_ctcae_grade1_uses_lab_lln() -> None:
    # §4 grade 1 = < LLN-1.5 with the LLN of the range in use (lab 1.8)
    ans = interpret(cbc(full=True, neutrophils=res(1.7, low=1.8, high=7.5)))
    a = analyte(ans, "neutrophils")
    assert a["flag"] == "L"
    assert a["ctcae_grade"] == 1
    assert finding(ans, "neutropenia") is None  # §4 neutropenia is < 1.5


@pytest.mark.parametrize(
    ("neut", "present"),
    [
        P(1.21, False, id="§4 Duffy-null neutropenia: 1.21 not below 1.2"),
        P(1.2, False, id="§4 Duffy-null neutropenia: 1.2 on bound, not below"),
        P(1.19, True, id="§4 Duffy-null neutropenia: below 1.2 (1.19)"),
        P(1.4, False, id="§4 Duffy-null: 1.4 would be neutropenia otherwise, not here"),
    ],
)
def test_duffy_null_neutropenia_threshold(neut: float, present: bool) -> None:
    ans = interpret(cbc(female(duffy_null=True), full=True, wbc=5.0, neutrophils=neut))
    assert (finding(ans, "neutropenia") is not None) is present


@pytest.mark.parametrize(
    ("duffy", "present"),
    [
        P(False, True, id="§4 Duffy stated negative: 1.4 < 1.5 is neutropenia"),
        P(None, True, id="§2 Duffy unknown: never inferred, 1.4 is neutropenia"),
    ],
)
def test_duffy_not_stated_uses_standard_threshold(duffy: bool | None, present: bool) -> None:
    ans = interpret(cbc(female(duffy_null=duffy), full=True, neutrophils=1.4))
    assert (finding(ans, "neutropenia") is not None) is present


@pytest.mark.parametrize(
    ("duffy", "low", "high", "origin"),
    [
        P(True, 1.2, 5.4, "duffy_null", id="§2 Duffy-null neutrophils 1.2-5.4"),
        P(False, 2.0, 7.0, "fallback", id="§2 Duffy stated false: adult fallback 2.0-7.0"),
        P(None, 2.0, 7.0, "fallback", id="§2 Duffy unknown: adult fallback 2.0-7.0"),
    ],
)
def test_duffy_neutrophil_range(duffy: bool | None, low: float, high: float, origin: str) -> None:
    ans = interpret(cbc(female(duffy_null=duffy), neutrophils=3.0))
    rr = analyte(ans, "neutrophils")["reference_range"]
    assert (rr["low"], rr["high"], rr["origin"]) == (low, high, origin)


@pytest.mark.parametrize(
    ("neut", "flag"),
    [
        P(1.2, "N", id="§2 Duffy-null range 1.2-5.4: 1.2 on bound N"),
        P(1.19, "L", id="§2 Duffy-null range: 1.19 L"),
        P(5.4, "N", id="§2 Duffy-null range: 5.4 on bound N"),
        P(5.41, "H", id="§2 Duffy-null range: 5.41 H"),
    ],
)
def test_duffy_neutrophil_flags(neut: float, flag: str) -> None:
    ans = interpret(cbc(female(duffy_null=True), neutrophils=neut))
    assert analyte(ans, "neutrophils")["flag"] == flag


@pytest.mark.parametrize(
    "neut",
    [
        P(1.49, id="§4 Duffy caveat: isolated 1.49, no Duffy status"),
        P(1.2, id="§4 Duffy caveat: isolated 1.2, no Duffy status"),
        P(1.0, id="§4 Duffy caveat: isolated 1.0 on bound, no Duffy status"),
    ],
)
def test_duffy_caveat_isolated_mild_neutropenia(neut: float) -> None:
    f = finding(interpret(cbc(female(), full=True, neutrophils=neut)), "neutropenia")
    assert f is not None
    assert "duffy" in (f["detail"] or "").lower()


def test_no_duffy_caveat_when_duffy_status_stated_negative() -> None:
    # §4: the caveat is for "no Duffy status"; the request says the patient is not Duffy-null
    f = finding(interpret(cbc(female(duffy_null=False), full=True, neutrophils=1.2)), "neutropenia")
    assert f is not None
    assert "duffy" not in (f["detail"] or "").lower()


def test_neutropenia_threshold_fixed_whatever_lab_range() -> None:
    # §4 neutropenia: < 1.5 (the lab range sets the flag only)
    ans = interpret(cbc(full=True, neutrophils=res(1.4, low=1.0, high=6.0)))
    assert finding(ans, "neutropenia") is not None
    assert analyte(ans, "neutrophils")["flag"] == "N"


@pytest.mark.parametrize(
    ("age", "neut", "present"),
    [
        P(1.5, 1.49, True, id="§4 child 18 months: neutropenia < 1.5"),
        P(8, 1.5, False, id="§4 child 8 y: 1.5 not neutropenia"),
        P(13, 1.49, True, id="§4 child 13 y: neutropenia < 1.5"),
    ],
)
def test_neutropenia_threshold_in_children(age: float, neut: float, present: bool) -> None:
    ans = interpret(cbc({"sex": "female", "age_years": age}, neutrophils=neut))
    assert (finding(ans, "neutropenia") is not None) is present


def test_duffy_caveat_range_is_written_from_the_two_rules_without_inventing_a_bound() -> None:
    # §4: the caveat covers an isolated count from 1.0 up to the neutropenia limit (< 1.5, strict);
    # 1.495 is in it, so "1.0-1.49" (computed as 1.5 - 0.01) was wrong: the text reads the table
    # values only (issue 11 item 1).
    f = finding(interpret(cbc(female(), full=True, neutrophils=1.495)), "neutropenia")
    assert f is not None
    assert "An isolated count from 1 to below 1.5 may be a Duffy-null associated neutrophil count" in f["detail"]
    assert "1.49 " not in f["detail"]
