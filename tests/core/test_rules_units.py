"""§1 units: accepted spellings, conversions to canonical units, derived values, rejections."""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import analyte, cbc, female, finding, input_error, interpret, res

P = pytest.param

COUNT_SAME = ["10*9/L", "10*3/uL", "10^9/L", "x10E9/L", "K/uL", "k/µL", "thou/uL", "giga/L", "giga.l-1", "10*3/mm3"]
COUNT_PER_UL = ["/uL", "{cells}/uL", "cells/uL", "/mm3"]
RBC_SAME = ["10*12/L", "10*6/uL", "M/uL", "m/uL", "tera.l-1"]


@pytest.mark.parametrize("unit", [P(u, id=f"§1 count unit {u} = 10^9/L") for u in COUNT_SAME])
def test_count_units_equal_to_canonical(unit: str) -> None:
    a = analyte(interpret(cbc(female(), platelets=res(250, unit))), "platelets")
    assert a["value"] == pytest.approx(250.0)
    assert a["unit"] == "10*9/L"


@pytest.mark.parametrize("unit", [P(u, id=f"§1 count unit {u} / 1000") for u in COUNT_PER_UL])
def test_per_microlitre_units_divided_by_1000(unit: str) -> None:
    ans = interpret(cbc(female(), platelets=res(250000, unit), wbc=res(6500, unit), neutrophils=res(1200, unit)))
    assert analyte(ans, "platelets")["value"] == pytest.approx(250.0)
    assert analyte(ans, "wbc")["value"] == pytest.approx(6.5)
    assert analyte(ans, "neutrophils")["value"] == pytest.approx(1.2)
    assert analyte(ans, "neutrophils")["unit"] == "10*9/L"
    assert finding(ans, "neutropenia") is not None  # §4 1.2 < 1.5 after conversion


@pytest.mark.parametrize(
    ("unit", "value", "expected"),
    [
        P("/uL", 149900, 149.9, id="§1+§4 149900/uL = 149.9 -> thrombocytopenia"),
        P("/uL", 150000, 150.0, id="§1+§4 150000/uL = 150 -> no thrombocytopenia"),
    ],
)
def test_converted_value_drives_threshold(unit: str, value: float, expected: float) -> None:
    ans = interpret(cbc(female(), platelets=res(value, unit)))
    assert analyte(ans, "platelets")["value"] == pytest.approx(expected)
    assert (finding(ans, "thrombocytopenia") is not None) is (expected < 150)


@pytest.mark.parametrize("unit", [P(u, id=f"§1 RBC unit {u} = 10^12/L") for u in RBC_SAME])
def test_rbc_units(unit: str) -> None:
    a = analyte(interpret(cbc(female(), rbc=res(4.5, unit))), "rbc")
    assert a["value"] == pytest.approx(4.5)
    assert a["unit"] == "10*12/L"


@pytest.mark.parametrize(
    ("value", "unit", "g_dl"),
    [
        P(13.0, "g/dL", 13.0, id="§1 Hb g/dL canonical"),
        P(13.0, None, 13.0, id="§1 Hb unit None = g/dL"),
        P(82.0, "g/L", 8.2, id="§1 Hb g/L / 10 (82 -> 8.2)"),
        P(120.0, "g/L", 12.0, id="§1 Hb g/L / 10 (120 -> 12.0)"),
        P(8.0, "mmol/L", 8.0 / 0.6206, id="§1 Hb mmol/L / 0.6206 (8.0 -> 12.89)"),
        P(5.0, "mmol/L", 5.0 / 0.6206, id="§1 Hb mmol/L / 0.6206 (5.0 -> 8.06)"),
    ],
)
def test_hemoglobin_units(value: float, unit: str | None, g_dl: float) -> None:
    a = analyte(interpret(cbc(female(), hemoglobin=res(value, unit))), "hemoglobin")
    assert a["value"] == pytest.approx(g_dl, abs=1e-3)
    assert a["unit"] == "g/dL"


@pytest.mark.parametrize(
    ("mmol", "anemia"),
    [
        P(7.44, True, id="§1+§4 Hb 7.44 mmol/L = 11.99 g/dL < 12.0 -> anaemia (female)"),
        P(7.45, False, id="§1+§4 Hb 7.45 mmol/L = 12.00 g/dL -> no anaemia (female)"),
    ],
)
def test_mmol_hemoglobin_drives_anemia(mmol: float, anemia: bool) -> None:
    ans = interpret(cbc(female(), hemoglobin=res(mmol, "mmol/L")))
    assert (finding(ans, "anemia") is not None) is anemia


