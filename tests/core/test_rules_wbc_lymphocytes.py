"""§4 leukopenia (below the LLN in use) and lymphopenia, with CTCAE v5 grades; §2 Duffy-null WBC."""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import analyte, cbc, female, finding, interpret, res

P = pytest.param


@pytest.mark.parametrize(
    ("wbc", "present"),
    [
        P(4.01, False, id="§4 leukopenia fallback LLN 4.0: 4.01 above"),
        P(4.0, False, id="§4 leukopenia: 4.0 on LLN not below"),
        P(3.99, True, id="§4 leukopenia: 3.99 below adult LLN 4.0"),
    ],
)
def test_leukopenia_fallback_lln(wbc: float, present: bool) -> None:
    ans = interpret(cbc(full=True, wbc=wbc))
    assert (finding(ans, "leukopenia") is not None) is present


@pytest.mark.parametrize(
    ("wbc", "low", "present"),
    [
        P(4.4, 4.5, True, id="§4 leukopenia vs lab LLN 4.5: 4.4 below (fallback would say normal)"),
        P(4.5, 4.5, False, id="§4 leukopenia vs lab LLN 4.5: on bound"),
        P(3.6, 3.5, False, id="§4 leukopenia vs lab LLN 3.5: 3.6 not below (fallback would say low)"),
        P(3.49, 3.5, True, id="§4 leukopenia vs lab LLN 3.5: 3.49 below"),
    ],
)
def test_leukopenia_lab_lln(wbc: float, low: float, present: bool) -> None:
    ans = interpret(cbc(full=True, wbc=res(wbc, low=low, high=11.0)))
    assert (finding(ans, "leukopenia") is not None) is present


@pytest.mark.parametrize(
    ("wbc", "grade"),
    [
        P(4.0, None, id="§4 CTCAE WBC: 4.0 = LLN not graded"),
        P(3.99, 1, id="§4 CTCAE WBC grade 1: <LLN-3.0 (3.99)"),
        P(3.0, 1, id="§4 CTCAE WBC grade 1: 3.0 on bound"),
        P(2.99, 2, id="§4 CTCAE WBC grade 2: <3.0-2.0 (2.99)"),
        P(2.0, 2, id="§4 CTCAE WBC grade 2: 2.0 on bound"),
        P(1.99, 3, id="§4 CTCAE WBC grade 3: <2.0-1.0 (1.99)"),
        P(1.0, 3, id="§4 CTCAE WBC grade 3: 1.0 on bound"),
        P(0.99, 4, id="§4 CTCAE WBC grade 4: <1.0 (0.99)"),
    ],
)
def test_ctcae_wbc_grade(wbc: float, grade: int | None) -> None:
    ans = interpret(cbc(wbc=wbc))
    assert analyte(ans, "wbc")["ctcae_grade"] == grade
    f = finding(ans, "leukopenia")
    if f is not None:
        assert f["grade"] == grade


def test_ctcae_wbc_grade1_uses_lab_lln() -> None:
    # §4 grade 1 = < LLN-3.0 with the lab's LLN 4.5
    ans = interpret(cbc(wbc=res(4.2, low=4.5, high=11.0)))
    assert analyte(ans, "wbc")["ctcae_grade"] == 1
    assert finding(ans, "leukopenia")["grade"] == 1


@pytest.mark.parametrize(
    ("wbc", "present"),
    [
        P(3.0, False, id="§2/§4 Duffy-null WBC LLN 3.0: on bound"),
        P(3.5, False, id="§2/§4 Duffy-null WBC: 3.5 not below 3.0"),
        P(2.99, True, id="§2/§4 Duffy-null WBC: 2.99 below 3.0"),
    ],
)
def test_duffy_null_leukopenia(wbc: float, present: bool) -> None:
    ans = interpret(cbc(female(duffy_null=True), wbc=wbc))
    assert (finding(ans, "leukopenia") is not None) is present


@pytest.mark.parametrize(
    ("duffy", "low", "high", "origin"),
    [
        P(True, 3.0, 9.7, "duffy_null", id="§2 Duffy-null WBC 3.0-9.7"),
        P(None, 4.0, 10.0, "fallback", id="§2 Duffy unknown: WBC 4.0-10.0"),
    ],
)
def test_duffy_wbc_range(duffy: bool | None, low: float, high: float, origin: str) -> None:
    rr = analyte(interpret(cbc(female(duffy_null=duffy), wbc=6.0)), "wbc")["reference_range"]
    assert (rr["low"], rr["high"], rr["origin"]) == (low, high, origin)


@pytest.mark.parametrize(
    ("wbc", "flag"),
    [
        P(9.7, "N", id="§2 Duffy-null WBC high 9.7 on bound"),
        P(9.8, "H", id="§2 Duffy-null WBC 9.8 above 9.7"),
    ],
)
def test_duffy_wbc_flags(wbc: float, flag: str) -> None:
    assert analyte(interpret(cbc(female(duffy_null=True), wbc=wbc)), "wbc")["flag"] == flag


@pytest.mark.parametrize(
    ("lym", "present", "grade"),
    [
        P(1.01, False, None, id="§4 lymphopenia adult LLN 1.0: 1.01"),
        P(1.0, False, None, id="§4 lymphopenia: 1.0 on LLN not below"),
        P(0.99, True, 1, id="§4 lymphopenia grade 1: <LLN-0.8 (0.99)"),
        P(0.8, True, 1, id="§4 lymphopenia grade 1: 0.8 on bound"),
        P(0.79, True, 2, id="§4 lymphopenia grade 2: <0.8-0.5 (0.79)"),
        P(0.5, True, 2, id="§4 lymphopenia grade 2: 0.5 on bound"),
        P(0.49, True, 3, id="§4 lymphopenia grade 3: <0.5-0.2 (0.49)"),
        P(0.2, True, 3, id="§4 lymphopenia grade 3: 0.2 on bound"),
        P(0.19, True, 4, id="§4 lymphopenia grade 4: <0.2 (0.19)"),
    ],
)
def test_lymphopenia(lym: float, present: bool, grade: int | None) -> None:
    ans = interpret(cbc(full=True, lymphocytes=lym))
    f = finding(ans, "lymphopenia")
    assert (f is not None) is present
    assert analyte(ans, "lymphocytes")["ctcae_grade"] == grade
    if f is not None:
        assert f["grade"] == grade


@pytest.mark.parametrize(
    ("lym", "present"),
    [
        P(1.1, True, id="§4 lymphopenia below lab LLN 1.2 (1.1)"),
        P(1.2, False, id="§4 lymphopenia lab LLN 1.2 on bound"),
    ],
)
def test_lymphopenia_lab_lln(lym: float, present: bool) -> None:
    ans = interpret(cbc(full=True, lymphocytes=res(lym, low=1.2, high=3.5)))
    assert (finding(ans, "lymphopenia") is not None) is present


def test_lymphopenia_does_not_count_as_white_lineage() -> None:
    # §5: white lineage = leukopenia or neutropenia; lymphopenia alone is not a cytopenia lineage
    ans = interpret(cbc(full=True, lymphocytes=0.5, platelets=120.0))
    assert finding(ans, "bicytopenia") is None
