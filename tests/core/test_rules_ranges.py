"""§2 reference intervals (fallback, lab precedence, sex-unknown envelope), flags; §3 criticals."""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import (
    analyte,
    cbc,
    female,
    finding,
    interpret,
    male,
    not_assessed,
    res,
    unknown_sex,
)

P = pytest.param


@pytest.mark.parametrize(
    ("patient", "name", "low", "high"),
    [
        P(female(), "platelets", 150, 410, id="§2 adult platelets 150-410"),
        P(male(), "wbc", 4.0, 10.0, id="§2 adult WBC 4.0-10.0"),
        P(female(), "neutrophils", 2.0, 7.0, id="§2 adult neutrophils 2.0-7.0"),
        P(male(), "lymphocytes", 1.0, 3.0, id="§2 adult lymphocytes 1.0-3.0"),
        P(male(), "hemoglobin", 13.0, 17.0, id="§2 adult Hb male 13.0-17.0"),
        P(female(), "hemoglobin", 12.0, 15.0, id="§2 adult Hb female 12.0-15.0"),
        P(male(), "rbc", 4.5, 5.5, id="§2 adult RBC male 4.5-5.5"),
        P(female(), "rbc", 3.8, 4.8, id="§2 adult RBC female 3.8-4.8"),
        P(male(), "hematocrit", 40, 50, id="§2 adult Hct male 40-50 %"),
        P(female(), "hematocrit", 36, 46, id="§2 adult Hct female 36-46 %"),
        P(female(), "mcv", 83, 101, id="§2 adult MCV 83-101"),
        P(male(), "reticulocytes", 50, 100, id="§2 adult reticulocytes 50-100"),
        P(male(18), "hemoglobin", 13.0, 17.0, id="§2 age 18 is adult"),
        P({"sex": "female"}, "hemoglobin", 12.0, 15.0, id="§2 no age -> adult ranges"),
        P(unknown_sex(), "hemoglobin", 12.0, 17.0, id="§2 sex unknown: Hb envelope 12.0-17.0"),
        P(unknown_sex(), "rbc", 3.8, 5.5, id="§2 sex unknown: RBC envelope 3.8-5.5"),
        P(unknown_sex(), "hematocrit", 36, 50, id="§2 sex unknown: Hct envelope 36-50"),
        P(unknown_sex(), "platelets", 150, 410, id="§2 sex unknown: platelets unchanged"),
    ],
)
def test_fallback_ranges(patient: dict, name: str, low: float, high: float) -> None:
    values = {
        "platelets": 250.0,
        "wbc": 6.0,
        "neutrophils": 3.5,
        "lymphocytes": 2.0,
        "hemoglobin": 14.0,
        "rbc": 4.5,
        "hematocrit": 42.0,
        "mcv": 90.0,
        "reticulocytes": 70.0,
    }
    ans = interpret(cbc(patient, **{name: values[name]}))
    rr = analyte(ans, name)["reference_range"]
    assert rr["low"] == pytest.approx(low)
    assert rr["high"] == pytest.approx(high)
    assert rr["origin"] == "fallback"
    assert rr["source"]  # §2 "the output always says which range was used and where it came from"


