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
    res,
    unknown_sex,
)

P = pytest.param


@pytest.mark.parametrize(("patient", "name", "low", "high"), [
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
])
def test_fallback_ranges(patient: dict, name: str, low: float, high: float) -> None:
    values = {"platelets": 250.0, "wbc": 6.0, "neutrophils": 3.5, "lymphocytes": 2.0,
              "hemoglobin": 14.0, "rbc": 4.5, "hematocrit": 42.0, "mcv": 90.0,
              "reticulocytes": 70.0}
    ans = interpret(cbc(patient, **{name: values[name]}))
    rr = analyte(ans, name)["reference_range"]
    assert rr["low"] == pytest.approx(low)
    assert rr["high"] == pytest.approx(high)
    assert rr["origin"] == "fallback"
    assert rr["source"]  # §2 "the output always says which range was used and where it came from"


@pytest.mark.parametrize(("patient", "name", "value", "flag"), [
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
])
def test_flags(patient: dict, name: str, value: float, flag: str) -> None:
    assert analyte(interpret(cbc(patient, **{name: value})), name)["flag"] == flag


@pytest.mark.parametrize(("name", "value", "critical"), [
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
])
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


@pytest.mark.parametrize(("name", "value", "low", "high", "flag"), [
    P("platelets", 145.0, 140.0, 400.0, "N", id="§2 lab range wins: platelets 145 in 140-400"),
    P("platelets", 420.0, 150.0, 450.0, "N", id="§2 lab range wins: platelets 420 in 150-450"),
    P("platelets", 400.1, 140.0, 400.0, "H", id="§2 lab range wins: 400.1 above lab high"),
    P("wbc", 10.5, 4.0, 11.0, "N", id="§2 lab range wins: WBC 10.5 in 4.0-11.0"),
    P("wbc", 4.2, 4.5, 11.0, "L", id="§2 lab range wins: WBC 4.2 below lab 4.5"),
    P("hemoglobin", 15.5, 12.0, 16.0, "N", id="§2 lab range wins: Hb female 15.5 in 12-16"),
    P("hemoglobin", 12.0, 12.0, 16.0, "N", id="§2 lab range: value on low bound is inside"),
    P("hemoglobin", 16.0, 12.0, 16.0, "N", id="§2 lab range: value on high bound is inside"),
])
def test_lab_range_precedence(name: str, value: float, low: float, high: float,
                              flag: str) -> None:
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
