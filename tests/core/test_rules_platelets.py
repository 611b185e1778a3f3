"""§4 platelets: thrombocytopenia < 150, CTCAE v5/v6 grades, bleeding-risk bands, thrombocytosis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.rules_helpers import analyte, cbc, finding, interpret, res
from tests.hypothesis_profiles import examples

P = pytest.param


@pytest.mark.parametrize(
    ("plt", "present"),
    [
        P(149.9, True, id="§4 thrombocytopenia: 149.9 < 150"),
        P(150.0, False, id="§4 thrombocytopenia: exactly 150 is not (strict <)"),
        P(150.1, False, id="§4 thrombocytopenia: 150.1 above"),
        P(1.0, True, id="§4 thrombocytopenia: 1"),
    ],
)
def test_thrombocytopenia_threshold(plt: float, present: bool) -> None:
    ans = interpret(cbc(platelets=plt))
    assert (finding(ans, "thrombocytopenia") is not None) is present


@pytest.mark.parametrize(
    ("plt", "grade"),
    [
        P(150.0, None, id="§4 CTCAE v5: 150 = LLN not graded"),
        P(149.9, 1, id="§4 CTCAE v5 grade 1: <LLN-75 (149.9)"),
        P(75.0, 1, id="§4 CTCAE v5 grade 1: 75 on bound"),
        P(74.9, 2, id="§4 CTCAE v5 grade 2: <75-50 (74.9)"),
        P(50.0, 2, id="§4 CTCAE v5 grade 2: 50 on bound"),
        P(49.9, 3, id="§4 CTCAE v5 grade 3: <50-25 (49.9)"),
        P(25.0, 3, id="§4 CTCAE v5 grade 3: 25 on bound"),
        P(24.9, 4, id="§4 CTCAE v5 grade 4: <25 (24.9)"),
        P(10.0, 4, id="§4 CTCAE v5 grade 4: 10 (v5 has no split at 10)"),
        P(9.9, 4, id="§4 CTCAE v5 grade 4: 9.9"),
    ],
)
def test_ctcae_v5_platelet_grade(plt: float, grade: int | None) -> None:
    ans = interpret(cbc(platelets=plt))
    assert ans["ctcae_version"] == "5.0"  # §4 version always echoed; 5.0 default
    assert analyte(ans, "platelets")["ctcae_grade"] == grade
    f = finding(ans, "thrombocytopenia")
    if f is not None:
        assert f["grade"] == grade


@pytest.mark.parametrize(
    ("plt", "grade"),
    [
        P(149.9, 1, id="§4 CTCAE v6 grade 1: 149.9"),
        P(75.0, 1, id="§4 CTCAE v6 grade 1: 75"),
        P(74.9, 2, id="§4 CTCAE v6 grade 2: 74.9"),
        P(50.0, 2, id="§4 CTCAE v6 grade 2: 50"),
        P(49.9, 3, id="§4 CTCAE v6 grade 3: 49.9"),
        P(25.0, 3, id="§4 CTCAE v6 grade 3: 25 (v6 split moved to 10)"),
        P(24.9, 3, id="§4 CTCAE v6 grade 3: 24.9 (v5 would be 4)"),
        P(10.0, 3, id="§4 CTCAE v6 grade 3: 10 on bound"),
        P(9.9, 4, id="§4 CTCAE v6 grade 4: <10 (9.9)"),
    ],
)
def test_ctcae_v6_platelet_grade(plt: float, grade: int) -> None:
    ans = interpret(cbc(platelets=plt, ctcae="6.0"))
    assert ans["ctcae_version"] == "6.0"
    assert analyte(ans, "platelets")["ctcae_grade"] == grade
    assert finding(ans, "thrombocytopenia")["grade"] == grade


def test_ctcae_version_echoed_when_requested_5() -> None:
    ans = interpret(cbc(platelets=24.9, ctcae="5.0"))
    assert ans["ctcae_version"] == "5.0"
    assert analyte(ans, "platelets")["ctcae_grade"] == 4


@pytest.mark.parametrize(
    ("plt", "band"),
    [
        P(149.9, "minimal", id="§4 bleeding band: >=50 minimal (149.9)"),
        P(50.0, "minimal", id="§4 bleeding band: 50 minimal"),
        P(49.9, "minor_trauma", id="§4 bleeding band: 20-49 minor trauma (49.9)"),
        P(20.0, "minor_trauma", id="§4 bleeding band: 20 minor trauma"),
        P(19.9, "spontaneous_possible", id="§4 bleeding band: 10-19 spontaneous possible (19.9)"),
        P(10.0, "spontaneous_possible", id="§4 bleeding band: 10"),
        P(9.9, "serious_spontaneous", id="§4 bleeding band: <10 serious (9.9)"),
        P(5.0, "serious_spontaneous", id="§4 bleeding band: 5 serious"),
        P(4.9, "life_threatening", id="§4 bleeding band: <5 life-threatening (4.9)"),
    ],
)
def test_bleeding_risk_band(plt: float, band: str) -> None:
    f = finding(interpret(cbc(platelets=plt)), "thrombocytopenia")
    assert f is not None
    assert f["severity"] == band


@pytest.mark.parametrize(
    ("plt", "present"),
    [
        P(449.9, False, id="§4 thrombocytosis: 449.9 below 450"),
        P(450.0, True, id="§4 thrombocytosis: >=450 (on bound)"),
        P(450.1, True, id="§4 thrombocytosis: 450.1"),
        P(410.1, False, id="§4 thrombocytosis: above range high 410 but < 450"),
        P(1000.0, True, id="§4 thrombocytosis: 1000"),
    ],
)
def test_thrombocytosis_threshold(plt: float, present: bool) -> None:
    ans = interpret(cbc(platelets=plt))
    assert (finding(ans, "thrombocytosis") is not None) is present
    assert finding(ans, "thrombocytopenia") is None


@pytest.mark.parametrize(
    ("plt", "low", "high", "present", "flag", "grade"),
    [
        P(
            145.0,
            140.0,
            400.0,
            True,
            "N",
            None,
            id="§4 lab LLN 140: 145 still thrombocytopenia (<150) but flag N, no CTCAE grade",
        ),
        P(139.9, 140.0, 400.0, True, "L", 1, id="§4 lab LLN 140: 139.9 grade 1, flag L"),
        P(140.0, 140.0, 400.0, True, "N", None, id="§2/§4 lab LLN 140: on bound inside range"),
        P(
            155.0,
            160.0,
            450.0,
            False,
            "L",
            1,
            id="§4 lab LLN 160: 155 flag L and grade 1, but no thrombocytopenia (>=150)",
        ),
        P(420.0, 150.0, 450.0, False, "N", None, id="§2 lab high 450 wins: 420 is N"),
    ],
)
def test_lab_range_sets_flag_and_grade1_but_not_threshold(
    plt: float, low: float, high: float, present: bool, flag: str, grade: int | None
) -> None:
    ans = interpret(cbc(platelets=res(plt, low=low, high=high)))
    assert (finding(ans, "thrombocytopenia") is not None) is present
    a = analyte(ans, "platelets")
    assert a["flag"] == flag
    assert a["ctcae_grade"] == grade
    assert a["reference_range"]["low"] == low
    assert a["reference_range"]["origin"] == "laboratory"


def test_isolated_mild_thrombocytopenia_says_often_benign() -> None:
    # §4: "100-149 isolated and stable is often benign; say so [S2]"
    f = finding(interpret(cbc(full=True, platelets=120.0)), "thrombocytopenia")
    assert f is not None
    assert "benign" in (f["detail"] or "").lower()


def _v5_grade(plt: float, lln: float = 150.0) -> int | None:
    # §4 CTCAE v5 "Platelet count decreased": 1 = <LLN-75; 2 = <75-50; 3 = <50-25; 4 = <25
    if plt < 25:
        return 4
    if plt < 50:
        return 3
    if plt < 75:
        return 2
    if plt < lln:
        return 1
    return None


@settings(max_examples=examples(60), deadline=None)
@given(st.floats(min_value=0.5, max_value=4999.0, allow_nan=False).map(lambda x: round(x, 1)))
def test_platelet_rules_property(plt: float) -> None:
    """§4 for any plausible count: thrombocytopenia iff < 150, thrombocytosis iff >= 450."""
    ans = interpret(cbc(platelets=plt))
    assert (finding(ans, "thrombocytopenia") is not None) is (plt < 150)
    assert (finding(ans, "thrombocytosis") is not None) is (plt >= 450)
    assert analyte(ans, "platelets")["ctcae_grade"] == _v5_grade(plt)
    # §3 critical: platelets < 20 or >= 1000
    assert analyte(ans, "platelets")["critical"] is (plt < 20 or plt >= 1000)


def test_thrombocytosis_threshold_fixed_whatever_lab_range() -> None:
    # §4 thrombocytosis: platelets >= 450 (a fixed threshold like thrombocytopenia's 150)
    ans = interpret(cbc(platelets=res(460.0, low=150.0, high=500.0)))
    assert finding(ans, "thrombocytosis") is not None
    assert analyte(ans, "platelets")["flag"] == "N"


@pytest.mark.parametrize(
    ("age", "plt", "present"),
    [
        P(8, 160.0, False, id="§4 child 8 y: 160 not thrombocytopenia (< 150 whatever the range)"),
        P(8, 149.9, True, id="§4 child 8 y: 149.9 thrombocytopenia"),
        P(1.5, 149.9, True, id="§4 child 18 months: 149.9 thrombocytopenia"),
        P(13, 149.9, True, id="§4 child 13 y: 149.9 thrombocytopenia"),
    ],
)
def test_thrombocytopenia_threshold_in_children(age: float, plt: float, present: bool) -> None:
    ans = interpret(cbc({"sex": "male", "age_years": age}, platelets=plt))
    assert (finding(ans, "thrombocytopenia") is not None) is present


def test_often_benign_range_is_written_from_the_two_rules_without_inventing_a_bound() -> None:
    # §4: "100-149 isolated and stable is often benign [S2]"; thrombocytopenia is platelets < 150
    # (strict, §0 "All comparisons are strict"), so 149.5 is in the range: the text says "from 100 to
    # below 150", read from thresholds.csv, not "100-149" computed as 150 - 1 (issue 11 item 1).
    f = finding(interpret(cbc(full=True, platelets=149.5)), "thrombocytopenia")
    assert f is not None
    assert "A count from 100 to below 150 that is isolated and stable on repeat is often benign [S2]." in f["detail"]
    assert "149" not in f["detail"].replace("149.5", "")