@pytest.mark.parametrize(
    ("patient", "name", "value", "flag"),
    [
        P(female(), "platelets", 150.0, "N", id="§2 platelets 150 on bound N"),
        P(female(), "platelets", 149.9, "L", id="§2 platelets 149.9 L"),
        P(female(), "platelets", 410.0, "N", id="§2 platelets 410 on bound N"),
        P(female(), "platelets", 410.1, "H", id="§2 platelets 410.1 H"),
        P(female(), "platelets", 20.0, "L", id="§3 platelets 20 not critical -> L"),
        P(female(), "platelets", 19.9, "LL", id="§3 platelets 19.9 < 20 critical -> LL"),
        P(female(), "platelets", 999.9, "H", id="§3 platelets 999.9 -> H"),
        P(female(), "platelets", 1000.0, "HH", id="§3 platelets >= 1000 critical -> HH"),
        P(female(), "wbc", 4.0, "N", id="§2 WBC 4.0 N"),
        P(female(), "wbc", 3.99, "L", id="§2 WBC 3.99 L"),
        P(female(), "wbc", 10.0, "N", id="§2 WBC 10.0 N"),
        P(female(), "wbc", 10.01, "H", id="§2 WBC 10.01 H"),
        P(female(), "wbc", 2.0, "L", id="§3 WBC 2.0 not critical -> L"),
        P(female(), "wbc", 1.99, "LL", id="§3 WBC 1.99 < 2.0 -> LL"),
        P(female(), "wbc", 30.0, "H", id="§3 WBC 30 not > 30 -> H"),
        P(female(), "wbc", 30.1, "HH", id="§3 WBC 30.1 > 30 -> HH"),
        P(female(), "neutrophils", 2.0, "N", id="§2 neutrophils 2.0 N"),
        P(female(), "neutrophils", 1.99, "L", id="§2 neutrophils 1.99 L"),
        P(female(), "neutrophils", 7.0, "N", id="§2 neutrophils 7.0 N"),
        P(female(), "neutrophils", 7.01, "H", id="§2 neutrophils 7.01 H"),
        P(female(), "neutrophils", 0.5, "L", id="§3 neutrophils 0.5 not critical -> L"),
        P(female(), "neutrophils", 0.49, "LL", id="§3 neutrophils 0.49 < 0.5 -> LL"),
        P(female(), "lymphocytes", 1.0, "N", id="§2 lymphocytes 1.0 N"),
        P(female(), "lymphocytes", 0.99, "L", id="§2 lymphocytes 0.99 L"),
        P(female(), "lymphocytes", 3.0, "N", id="§2 lymphocytes 3.0 N"),
        P(female(), "lymphocytes", 3.01, "H", id="§2 lymphocytes 3.01 H"),
        P(female(), "hemoglobin", 12.0, "N", id="§2 Hb female 12.0 N"),
        P(female(), "hemoglobin", 11.99, "L", id="§2 Hb female 11.99 L"),
        P(female(), "hemoglobin", 15.0, "N", id="§2 Hb female 15.0 N"),
        P(female(), "hemoglobin", 15.01, "H", id="§2 Hb female 15.01 H"),
        P(female(), "hemoglobin", 7.0, "L", id="§3 Hb 7.0 not critical -> L"),
        P(female(), "hemoglobin", 6.99, "LL", id="§3 Hb 6.99 < 7.0 -> LL"),
        P(male(), "hemoglobin", 13.0, "N", id="§2 Hb male 13.0 N"),
        P(male(), "hemoglobin", 12.99, "L", id="§2 Hb male 12.99 L"),
        P(male(), "hemoglobin", 17.0, "N", id="§2 Hb male 17.0 N"),
        P(male(), "hemoglobin", 17.01, "H", id="§2 Hb male 17.01 H"),
        P(male(), "hemoglobin", 15.5, "N", id="§2 Hb male 15.5 N (female would be H)"),
        P(unknown_sex(), "hemoglobin", 16.5, "N", id="§2 sex unknown envelope: Hb 16.5 N"),
        P(unknown_sex(), "hemoglobin", 11.99, "L", id="§2 sex unknown envelope: Hb 11.99 L"),
        P(male(), "rbc", 4.5, "N", id="§2 RBC male 4.5 N"),
        P(male(), "rbc", 4.49, "L", id="§2 RBC male 4.49 L"),
        P(male(), "rbc", 5.51, "H", id="§2 RBC male 5.51 H"),
        P(female(), "rbc", 3.8, "N", id="§2 RBC female 3.8 N"),
        P(female(), "rbc", 3.79, "L", id="§2 RBC female 3.79 L"),
        P(female(), "rbc", 4.8, "N", id="§2 RBC female 4.8 N"),
        P(female(), "rbc", 4.81, "H", id="§2 RBC female 4.81 H"),
        P(male(), "hematocrit", 40.0, "N", id="§2 Hct male 40 N"),
        P(male(), "hematocrit", 39.9, "L", id="§2 Hct male 39.9 L"),
        P(male(), "hematocrit", 50.1, "H", id="§2 Hct male 50.1 H"),
        P(female(), "hematocrit", 36.0, "N", id="§2 Hct female 36 N"),
        P(female(), "hematocrit", 35.9, "L", id="§2 Hct female 35.9 L"),
        P(female(), "hematocrit", 46.0, "N", id="§2 Hct female 46 N"),
        P(female(), "hematocrit", 46.1, "H", id="§2 Hct female 46.1 H"),
        P(female(), "mcv", 83.0, "N", id="§2 MCV 83 N"),
        P(female(), "mcv", 82.9, "L", id="§2 MCV 82.9 L"),
        P(female(), "mcv", 101.0, "N", id="§2 MCV 101 N"),
        P(female(), "mcv", 101.1, "H", id="§2 MCV 101.1 H"),
        P(female(), "reticulocytes", 50.0, "N", id="§2 reticulocytes 50 N"),
        P(female(), "reticulocytes", 49.9, "L", id="§2 reticulocytes 49.9 L"),
        P(female(), "reticulocytes", 100.0, "N", id="§2 reticulocytes 100 N"),
        P(female(), "reticulocytes", 100.1, "H", id="§2 reticulocytes 100.1 H"),
    ],
)
def test_flags(patient: dict, name: str, value: float, flag: str) -> None:
    assert analyte(interpret(cbc(patient, **{name: value})), name)["flag"] == flag


