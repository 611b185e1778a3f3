"""§6 aplastic anaemia severity from counts (Camitta / Bacigalupo), marrow criterion, caveat."""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import cbc, female, interpret, text_of

P = pytest.param
M, NM, NA = "met", "not_met", "not_assessed"

# Every case below is in the marrow-failure range (§5: Hb 8 < 10 and platelets < 50 or
# neutrophils < 1.5), so §6 is assessed.


def _aa(
    *,
    neut: float | None,
    plt: float,
    retic: float | None = None,
    method: str | None = None,
    marrow: tuple[float, float | None] | None = None,
    **extra: float,
) -> dict:
    results: dict = {"hemoglobin": 8.0, "wbc": 1.5, "platelets": plt, "neutrophils": neut, "reticulocytes": retic}
    results.update(extra)
    return interpret(cbc(female(), method=method, marrow=marrow, **results))


@pytest.mark.parametrize(
    ("kw", "assessment", "criteria"),
    [
        P(dict(neut=0.3, plt=15.0), "severe", (M, M, NA), id="§6 (a)+(b) met, no retic -> severe"),
        P(dict(neut=0.2, plt=15.0), "severe", (M, M, NA), id="§6 very severe needs ANC < 0.2: 0.2 -> severe"),
        P(dict(neut=0.19, plt=15.0), "very_severe", (M, M, NA), id="§6 >=2 criteria and ANC 0.19 < 0.2 -> very_severe"),
        P(dict(neut=0.49, plt=19.9, retic=70.0), "severe", (M, M, NM), id="§6 (a) 0.49 < 0.5 and (b) 19.9 < 20"),
        P(
            dict(neut=0.5, plt=19.9, retic=70.0),
            "not_severe",
            (NM, M, NM),
            id="§6 (a) ANC 0.5 not < 0.5: one criterion -> not_severe",
        ),
        P(
            dict(neut=0.3, plt=20.0, retic=70.0),
            "not_severe",
            (M, NM, NM),
            id="§6 (b) platelets 20 not < 20: one criterion -> not_severe",
        ),
        P(
            dict(neut=0.1, plt=30.0, retic=70.0),
            "not_severe",
            (M, NM, NM),
            id="§6 ANC 0.1 but only one criterion -> not_severe (not very severe)",
        ),
        P(
            dict(neut=0.1, plt=30.0, retic=59.9),
            "very_severe",
            (M, NM, M),
            id="§6 (a)+(c) and ANC < 0.2 -> very_severe",
        ),
        P(dict(neut=0.3, plt=30.0, retic=59.9), "severe", (M, NM, M), id="§6 (c) automated default: retic 59.9 < 60"),
        P(dict(neut=0.3, plt=30.0, retic=60.0), "not_severe", (M, NM, NM), id="§6 (c) automated: retic 60 not < 60"),
        P(
            dict(neut=0.3, plt=30.0, retic=59.9, method="automated"),
            "severe",
            (M, NM, M),
            id="§6 (c) method automated: 59.9 < 60",
        ),
        P(dict(neut=0.3, plt=30.0, retic=19.9, method="manual"), "severe", (M, NM, M), id="§6 (c) manual: 19.9 < 20"),
        P(
            dict(neut=0.3, plt=30.0, retic=20.0, method="manual"),
            "not_severe",
            (M, NM, NM),
            id="§6 (c) manual: 20 not < 20",
        ),
        P(
            dict(neut=0.3, plt=30.0, retic=30.0, method="manual"),
            "not_severe",
            (M, NM, NM),
            id="§6 (c) manual: 30 (would meet the automated < 60)",
        ),
        P(dict(neut=1.0, plt=15.0, retic=10.0), "severe", (NM, M, M), id="§6 (b)+(c) -> severe"),
        P(dict(neut=0.3, plt=30.0), "indeterminate", (M, NM, NA), id="§6 exactly (a) met, no retic -> indeterminate"),
        P(dict(neut=1.0, plt=15.0), "indeterminate", (NM, M, NA), id="§6 exactly (b) met, no retic -> indeterminate"),
        P(
            dict(neut=1.0, plt=30.0),
            "not_severe",
            (NM, NM, NA),
            id="§6 neither (a) nor (b), no retic -> not_severe (retic alone cannot make two)",
        ),
        P(
            dict(neut=None, plt=10.0, retic=70.0),
            "indeterminate",
            (NA, M, NM),
            id="§6 generalised: (b) met, ANC missing could make two -> indeterminate",
        ),
        P(
            dict(neut=None, plt=30.0, retic=50.0),
            "indeterminate",
            (NA, NM, M),
            id="§6 generalised: (c) met, ANC missing could make two -> indeterminate",
        ),
        P(
            dict(neut=None, plt=30.0, retic=70.0),
            "not_severe",
            (NA, NM, NM),
            id="§6 generalised: only ANC missing, at most one -> not_severe",
        ),
    ],
)
def test_aplastic_assessment(kw: dict, assessment: str, criteria: tuple[str, str, str]) -> None:
    ans = _aa(**kw)
    aa = ans["aplastic_anemia"]
    assert aa["assessment"] == assessment
    expected = dict(zip(("neutrophils", "platelets", "reticulocytes"), criteria, strict=True))
    assert aa["criteria"] == expected
    assert sorted(aa["criteria_met"]) == sorted(k for k, v in expected.items() if v == M)
    assert aa["caveat"]
    # §6 "Never output 'non-severe aplastic anaemia' from counts alone."
    txt = text_of(ans)
    assert "non-severe aplastic" not in txt
    assert "nonsevere aplastic" not in txt


