"""§5 combined cytopenias: bicytopenia, pancytopenia, marrow-failure range; missing lineages."""

from __future__ import annotations

import itertools

import pytest

from tests.core.rules_helpers import cbc, female, finding, interpret, not_assessed

P = pytest.param

# Low values (adult female, §4): Hb 11.0 < 12.0 anaemia; WBC 3.5 < 4.0 leukopenia; platelets 120 < 150.
LOW = {"hemoglobin": 11.0, "wbc": 3.5, "platelets": 120.0}
OK = {"hemoglobin": 14.0, "wbc": 6.0, "platelets": 250.0}


@pytest.mark.parametrize(
    "low",
    [
        P(combo, id=f"§5 lineages low: {'+'.join(combo) or 'none'}")
        for n in range(4)
        for combo in itertools.combinations(("hemoglobin", "wbc", "platelets"), n)
    ],
)
def test_lineage_matrix(low: tuple[str, ...]) -> None:
    values = {k: (LOW[k] if k in low else OK[k]) for k in OK}
    ans = interpret(cbc(female(), neutrophils=3.0, **values))
    assert (finding(ans, "bicytopenia") is not None) is (len(low) == 2)  # §5 exactly two
    assert (finding(ans, "pancytopenia") is not None) is (len(low) == 3)  # §5 all three


@pytest.mark.parametrize(
    ("wbc", "neut", "white_low"),
    [
        P(3.5, 3.0, True, id="§5 white lineage low by leukopenia only"),
        P(5.0, 1.49, True, id="§5 white lineage low by neutropenia only (1.49)"),
        P(5.0, 1.5, False, id="§5 white lineage: neutrophils 1.5 not low"),
        P(4.0, 2.5, False, id="§5 white lineage: WBC 4.0 on LLN not low"),
    ],
)
def test_white_lineage_is_leukopenia_or_neutropenia(wbc: float, neut: float, white_low: bool) -> None:
    ans = interpret(cbc(female(), hemoglobin=14.0, platelets=120.0, wbc=wbc, neutrophils=neut))
    assert (finding(ans, "bicytopenia") is not None) is white_low


@pytest.mark.parametrize(
    ("plt", "hb", "code"),
    [
        P(149.9, 11.0, "pancytopenia", id="§5 pancytopenia: platelets 149.9 low"),
        P(150.0, 11.0, "bicytopenia", id="§5 platelets 150 not low -> bicytopenia"),
        P(120.0, 11.99, "pancytopenia", id="§5 pancytopenia: Hb 11.99 < 12.0 (female)"),
        P(120.0, 12.0, "bicytopenia", id="§5 Hb 12.0 not anaemia (female) -> bicytopenia"),
    ],
)
def test_pancytopenia_boundaries(plt: float, hb: float, code: str) -> None:
    ans = interpret(cbc(female(), platelets=plt, hemoglobin=hb, wbc=3.5, neutrophils=2.0))
    assert finding(ans, code) is not None
    other = "bicytopenia" if code == "pancytopenia" else "pancytopenia"
    assert finding(ans, other) is None


def test_bicytopenia_with_white_lineage_missing_and_pancytopenia_not_assessed() -> None:
    # §5 + engine convention: two low lineages reported; pancytopenia undecidable without WBC/ANC
    ans = interpret(cbc(female(), hemoglobin=11.0, platelets=120.0))
    assert finding(ans, "bicytopenia") is not None
    assert finding(ans, "pancytopenia") is None
    na = not_assessed(ans, "pancytopenia")
    assert na is not None
    assert {"wbc", "neutrophils"} & set(na["needs"])


def test_pancytopenia_not_assessed_without_hemoglobin() -> None:
    # §5 "e.g. pancytopenia not assessable without haemoglobin"
    ans = interpret(cbc(female(), platelets=120.0, wbc=3.5, neutrophils=2.0))
    assert finding(ans, "bicytopenia") is not None
    na = not_assessed(ans, "pancytopenia")
    assert na is not None
    assert na["needs"] == ["hemoglobin"]


def test_single_low_lineage_two_missing_not_assessed() -> None:
    # §5: a missing lineage is "not assessed", never "normal"
    ans = interpret(cbc(female(), platelets=120.0))
    assert finding(ans, "bicytopenia") is None
    assert finding(ans, "pancytopenia") is None
    assert not_assessed(ans, "pancytopenia") is not None
    assert not_assessed(ans, "bicytopenia") is not None