@pytest.mark.parametrize(
    ("name", "value", "critical"),
    [
        P("platelets", 19.9, True, id="§3 critical platelets < 20 (19.9)"),
        P("platelets", 20.0, False, id="§3 platelets 20 not critical"),
        P("platelets", 999.9, False, id="§3 platelets 999.9 not critical"),
        P("platelets", 1000.0, True, id="§3 critical platelets >= 1000 (on bound)"),
        P("neutrophils", 0.49, True, id="§3 critical neutrophils < 0.5"),
        P("neutrophils", 0.5, False, id="§3 neutrophils 0.5 not critical"),
        P("hemoglobin", 6.99, True, id="§3 critical Hb < 7.0"),
        P("hemoglobin", 7.0, False, id="§3 Hb 7.0 not critical"),
        P("wbc", 1.99, True, id="§3 critical WBC < 2.0"),
        P("wbc", 2.0, False, id="§3 WBC 2.0 not critical"),
        P("wbc", 30.0, False, id="§3 WBC 30 not critical (> 30)"),
        P("wbc", 30.1, True, id="§3 critical WBC > 30 (30.1)"),
    ],
)
def test_critical_values(name: str, value: float, critical: bool) -> None:
    ans = interpret(cbc(female(), **{name: value}))
    assert analyte(ans, name)["critical"] is critical
    assert (finding(ans, "critical_value") is not None) is critical


def test_critical_value_emitted_once_for_several_criticals() -> None:
    # contract: each finding code at most once per CBC (finding() asserts it)
    ans = interpret(cbc(female(), platelets=10.0, hemoglobin=6.0, neutrophils=0.2, wbc=1.0))
    assert finding(ans, "critical_value") is not None
    for name in ("platelets", "hemoglobin", "neutrophils", "wbc"):
        assert analyte(ans, name)["flag"] == "LL"
        assert analyte(ans, name)["critical"] is True


def test_critical_sets_ll_even_with_lab_range() -> None:
    # §3 "A critical value sets the flag to LL/HH" whatever range is in use
    ans = interpret(cbc(female(), platelets=res(15.0, low=10.0, high=400.0)))
    assert analyte(ans, "platelets")["flag"] == "LL"
    assert analyte(ans, "platelets")["critical"] is True