def test_derived_absolute_reticulocytes_feed_criterion_c() -> None:
    # §1 absolute retic = 0.5 % x 2.0 x 10 = 10; §6 (c) manual < 20
    ans = _aa(neut=0.3, plt=30.0, method="manual", reticulocytes_percent=0.5, rbc=2.0)
    aa = ans["aplastic_anemia"]
    assert aa["criteria"]["reticulocytes"] == M
    assert aa["assessment"] == "severe"


@pytest.mark.parametrize(
    "doc",
    [
        P(cbc(female(), full=True), id="§6 normal CBC -> not_applicable"),
        P(
            cbc(female(), full=True, platelets=10.0),
            id="§6 isolated plt 10 ((b) met) but no pancytopenia/MFR -> not_applicable",
        ),
        P(
            cbc(female(), full=True, hemoglobin=11.0, platelets=120.0),
            id="§6 bicytopenia outside MFR -> not_applicable",
        ),
        P(cbc(female(), platelets=250.0), id="§6 platelets only -> not_applicable"),
    ],
)
def test_aplastic_not_applicable(doc: dict) -> None:
    aa = interpret(doc)["aplastic_anemia"]
    assert aa["assessment"] == "not_applicable"
    assert isinstance(aa["caveat"], str) and aa["caveat"].strip()  # §6 "Always attach the caveat"


def test_pancytopenia_without_marrow_failure_range_is_assessed() -> None:
    # §6 "Assessed when pancytopenia or the marrow-failure range is present"
    ans = interpret(cbc(female(), hemoglobin=11.0, wbc=3.5, neutrophils=2.0, platelets=120.0, reticulocytes=70.0))
    assert ans["aplastic_anemia"]["assessment"] == "not_severe"


def test_caveat_mentions_marrow() -> None:
    caveat = _aa(neut=0.3, plt=15.0)["aplastic_anemia"]["caveat"].lower()
    assert "marrow" in caveat  # §6 severity also needs marrow cellularity


@pytest.mark.parametrize(
    ("marrow", "criterion"),
    [
        P(None, "not_provided", id="§6 no marrow data -> not_provided"),
        P((15.0, None), "met", id="§6 marrow cellularity 15 < 25 -> met"),
        P((24.9, None), "met", id="§6 marrow cellularity 24.9 < 25 -> met"),
        P((25.0, 29.9), "met", id="§6 cellularity 25-50 with residual 29.9 < 30 -> met"),
        P((25.0, 30.0), "not_met", id="§6 cellularity 25 with residual 30 (not < 30) -> not_met"),
        P((40.0, 10.0), "met", id="§6 cellularity 40 with residual 10 -> met"),
        P((50.0, 29.9), "met", id="§6 cellularity 50 on bound, residual 29.9 -> met"),
        P((50.0, 45.0), "not_met", id="§6 cellularity 50, residual 45 -> not_met"),
        P((50.1, 10.0), "not_met", id="§6 cellularity 50.1 > 50 -> not_met"),
        P((60.0, None), "not_met", id="§6 cellularity 60 -> not_met"),
    ],
)
def test_marrow_criterion(marrow: tuple[float, float | None] | None, criterion: str) -> None:
    aa = _aa(neut=0.3, plt=15.0, marrow=marrow)["aplastic_anemia"]
    assert aa["marrow_criterion"] == criterion
    assert aa["assessment"] == "severe"  # §6 the blood-count assessment does not change


@pytest.mark.parametrize(
    ("results", "assessment", "deciding"),
    [
        P(
            dict(platelets=40.0, hemoglobin=7.0),
            "indeterminate",
            ["neutrophils", "reticulocytes"],
            id="§6 v2 general indeterminate: plt 40 + Hb 7.0, neither ANC nor retic sent (0 met, 2 could)",
        ),
        P(
            dict(platelets=40.0, hemoglobin=7.0, neutrophils=1.0),
            "not_severe",
            [],
            id="§6 v2: plt 40 + ANC 1.0, none met, retic alone cannot make two -> not_severe",
        ),
        P(
            dict(platelets=40.0, hemoglobin=7.0, reticulocytes=70.0),
            "not_severe",
            [],
            id="§6 v2: none met, retic 70 not met, ANC alone cannot make two -> not_severe",
        ),
        P(
            dict(platelets=15.0, hemoglobin=7.0),
            "indeterminate",
            ["neutrophils", "reticulocytes"],
            id="§6 v2: (b) plt 15 met, ANC and retic not sent -> indeterminate",
        ),
    ],
)
def test_general_indeterminate_names_the_analytes(results: dict, assessment: str, deciding: list[str]) -> None:
    # clinical-rules §6 v2: "fewer than two criteria met, but the criteria whose analyte was not sent could
    # bring it to two -> indeterminate, naming those analytes (platelets 40 and haemoglobin 7.0 with
    # neither neutrophils nor reticulocytes sent: indeterminate)"
    aa = interpret(cbc(female(), **results))["aplastic_anemia"]
    assert aa["assessment"] == assessment
    for name in deciding:
        assert name in aa["text"]
    assert aa["caveat"]  # §6 the caveat is attached whenever it is assessed