@pytest.mark.parametrize(
    ("values", "present"),
    [
        P({"hemoglobin": 9.99, "platelets": 49.9}, True, id="§5 MFR: Hb 9.99 + plt 49.9"),
        P({"hemoglobin": 10.0, "platelets": 49.9}, False, id="§5 MFR: Hb 10.0 not < 10.0"),
        P({"hemoglobin": 9.99, "platelets": 50.0}, False, id="§5 MFR: plt 50 not < 50"),
        P({"neutrophils": 1.49, "platelets": 49.9}, True, id="§5 MFR: ANC 1.49 + plt 49.9"),
        P({"neutrophils": 1.5, "platelets": 49.9}, False, id="§5 MFR: ANC 1.5 not < 1.5"),
        P({"hemoglobin": 9.99, "neutrophils": 1.49}, True, id="§5 MFR: Hb 9.99 + ANC 1.49"),
        P({"hemoglobin": 9.99, "neutrophils": 1.5}, False, id="§5 MFR: Hb 9.99 + ANC 1.5"),
        P({"hemoglobin": 9.0, "neutrophils": 1.0, "platelets": 30.0}, True, id="§5 MFR: all three"),
        P({"platelets": 10.0}, False, id="§5 MFR: one criterion only (plt 10)"),
        P({"hemoglobin": 7.5}, False, id="§5 MFR: one criterion only (Hb 7.5)"),
    ],
)
def test_marrow_failure_range(values: dict[str, float], present: bool) -> None:
    base = {"hemoglobin": 14.0, "neutrophils": 3.0, "platelets": 250.0, "wbc": 6.0}
    base.update(values)
    ans = interpret(cbc(female(), **base))
    assert (finding(ans, "marrow_failure_range") is not None) is present


def test_marrow_failure_range_not_assessed_when_missing_count_could_decide() -> None:
    # §5: plt 30 meets one criterion, Hb 11 does not; neutrophils missing would decide it
    ans = interpret(cbc(female(), platelets=30.0, hemoglobin=11.0))
    assert finding(ans, "marrow_failure_range") is None
    na = not_assessed(ans, "marrow_failure_range")
    assert na is not None
    assert "neutrophils" in na["needs"]


def test_marrow_failure_range_found_despite_missing_third_count() -> None:
    ans = interpret(cbc(female(), platelets=30.0, hemoglobin=9.0))
    assert finding(ans, "marrow_failure_range") is not None
    assert not_assessed(ans, "marrow_failure_range") is None


@pytest.mark.parametrize(
    ("patient", "hb", "code"),
    [
        P(
            {"sex": "female", "age_years": 30, "pregnant": True, "pregnancy_trimester": 2},
            10.7,
            "bicytopenia",
            id="§4/§5 pregnant T2 Hb 10.7 not anaemia (cut 10.5) -> bicytopenia",
        ),
        P(
            {"sex": "female", "age_years": 30, "pregnant": True, "pregnancy_trimester": 3},
            10.7,
            "pancytopenia",
            id="§4/§5 pregnant T3 Hb 10.7 anaemia (cut 11.0) -> pancytopenia",
        ),
        P(
            {"sex": "male", "age_years": 8},
            11.6,
            "bicytopenia",
            id="§4/§5 child 8 y Hb 11.6 not anaemia (cut 11.5) -> bicytopenia",
        ),
        P(
            {"sex": "male", "age_years": 40},
            11.6,
            "pancytopenia",
            id="§4/§5 man Hb 11.6 anaemia (cut 13.0) -> pancytopenia",
        ),
    ],
)
def test_red_lineage_uses_population_cutoff(patient: dict, hb: float, code: str) -> None:
    ans = interpret(cbc(patient, hemoglobin=hb, wbc=3.0, neutrophils=1.0, platelets=100.0))
    assert finding(ans, code) is not None


def test_sex_unknown_hb_above_the_lowest_cutoff_is_bicytopenia() -> None:
    # clinical-rules §4 v2: "With sex unknown, the cut-off is the lowest that could apply (women's 12.0
    # from 15 y)": Hb 12.5 is not anaemia, so the red lineage is not low and two low lineages are
    # bicytopenia (§5), with nothing left undecided (v1 left it not assessed).
    ans = interpret(
        cbc({"sex": "unknown", "age_years": 40}, hemoglobin=12.5, wbc=3.0, neutrophils=1.0, platelets=100.0)
    )
    assert finding(ans, "pancytopenia") is None
    assert finding(ans, "bicytopenia") is not None
    assert not_assessed(ans, "pancytopenia") is None