@pytest.mark.parametrize(
    ("name", "value", "low", "high", "flag"),
    [
        P("platelets", 145.0, 140.0, 400.0, "N", id="§2 lab range wins: platelets 145 in 140-400"),
        P("platelets", 420.0, 150.0, 450.0, "N", id="§2 lab range wins: platelets 420 in 150-450"),
        P("platelets", 400.1, 140.0, 400.0, "H", id="§2 lab range wins: 400.1 above lab high"),
        P("wbc", 10.5, 4.0, 11.0, "N", id="§2 lab range wins: WBC 10.5 in 4.0-11.0"),
        P("wbc", 4.2, 4.5, 11.0, "L", id="§2 lab range wins: WBC 4.2 below lab 4.5"),
        P("hemoglobin", 15.5, 12.0, 16.0, "N", id="§2 lab range wins: Hb female 15.5 in 12-16"),
        P("hemoglobin", 12.0, 12.0, 16.0, "N", id="§2 lab range: value on low bound is inside"),
        P("hemoglobin", 16.0, 12.0, 16.0, "N", id="§2 lab range: value on high bound is inside"),
    ],
)
def test_lab_range_precedence(name: str, value: float, low: float, high: float, flag: str) -> None:
    a = analyte(interpret(cbc(female(), **{name: res(value, low=low, high=high)})), name)
    assert a["flag"] == flag
    assert a["reference_range"]["low"] == low
    assert a["reference_range"]["high"] == high
    assert a["reference_range"]["origin"] == "laboratory"


def test_partial_lab_range_origin() -> None:
    # §2 precedence per analyte; only a lab low sent -> range partly from the lab
    a = analyte(interpret(cbc(female(), platelets=res(145.0, low=140.0))), "platelets")
    assert a["reference_range"]["origin"] == "laboratory_partial"
    assert a["reference_range"]["low"] == 140.0
    assert a["flag"] == "N"


def test_duffy_range_only_when_stated() -> None:
    # §2 "when (and only when) the request says the patient is Duffy-null"
    ans = interpret(cbc(female(duffy_null=True), neutrophils=1.3, wbc=3.5))
    assert analyte(ans, "neutrophils")["reference_range"]["origin"] == "duffy_null"
    assert analyte(ans, "wbc")["reference_range"]["origin"] == "duffy_null"
    assert analyte(ans, "neutrophils")["flag"] == "N"
    assert analyte(ans, "wbc")["flag"] == "N"


# --- clinical-rules v2: §2 adolescent rows, below any lower limit, lab range plausibility, Duffy order ------------

ADOLESCENT = "OHSU"  # §2 v2 "(OHSU core laboratory bands [S14])": the source the answer names


@pytest.mark.parametrize(
    ("patient", "name", "low", "high"),
    [
        P(male(12), "wbc", 4.9, 15.5, id="§2 v2 adolescent WBC 4.9-15.5 from 12 y"),
        P(female(17.9), "wbc", 4.9, 15.5, id="§2 v2 adolescent WBC 4.9-15.5 to 17 y"),
        P(male(15), "hemoglobin", 13.0, 16.0, id="§2 v2 adolescent Hb male 13.0-16.0"),
        P(female(15), "hemoglobin", 12.0, 16.0, id="§2 v2 adolescent Hb female 12.0-16.0"),
        P(male(15), "rbc", 4.5, 5.3, id="§2 v2 adolescent RBC male 4.5-5.3"),
        P(female(15), "rbc", 4.1, 5.1, id="§2 v2 adolescent RBC female 4.1-5.1"),
        P(unknown_sex(15), "hemoglobin", 12.0, 16.0, id="§2 v2 adolescent sex unknown: Hb envelope 12.0-16.0"),
    ],
)
def test_adolescent_fallback_rows(patient: dict, name: str, low: float, high: float) -> None:
    values = {"wbc": 6.0, "hemoglobin": 14.0, "rbc": 4.8}
    rr = analyte(interpret(cbc(patient, **{name: values[name]})), name)["reference_range"]
    assert (rr["low"], rr["high"], rr["origin"]) == (low, high, "fallback")
    assert ADOLESCENT in rr["source"]  # §2 "the output always says which range was used and where it came from"


