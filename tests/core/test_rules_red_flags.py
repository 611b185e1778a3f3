"""§7 red flags (regardless of counts) and §9: any red flag -> urgency immediate."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.core.rules_helpers import (
    COLLECTED_AT,
    PETECHIAE,
    cbc,
    female,
    finding,
    interpret,
    lesion,
    male,
)

P = pytest.param


@pytest.mark.parametrize(
    ("fever", "lesions", "present"),
    [
        P(True, [PETECHIAE], True, id="§7 fever + non-blanching petechiae -> red flag"),
        P(True, [lesion("purpura", 5.0)], True, id="§7 fever + non-blanching purpura"),
        P(True, [lesion(None, 15.0)], True, id="§7 fever + ecchymosis typed by size"),
        P(True, [lesion(None, 1.5, blanching=True)], False, id="§7 fever + blanching rash: no flag"),
        P(False, [PETECHIAE], False, id="§7 no fever + non-blanching rash: no flag"),
        P(None, [PETECHIAE], False, id="§7 fever not stated: no flag"),
        P(True, [], False, id="§7 fever without lesions: no flag"),
    ],
)
def test_fever_with_nonblanching_rash(fever: bool | None, lesions: list, present: bool) -> None:
    # platelets 250: red flag applies "regardless of counts"
    ans = interpret(cbc(male(40), full=True, fever=fever, lesions=lesions))
    assert (finding(ans, "fever_with_nonblanching_rash") is not None) is present
    if present:
        assert ans["urgency"] == "immediate"
        assert "fever_with_nonblanching_rash" in ans["urgency_reasons"]


@pytest.mark.parametrize(
    ("fever", "neut", "present"),
    [
        P(True, 0.51, False, id="§7 febrile neutropenia: ANC 0.51 > 0.5"),
        P(True, 0.5, True, id="§7 febrile neutropenia: ANC <= 0.5 (on 0.5)"),
        P(True, 0.49, True, id="§7 febrile neutropenia: ANC 0.49"),
        P(True, 0.05, True, id="§7 febrile neutropenia: ANC 0.05"),
        P(False, 0.1, False, id="§7 no fever: no febrile neutropenia"),
        P(None, 0.1, False, id="§7 fever not stated: no febrile neutropenia"),
    ],
)
def test_febrile_neutropenia(fever: bool | None, neut: float, present: bool) -> None:
    ans = interpret(cbc(male(40), full=True, neutrophils=neut, fever=fever))
    assert (finding(ans, "febrile_neutropenia") is not None) is present
    if present:
        assert ans["urgency"] == "immediate"
        assert "febrile_neutropenia" in ans["urgency_reasons"]
    else:
        assert "febrile_neutropenia" not in ans["urgency_reasons"]


def test_febrile_neutropenia_from_derived_neutrophils() -> None:
    # §1 derived ANC = 2.0 x 20 / 100 = 0.4 <= 0.5 with fever
    ans = interpret(cbc(male(40), wbc=2.0, neutrophils_percent=20.0, fever=True))
    assert finding(ans, "febrile_neutropenia") is not None
    assert ans["urgency"] == "immediate"


@pytest.mark.parametrize(
    ("patient", "lesions", "present"),
    [
        P(female(8), [PETECHIAE], True, id="§7 child 8 y with petechiae -> red flag"),
        P(male(17.9), [PETECHIAE], True, id="§7 young person 17.9 y (< 18) -> red flag"),
        P(male(18), [PETECHIAE], False, id="§7 age 18 not < 18: no child red flag"),
        P(female(40), [PETECHIAE], False, id="§7 adult: no child red flag"),
        P(female(8), [lesion(None, 1.9)], True, id="§7 child: petechiae by size 1.9 < 2 mm"),
        P(female(8), [lesion(None, 2.0)], False, id="§7 child: 2.0 mm is purpura, not petechiae"),
        P(
            female(8),
            [lesion("petechiae", 1.0, blanching=True)],
            False,
            id="§7 child: blanching spots are not petechiae -> no flag",
        ),
        P(female(8), [], False, id="§7 child without lesions: no flag"),
    ],
)
def test_unexplained_petechiae_child(patient: dict, lesions: list, present: bool) -> None:
    ans = interpret(cbc(patient, platelets=250.0, fever=False, lesions=lesions))
    assert (finding(ans, "unexplained_petechiae_child") is not None) is present
    if present:
        assert ans["urgency"] == "immediate"
        assert "unexplained_petechiae_child" in ans["urgency_reasons"]


def test_child_red_flag_with_birth_date() -> None:
    patient = {"sex": "female", "birth_date": dt.date(2010, 6, 1)}  # 16.5 y at collection
    ans = interpret(cbc(patient, platelets=250.0, lesions=[PETECHIAE], collected_at=COLLECTED_AT))
    assert finding(ans, "unexplained_petechiae_child") is not None


def test_red_flag_outranks_urgent() -> None:
    # §9 the highest any finding asks for: red flag (immediate) over critical value (urgent)
    ans = interpret(cbc(male(40), full=True, platelets=5.0, fever=True, lesions=[PETECHIAE]))
    assert ans["urgency"] == "immediate"
    assert "fever_with_nonblanching_rash" in ans["urgency_reasons"]


@pytest.mark.parametrize(
    ("patient", "fever", "code"),
    [
        P(
            male(40),
            True,
            "fever_with_nonblanching_rash",
            id="§7 regardless of counts: fever + rash with no platelet count",
        ),
        P(
            female(8),
            False,
            "unexplained_petechiae_child",
            id="§7 regardless of counts: child petechiae with no platelet count",
        ),
    ],
)
def test_red_flags_without_counts(patient: dict, fever: bool, code: str) -> None:
    ans = interpret(cbc(patient, hemoglobin=13.0, fever=fever, lesions=[PETECHIAE]))
    assert finding(ans, code) is not None
    assert ans["urgency"] == "immediate"
    assert code in ans["urgency_reasons"]