@pytest.mark.parametrize(
    ("duffy", "code"),
    [
        P(True, None, id="§2/§4 Duffy-null WBC 3.5 + ANC 1.3 not low -> no bicytopenia"),
        P(None, "bicytopenia", id="§4 no Duffy status: WBC 3.5 + ANC 1.3 low -> bicytopenia"),
    ],
)
def test_duffy_null_white_lineage(duffy: bool | None, code: str | None) -> None:
    ans = interpret(cbc(female(duffy_null=duffy), hemoglobin=14.0, wbc=3.5, neutrophils=1.3, platelets=100.0))
    assert (finding(ans, "bicytopenia") is not None) is (code == "bicytopenia")


# --- §5 v2: the white lineage from what was sent; bicytopenia with a lineage not assessed ----------


@pytest.mark.parametrize(
    ("white", "state"),
    [
        P({"wbc": 3.5}, "low", id="§5 v2 WBC 3.5 low, neutrophils not sent: white low"),
        P({"neutrophils": 1.49}, "low", id="§5 v2 neutrophils 1.49 low, WBC not sent: white low"),
        P({"wbc": 3.5, "neutrophils": 3.0}, "low", id="§5 v2 WBC low, neutrophils not low: white low (any sent)"),
        P({"wbc": 6.0, "neutrophils": 1.2}, "low", id="§5 v2 WBC not low, neutrophils 1.2 low: white low"),
        P({"wbc": 4.0}, "not_low", id="§5 v2 WBC 4.0 on the LLN, neutrophils not sent: not low"),
        P({"neutrophils": 1.5}, "not_low", id="§5 v2 neutrophils 1.5 not low, WBC not sent: not low"),
        P({"wbc": 6.0, "neutrophils": 3.0}, "not_low", id="§5 v2 both sent, neither low: not low"),
        P({}, "not_assessed", id="§5 v2 neither WBC nor neutrophils sent: not assessed"),
    ],
)
def test_white_lineage_from_what_was_sent(white: dict[str, float], state: str) -> None:
    # red and platelets both low (Hb 11.0 < 12.0 female; platelets 120 < 150): the white state decides
    ans = interpret(cbc(female(), hemoglobin=11.0, platelets=120.0, **white))
    if state == "low":
        assert finding(ans, "pancytopenia") is not None
        assert finding(ans, "bicytopenia") is None
    elif state == "not_low":
        assert finding(ans, "bicytopenia") is not None
        assert finding(ans, "pancytopenia") is None
        assert not_assessed(ans, "pancytopenia") is None  # §5 v2: not low is decided, not "not assessed"
        assert "cannot be excluded" not in finding(ans, "bicytopenia")["detail"]
    else:
        bi = finding(ans, "bicytopenia")
        assert bi is not None and finding(ans, "pancytopenia") is None
        assert "pancytopenia cannot be excluded" in bi["detail"]
        na = not_assessed(ans, "pancytopenia")
        assert na is not None and na["needs"] == ["wbc", "neutrophils"]


@pytest.mark.parametrize(
    ("values", "missing"),
    [
        P({"wbc": 3.5, "platelets": 120.0}, ["hemoglobin"], id="§5 v2 white + platelets low, Hb not sent"),
        P({"hemoglobin": 11.0, "wbc": 3.5}, ["platelets"], id="§5 v2 red + white low, platelets not sent"),
        P(
            {"hemoglobin": 11.0, "platelets": 120.0},
            ["wbc", "neutrophils"],
            id="§5 v2 red + platelets low, white not sent",
        ),
    ],
)
def test_bicytopenia_with_the_third_lineage_not_assessed(values: dict[str, float], missing: list[str]) -> None:
    # §5 v2: still emitted; detail says pancytopenia cannot be excluded; pancytopenia listed in
    # not_assessed naming the missing analyte; bicytopenia and pancytopenia never together
    ans = interpret(cbc(female(), **values))
    bi = finding(ans, "bicytopenia")
    assert bi is not None
    assert "pancytopenia cannot be excluded" in bi["detail"]
    assert finding(ans, "pancytopenia") is None
    na = not_assessed(ans, "pancytopenia")
    assert na is not None and na["needs"] == missing
    assert ans["urgency"] == "soon"  # §9 bicytopenia


def test_issue_adolescent_two_low_lineages_without_haemoglobin() -> None:
    # issue 13: "a 15-year-old with WBC 2.5 and platelets 15 gets no leukopenia and no bicytopenia";
    # §2 v2 adolescent rows give the WBC its range; §5 v2: red not assessed, two low -> bicytopenia
    ans = interpret(cbc(female(15), wbc=2.5, platelets=15.0))
    assert finding(ans, "leukopenia") is not None
    assert finding(ans, "bicytopenia") is not None
    assert finding(ans, "pancytopenia") is None
    assert not_assessed(ans, "pancytopenia")["needs"] == ["hemoglobin"]