@pytest.mark.parametrize(
    ("patient", "name", "value", "flag"),
    [
        P(male(15), "wbc", 4.8, "L", id="§2 v2 adolescent WBC 4.8 below 4.9 L"),
        P(male(15), "wbc", 4.9, "N", id="§2 v2 adolescent WBC 4.9 on bound N"),
        P(male(15), "wbc", 15.5, "N", id="§2 v2 adolescent WBC 15.5 on bound N"),
        P(male(15), "wbc", 15.6, "H", id="§2 v2 adolescent WBC 15.6 H"),
        P(male(15), "hemoglobin", 12.9, "L", id="§2 v2 adolescent Hb male 12.9 L"),
        P(male(15), "hemoglobin", 13.0, "N", id="§2 v2 adolescent Hb male 13.0 N"),
        P(female(15), "hemoglobin", 16.0, "N", id="§2 v2 adolescent Hb female 16.0 N"),
        P(female(15), "hemoglobin", 16.1, "H", id="§2 v2 adolescent Hb female 16.1 H"),
        P(female(15), "rbc", 4.0, "L", id="§2 v2 adolescent RBC female 4.0 L"),
        P(female(15), "rbc", 5.1, "N", id="§2 v2 adolescent RBC female 5.1 N"),
        P(male(15), "rbc", 5.4, "H", id="§2 v2 adolescent RBC male 5.4 H"),
        P(male(15), "rbc", 5.3, "N", id="§2 v2 adolescent RBC male 5.3 on bound N"),
        P(male(15), "rbc", 4.5, "N", id="§2 v2 adolescent RBC male 4.5 on bound N"),
        P(male(15), "rbc", 4.4, "L", id="§2 v2 adolescent RBC male 4.4 L"),
        P(female(15), "rbc", 4.1, "N", id="§2 v2 adolescent RBC female 4.1 on bound N"),
        P(female(15), "rbc", 5.2, "H", id="§2 v2 adolescent RBC female 5.2 H"),
        P(female(15), "hemoglobin", 11.9, "L", id="§2 v2 adolescent Hb female 11.9 L"),
        P(female(15), "hemoglobin", 12.0, "N", id="§2 v2 adolescent Hb female 12.0 on bound N"),
        P(male(15), "hemoglobin", 16.0, "N", id="§2 v2 adolescent Hb male 16.0 on bound N"),
        P(male(15), "hemoglobin", 16.1, "H", id="§2 v2 adolescent Hb male 16.1 H"),
    ],
)
def test_adolescent_flags(patient: dict, name: str, value: float, flag: str) -> None:
    assert analyte(interpret(cbc(patient, **{name: value})), name)["flag"] == flag


@pytest.mark.parametrize(
    ("age", "low", "high"),
    [
        P(11.99, 5.0, 13.0, id="§2 children 6-12 y WBC 5-13 below 12 y"),
        P(12.0, 4.9, 15.5, id="§2 v2 adolescent band from 12 y"),
        P(17.99, 4.9, 15.5, id="§2 v2 adolescent band to 17 y"),
        P(18.0, 4.0, 10.0, id="§2 adult WBC 4.0-10.0 from 18 y"),
    ],
)
def test_adolescent_band_edges(age: float, low: float, high: float) -> None:
    rr = analyte(interpret(cbc(male(age), wbc=6.0)), "wbc")["reference_range"]
    assert (rr["low"], rr["high"]) == (low, high)


def test_fifteen_year_old_wbc_2_5_is_leukopenia() -> None:
    # issue 13 / §2 v2: a 15-year-old with WBC 2.5 gets leukopenia (adolescent WBC 4.9-15.5), and platelets 15
    # (no adolescent platelet row) are below any lower limit: L, and critical (< 20, §3) -> LL.
    ans = interpret(cbc(male(15), wbc=2.5, platelets=15.0))
    assert analyte(ans, "wbc")["flag"] == "L"
    assert finding(ans, "leukopenia") is not None
    assert analyte(ans, "platelets")["flag"] == "LL"
    assert analyte(ans, "platelets")["ctcae_grade"] == 4  # §4 CTCAE v5.0 < 25