@pytest.mark.parametrize(
    ("value", "unit", "pct"),
    [
        P(42.0, "%", 42.0, id="§1 Hct % canonical"),
        P(0.42, "L/L", 42.0, id="§1 Hct L/L x 100"),
        P(0.42, None, 42.0, id="§1 Hct bare fraction <= 1 x 100"),
        P(42.0, None, 42.0, id="§1 Hct bare number > 1 is %"),
        P(1.0, None, 100.0, id="§1 Hct bare fraction 1.0 (<= 1) x 100"),
    ],
)
def test_hematocrit_units(value: float, unit: str | None, pct: float) -> None:
    a = analyte(interpret(cbc(female(), hematocrit=res(value, unit))), "hematocrit")
    assert a["value"] == pytest.approx(pct)
    assert a["unit"] == "%"


@pytest.mark.parametrize(
    ("name", "value", "unit"),
    [
        P("mcv", 90.0, "fL", id="§1 MCV canonical fL"),
        P("mch", 30.0, "pg", id="§1 MCH canonical pg"),
        P("mchc", 33.0, "g/dL", id="§1 MCHC canonical g/dL"),
        P("rdw", 13.0, "%", id="§1 RDW canonical %"),
        P("reticulocytes_percent", 1.5, "%", id="§1 reticulocytes relative canonical %"),
        P("reticulocytes", 70.0, "10*9/L", id="§1 reticulocytes absolute canonical 10^9/L"),
        P("lymphocytes", 2.0, "10*9/L", id="§1 lymphocytes canonical 10^9/L"),
    ],
)
@pytest.mark.parametrize("send_unit", [P(False, id="unit None"), P(True, id="unit spelled")])
def test_canonical_units(name: str, value: float, unit: str, send_unit: bool) -> None:
    a = analyte(interpret(cbc(female(), **{name: res(value, unit if send_unit else None)})), name)
    assert a["value"] == pytest.approx(value)
    assert a["unit"] == unit
    assert a["derived"] is False


@pytest.mark.parametrize(
    ("pct", "rbc", "rbc_unit", "absolute"),
    [
        P(1.5, 4.0, None, 60.0, id="§1 abs retic = 1.5 % x 4.0 x 10 = 60"),
        P(2.0, 5.0, "M/uL", 100.0, id="§1 abs retic = 2.0 % x 5.0 (M/uL) x 10 = 100"),
        P(0.5, 2.0, "10*12/L", 10.0, id="§1 abs retic = 0.5 % x 2.0 x 10 = 10"),
    ],
)
def test_derived_absolute_reticulocytes(pct: float, rbc: float, rbc_unit: str | None, absolute: float) -> None:
    ans = interpret(cbc(female(), reticulocytes_percent=pct, rbc=res(rbc, rbc_unit)))
    a = analyte(ans, "reticulocytes")
    assert a["value"] == pytest.approx(absolute)
    assert a["unit"] == "10*9/L"
    assert a["derived"] is True


def test_measured_reticulocytes_not_derived() -> None:
    ans = interpret(cbc(female(), reticulocytes=55.0, reticulocytes_percent=1.5, rbc=4.0))
    a = analyte(ans, "reticulocytes")
    assert a["value"] == pytest.approx(55.0)
    assert a["derived"] is False


@pytest.mark.parametrize(
    ("wbc", "pct", "anc"),
    [
        P(res(5.0), 40.0, 2.0, id="§1 derived ANC = 5.0 x 40 / 100 = 2.0"),
        P(res(5000, "cells/uL"), 40.0, 2.0, id="§1 derived ANC with WBC in cells/uL"),
        P(res(4.0), 30.0, 1.2, id="§1 derived ANC = 4.0 x 30 / 100 = 1.2"),
    ],
)
def test_derived_neutrophils(wbc: dict, pct: float, anc: float) -> None:
    ans = interpret(cbc(female(), wbc=wbc, neutrophils_percent=pct))
    a = analyte(ans, "neutrophils")
    assert a["value"] == pytest.approx(anc)
    assert a["unit"] == "10*9/L"
    assert a["derived"] is True
    assert (finding(ans, "neutropenia") is not None) is (anc < 1.5)  # §4 on the derived value


def test_measured_neutrophils_not_derived() -> None:
    ans = interpret(cbc(female(), wbc=5.0, neutrophils=2.5, neutrophils_percent=40.0))
    a = analyte(ans, "neutrophils")
    assert a["value"] == pytest.approx(2.5)
    assert a["derived"] is False


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        P("platelets", "furlongs/L", id="§1 unknown platelet unit"),
        P("hemoglobin", "stones", id="§1 unknown Hb unit"),
        P("wbc", "bananas/uL", id="§1 unknown WBC unit"),
        P("hematocrit", "parsec", id="§1 unknown Hct unit"),
    ],
)
def test_unknown_unit_is_an_error_naming_analyte_and_unit(name: str, unit: str) -> None:
    with pytest.raises(input_error()) as ei:
        interpret(cbc(female(), **{name: res(10, unit)}))
    errors = ei.value.errors
    key = f"results.{name}.unit"
    assert key in errors
    assert unit in str(errors[key])