@pytest.mark.parametrize(
    ("patient", "name", "value", "flag", "grade", "code"),
    [
        # §2 v2 "Below any lower limit": no fallback row (lymphocytes 2-6 y, platelets 12-17 y, WBC under 1 y)
        P(male(4), "lymphocytes", 0.79, "L", 2, "lymphopenia", id="§2 v2 4 y lymphocytes 0.79 < 0.8 L grade 2"),
        P(male(4), "lymphocytes", 0.8, None, None, None, id="§2 v2 4 y lymphocytes 0.8 on bound not assessed"),
        P(male(4), "lymphocytes", 0.81, None, None, None, id="§2 v2 4 y lymphocytes 0.81 not assessed"),
        P(male(4), "lymphocytes", 0.3, "L", 3, "lymphopenia", id="§2 v2 issue 13: 4 y lymphocytes 0.3 lymphopenia"),
        P(female(15), "platelets", 74.9, "L", 2, "thrombocytopenia", id="§2 v2 15 y platelets 74.9 < 75 L"),
        P(
            female(15),
            "platelets",
            75.0,
            None,
            None,
            "thrombocytopenia",
            id="§2 v2 15 y platelets 75 on bound unflagged",
        ),
        P(female(15), "platelets", 75.1, None, None, "thrombocytopenia", id="§2 v2 15 y platelets 75.1 unflagged"),
        P(female(0.5), "wbc", 3.01, None, None, None, id="§2 v2 infant WBC 3.01 not assessed"),
        P(female(0.5), "wbc", 2.99, "L", 2, "leukopenia", id="§2 v2 infant WBC 2.99 < 3.0 L grade 2"),
        P(female(0.5), "wbc", 3.0, None, None, None, id="§2 v2 infant WBC 3.0 on bound not assessed"),
        P(female(0.5), "hemoglobin", 9.5, None, None, None, id="§2 v2 infant Hb 9.5: bound from 1 year only"),
    ],
)
def test_below_any_lower_limit(
    patient: dict, name: str, value: float, flag: str | None, grade: int | None, code: str | None
) -> None:
    ans = interpret(cbc(patient, **{name: value}))
    a = analyte(ans, name)
    assert a["reference_range"] is None
    assert (a["flag"], a["ctcae_grade"]) == (flag, grade)
    if code is not None:
        assert finding(ans, code) is not None
    if flag == "L":
        assert "no reference range was available" in a["flag_note"].lower()
    if name in ("lymphocytes", "wbc") and flag is None:
        # §2 v2 "Between that bound and the unknown limit the analyte stays 'not assessed'"
        assert not_assessed(ans, {"lymphocytes": "lymphopenia", "wbc": "leukopenia"}[name]) is not None


def test_below_any_lower_limit_finding_says_no_range_was_available() -> None:
    # §2 v2 "let the findings that need 'low' fire, saying that no reference range was available"
    f = finding(interpret(cbc(male(4), lymphocytes=0.3)), "lymphopenia")
    assert "no reference range was available" in f["detail"]
    assert "0.8" in f["detail"]  # the CTCAE grade-2 bound it is below (§4)


def test_below_any_lower_limit_haemoglobin_from_one_year(tmp_path) -> None:
    # §2 v2 "haemoglobin < 10.0 from 1 year of age only": with no haemoglobin row in the tables, 9.9 at 2 y is L
    # (grade 2, CTCAE < 10.0-8.0), 10.0 is not flagged, and 9.9 at 0.5 y is not flagged.
    import shutil

    from labservice.core.ruleset import load_ruleset
    from labservice.rule_tables import packaged_directory
    from labservice.services.interpret import interpret_documents

    for name in packaged_directory().glob("*.csv"):
        shutil.copy(name, tmp_path / name.name)
    children = (tmp_path / "children.csv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "children.csv").write_text(
        "\n".join(line for line in children if not line.startswith("hemoglobin,")) + "\n", encoding="utf-8"
    )
    rs = load_ruleset(tmp_path)
    answers = interpret_documents(
        [
            cbc(male(2), hemoglobin=9.9),
            cbc(male(2), hemoglobin=10.0),
            cbc(male(2), hemoglobin=10.1),
            cbc(male(0.5), hemoglobin=9.9),
            cbc(male(1.0), hemoglobin=9.9),
        ],
        rs,
    )
    assert [(a["analytes"]["hemoglobin"]["flag"], a["analytes"]["hemoglobin"]["ctcae_grade"]) for a in answers] == [
        ("L", 2),
        (None, None),
        (None, None),
        (None, None),
        ("L", 2),
    ]


@pytest.mark.parametrize(
    ("patient", "name", "sent", "reason"),
    [
        # §2 v2: a lab range is used only when low < high, both inside plausibility (§1), overlapping the fallback
        P(female(), "hemoglobin", (7.5, 10.0), "does not overlap", id="§2 v2 FHIR example Hb 7.5-10 'g/dL' set aside"),
        P(female(), "hemoglobin", (15.0, 12.0), "low is not below", id="§2 v2 inverted Hb range set aside"),
        P(female(), "wbc", (4.0, 4.0), "low is not below", id="§2 v2 low equal to high set aside"),
        P(female(), "platelets", (150.0, 6000.0), "plausibility", id="§2 v2 platelets high 6000 > 5000 set aside"),
        P(female(), "hemoglobin", (15.1, 20.0), "does not overlap", id="§2 v2 Hb 15.1-20 misses female 12-15"),
        P(female(), "hemoglobin", (16.0, None), "does not overlap", id="§2 v2 lab low only, above fallback high"),
    ],
)
def test_implausible_lab_range_is_set_aside(patient: dict, name: str, sent: tuple, reason: str) -> None:
    value = {"hemoglobin": 13.0, "wbc": 6.0, "platelets": 250.0}[name]
    a = analyte(interpret(cbc(patient, **{name: res(value, low=sent[0], high=sent[1])})), name)
    rr = a["reference_range"]
    assert rr["origin"] == "fallback"  # §2 v2 "reference_range.origin = fallback"
    assert "set aside" in rr["note"] and reason in rr["note"]
    assert a["flag"] == "N"  # judged against the fallback range (§2 adults)


@pytest.mark.parametrize(
    ("sent", "origin"),
    [
        P((15.0, 20.0), "laboratory", id="§2 v2 Hb 15-20 shares the bound 15 with female 12-15: overlaps, used"),
        P((5.0, 12.0), "laboratory", id="§2 v2 Hb 5-12 shares the bound 12: used"),
        P((15.0, None), "laboratory_partial", id="§2 v2 lab low 15 only, on the fallback high: used"),
    ],
)
def test_plausible_lab_range_on_the_overlap_boundary_is_used(sent: tuple, origin: str) -> None:
    rr = analyte(interpret(cbc(female(), hemoglobin=res(13.0, low=sent[0], high=sent[1]))), "hemoglobin")[
        "reference_range"
    ]
    assert rr["origin"] == origin and "note" not in rr


def test_lab_range_without_a_fallback_row_needs_no_overlap() -> None:
    # §2 v2 "overlapping the fallback range ... where one exists": an infant has no WBC row
    a = analyte(interpret(cbc(female(0.5), wbc=res(7.0, low=6.0, high=17.5))), "wbc")
    assert a["reference_range"]["origin"] == "laboratory" and a["flag"] == "N"


def test_set_aside_without_a_fallback_row_says_so() -> None:
    # §2 v2: "set aside with a note, never a 422"; an infant has no WBC fallback row: no range, with the note
    a = analyte(interpret(cbc(female(0.5), wbc=res(7.0, low=17.5, high=6.0))), "wbc")
    assert a["flag"] is None
    assert "set aside" in a["reference_range"]["note"] and a["reference_range"]["low"] is None


def test_duffy_null_rows_replace_the_fallback_rows_only() -> None:
    # §2 v2 "These rows replace the fallback rows only: a plausible lab-sent range still comes first."
    ans = interpret(cbc(female(duffy_null=True), neutrophils=res(1.3, low=2.0, high=7.5)))
    a = analyte(ans, "neutrophils")
    assert a["reference_range"]["origin"] == "laboratory" and a["flag"] == "L"


def test_duffy_null_rows_apply_when_the_lab_range_is_set_aside() -> None:
    # §2 v2: an implausible lab range (a % range, 40-75, misses Duffy-null 1.2-5.4) is set aside; the Duffy rows apply
    a = analyte(interpret(cbc(female(duffy_null=True), neutrophils=res(1.3, low=40.0, high=75.0))), "neutrophils")
    assert (a["reference_range"]["low"], a["reference_range"]["high"]) == (1.2, 5.4)
    assert a["reference_range"]["origin"] == "duffy_null" and "set aside" in a["reference_range"]["note"]
    assert a["flag"] == "N"