def test_platelets_210000_without_unit_suggests_per_microlitre() -> None:
    # §1 'platelets 210000 with no unit: "did you mean /uL?"'
    with pytest.raises(input_error()) as ei:
        interpret(cbc(female(), platelets=210000))
    errors = ei.value.errors
    assert any(k.startswith("results.platelets") for k in errors)
    assert "/uL" in str(errors)


@pytest.mark.parametrize(
    ("name", "value", "unit"),
    [
        P("platelets", 5001.0, None, id="§1 implausible platelets > 5000"),
        P("hemoglobin", 30.1, "g/dL", id="§1 implausible Hb > 30 (30.1)"),
        P("hemoglobin", 35.0, "g/dL", id="§1 implausible Hb 35 g/dL"),
        P("hemoglobin", 0.0, "g/dL", id="§1 implausible Hb <= 0 (0)"),
        P("hemoglobin", -1.0, None, id="§1 implausible Hb <= 0 (-1)"),
        P("hematocrit", 101.0, "%", id="§1 implausible Hct > 100 %"),
        P("hematocrit", 1.01, "L/L", id="§1 implausible Hct 1.01 L/L = 101 %"),
    ],
)
def test_implausible_values_rejected(name: str, value: float, unit: str | None) -> None:
    with pytest.raises(input_error()) as ei:
        interpret(cbc(female(), **{name: res(value, unit)}))
    assert any(k.startswith(f"results.{name}") for k in ei.value.errors)


@pytest.mark.parametrize(
    ("name", "value", "unit"),
    [
        P("platelets", 5000.0, None, id="§1 platelets 5000 not > 5000: accepted"),
        P("hemoglobin", 30.0, "g/dL", id="§1 Hb 30 not > 30: accepted"),
        P("hematocrit", 100.0, "%", id="§1 Hct 100 not > 100: accepted"),
    ],
)
def test_plausibility_bounds_inclusive(name: str, value: float, unit: str | None) -> None:
    a = analyte(interpret(cbc(female(), **{name: res(value, unit)})), name)
    assert a["value"] == pytest.approx(value)


def test_one_bad_document_rejects_the_list() -> None:
    # contract: a list with one bad CBC interprets none
    from tests.core.rules_helpers import interpret_many

    with pytest.raises(input_error()):
        interpret_many([cbc(female(), platelets=250.0), cbc(female(), platelets=res(10, "furlongs/L"))])


@pytest.mark.parametrize(
    ("name", "value", "unit", "low", "high", "canon", "clow", "flag"),
    [
        P(
            "hemoglobin",
            115.0,
            "g/L",
            120.0,
            150.0,
            11.5,
            12.0,
            "L",
            id="§1/§2 Hb 115 g/L with lab range 120-150 g/L -> 11.5 vs 12.0-15.0 L",
        ),
        P(
            "platelets",
            145000.0,
            "/uL",
            140000.0,
            400000.0,
            145.0,
            140.0,
            "N",
            id="§1/§2 platelets 145000/uL with lab range in /uL -> 145 vs 140-400 N",
        ),
        P(
            "hematocrit",
            0.35,
            "L/L",
            0.36,
            0.46,
            35.0,
            36.0,
            "L",
            id="§1/§2 Hct 0.35 L/L with lab range in L/L -> 35 vs 36-46 L",
        ),
        P(
            "hemoglobin",
            7.0,
            "mmol/L",
            7.45,
            9.3,
            7.0 / 0.6206,
            7.45 / 0.6206,
            "L",
            id="§1/§2 Hb mmol/L with lab range in mmol/L",
        ),
    ],
)
def test_lab_range_converted_with_value(
    name: str, value: float, unit: str, low: float, high: float, canon: float, clow: float, flag: str
) -> None:
    a = analyte(interpret(cbc(female(), **{name: res(value, unit, low, high)})), name)
    assert a["value"] == pytest.approx(canon, abs=1e-3)
    assert a["reference_range"]["low"] == pytest.approx(clow, abs=1e-3)
    assert a["flag"] == flag


@pytest.mark.parametrize(
    ("mmol", "flag"),
    [
        P(4.3, "LL", id="§1/§3 Hb 4.3 mmol/L = 6.93 g/dL < 7.0 critical"),
        P(4.4, "L", id="§1/§3 Hb 4.4 mmol/L = 7.09 g/dL not critical"),
    ],
)
def test_mmol_hemoglobin_critical(mmol: float, flag: str) -> None:
    assert analyte(interpret(cbc(female(), hemoglobin=res(mmol, "mmol/L"))), "hemoglobin")["flag"] == flag
