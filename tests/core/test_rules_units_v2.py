"""clinical-rules §1 v2 through the JSON path: exact on bounds, g/L never a count, derived lymphocytes and
imprecise derived counts, RDW-SD, numbers in text. Boundary cases below, on and above each bound.

Expected values come from the rules (quoted per case) and decimal arithmetic by hand, never from running
the engine. The same CBCs through CSV, FHIR and HL7 v2 are in tests/adapters/test_v2_numbers_agree_across_paths.py.
"""

from __future__ import annotations

import pytest

from tests.core.rules_helpers import analyte, cbc, female, finding, input_error, interpret, male, not_assessed, res

P = pytest.param

# --- exact on bounds -------------------------------------------------------------------------------------------
# clinical-rules §1 v2: "every computed number (a unit conversion, a derived count, a computed MCHC, a delta) is
# rounded to 6 significant figures before it is compared, so 9.309 mmol/L haemoglobin is 15.0 g/dL, on the
# bound and inside the range". §2: adult female fallback range 12.0-15.0 g/dL; "a value exactly on a bound is
# inside the range". mmol/L / 0.6206 = g/dL [S16].


@pytest.mark.parametrize(
    ("mmol", "g_dl", "flag"),
    [
        P(9.308, 14.9984, "N", id="§1 v2 9.308 mmol/L = 14.9984 g/dL below the bound 15.0 -> N"),
        P(9.309, 15.0, "N", id="§1 v2 9.309 mmol/L = 15.0 g/dL on the bound -> N"),
        P(9.310, 15.0016, "H", id="§1 v2 9.310 mmol/L = 15.0016 g/dL above the bound 15.0 -> H"),
    ],
)
def test_hemoglobin_in_mmol_is_exact_on_the_upper_bound(mmol: float, g_dl: float, flag: str) -> None:
    a = analyte(interpret(cbc(female(), hemoglobin=res(mmol, "mmol/L"))), "hemoglobin")
    assert a["value"] == g_dl
    assert a["flag"] == flag
    assert a["reference_range"]["high"] == 15.0


@pytest.mark.parametrize(
    ("mmol", "g_dl"),
    [
        P(18.617, 29.9984, id="§1 v2 18.617 mmol/L = 29.9984 g/dL: plausible"),
        P(18.618, 30.0, id="§1 v2 18.618 mmol/L = 30.0 g/dL: on the limit (haemoglobin > 30 is implausible)"),
    ],
)
def test_hemoglobin_up_to_30_g_dl_after_conversion_is_plausible(mmol: float, g_dl: float) -> None:
    a = analyte(interpret(cbc(male(), hemoglobin=res(mmol, "mmol/L"))), "hemoglobin")
    assert a["value"] == g_dl
    assert a["flag"] == "H"  # §2 adult male range 13.0-17.0


def test_hemoglobin_above_30_g_dl_after_conversion_is_refused() -> None:
    # §1: "haemoglobin > 30 g/dL" is outside plausibility; 18.619 mmol/L = 30.0016 g/dL.
    with pytest.raises(input_error()) as caught:
        interpret(cbc(male(), hemoglobin=res(18.619, "mmol/L")))
    assert "results.hemoglobin.value" in caught.value.errors


@pytest.mark.parametrize(
    ("low_mmol", "value_mmol", "flag"),
    [
        P(7.447, 7.447, "N", id="§1 v2 a lab low bound converted like the value: on it -> N"),
        P(7.447, 7.446, "L", id="§1 v2 one step below the converted lab bound -> L"),
    ],
)
def test_a_laboratory_range_is_converted_and_rounded_like_the_value(low_mmol, value_mmol, flag) -> None:
    a = analyte(interpret(cbc(female(), hemoglobin=res(value_mmol, "mmol/L", low=low_mmol, high=9.309))), "hemoglobin")
    assert a["reference_range"]["origin"] == "laboratory"
    assert a["flag"] == flag


# --- g/L is grams ------------------------------------------------------------------------------------------
# clinical-rules §1 v2: "`g/L` is grams per litre: valid for haemoglobin and MCHC, never a count unit. A count
# sent in `g/L` or `g/l` is an unknown unit (422), not giga/L (`G/L`, `giga/L`, `10*9/L` are)."


@pytest.mark.parametrize("name", ["platelets", "wbc", "neutrophils", "lymphocytes", "reticulocytes"])
@pytest.mark.parametrize("unit", ["g/L", "g/l"])
def test_a_count_in_grams_per_litre_is_an_unknown_unit_naming_analyte_and_unit(name: str, unit: str) -> None:
    with pytest.raises(input_error()) as caught:
        interpret(cbc(female(), **{name: res(5, unit)}))
    [message] = caught.value.errors[f"results.{name}.unit"]
    assert message.startswith(f"unknown unit {unit!r} for {name}")


@pytest.mark.parametrize("unit", ["G/L", "giga/L", "10*9/L", "Giga/L"])
def test_giga_per_litre_stays_a_count_unit(unit: str) -> None:
    assert analyte(interpret(cbc(female(), platelets=res(250, unit))), "platelets")["value"] == 250.0


@pytest.mark.parametrize(
    ("name", "value", "canonical"),
    [
        P("hemoglobin", 125, 12.5, id="§1 v2 g/L valid for haemoglobin (125 g/L = 12.5 g/dL)"),
        P("mchc", 330, 33.0, id="§1 v2 g/L valid for MCHC (330 g/L = 33.0 g/dL)"),
    ],
)
@pytest.mark.parametrize("unit", ["g/L", "g/l"])
def test_grams_per_litre_stays_valid_for_haemoglobin_and_mchc(
    name: str, value: float, canonical: float, unit: str
) -> None:
    assert analyte(interpret(cbc(female(), **{name: res(value, unit)})), name)["value"] == canonical


# --- derived lymphocytes, imprecise derived counts ---------------------------------------------------------------
# clinical-rules §1: "Absolute neutrophils may be derived as WBC x neutrophil % / 100 when only the percentage is
# sent; say so in the output (derived, not measured). *v2*: absolute lymphocytes likewise from lymphocyte % ...;
# a derived count from a WBC below 1.0 is marked `imprecise: true` and its text says it rests on an automated
# differential of very few cells."


@pytest.mark.parametrize(
    ("wbc", "pct", "absolute"),
    [
        P(5.0, 20.0, 1.0, id="§1 v2 derived lymphocytes = 5.0 x 20 / 100 = 1.0"),
        P(6.0, 15.0, 0.9, id="§1 v2 derived lymphocytes = 6.0 x 15 / 100 = 0.9"),
    ],
)
def test_derived_lymphocytes(wbc: float, pct: float, absolute: float) -> None:
    ans = interpret(cbc(female(), wbc=wbc, lymphocytes_percent=pct))
    a = analyte(ans, "lymphocytes")
    assert a["value"] == absolute
    assert a["unit"] == "10*9/L"
    assert a["derived"] is True
    assert "derived" in a["note"] and "not measured" in a["note"]
    # §4 lymphopenia below the lower limit of the range in use (adult fallback 1.0-3.0 [§2]); on 1.0 it is not.
    assert (finding(ans, "lymphopenia") is not None) is (absolute < 1.0)
    if absolute < 1.0:
        assert "not measured" in finding(ans, "lymphopenia")["detail"]


def test_measured_lymphocytes_are_not_overwritten_by_the_percentage() -> None:
    a = analyte(interpret(cbc(female(), wbc=5.0, lymphocytes=2.0, lymphocytes_percent=20.0)), "lymphocytes")
    assert a["value"] == 2.0 and a["derived"] is False and "imprecise" not in a


@pytest.mark.parametrize(
    ("wbc", "imprecise"),
    [
        P(0.99, True, id="§1 v2 WBC 0.99 below 1.0 -> imprecise"),
        P(1.0, False, id="§1 v2 WBC 1.0 on the bound (not below) -> precise"),
        P(1.01, False, id="§1 v2 WBC 1.01 above -> precise"),
    ],
)
@pytest.mark.parametrize("name", ["neutrophils", "lymphocytes"])
def test_a_count_derived_from_a_wbc_below_1_is_imprecise(wbc: float, imprecise: bool, name: str) -> None:
    ans = interpret(cbc(female(), wbc=wbc, **{f"{name}_percent": 30.0}))
    a = analyte(ans, name)
    assert a["derived"] is True
    assert a["imprecise"] is imprecise
    assert ("automated differential of very few cells" in a["note"]) is imprecise


def test_the_issue_example_derived_anc_from_wbc_0_3_is_said_imprecise_in_the_finding() -> None:
    # issue 13: "a derived ANC of 0.12 from an automated percentage of 0.3 WBC shown as exact".
    ans = interpret(cbc(female(), wbc=0.3, neutrophils_percent=40.0))
    assert analyte(ans, "neutrophils")["value"] == 0.12
    assert analyte(ans, "neutrophils")["imprecise"] is True
    assert "automated differential of very few cells" in finding(ans, "neutropenia")["detail"]


def test_a_measured_count_is_never_marked_imprecise() -> None:
    a = analyte(interpret(cbc(female(), wbc=0.5, neutrophils=0.2)), "neutrophils")
    assert a["derived"] is False and "imprecise" not in a


# --- RDW-SD ---------------------------------------------------------------------------------------------------
# clinical-rules §1 v2: "21000-5 is RDW-SD in fL ... Accept RDW-SD as its own analyte `rdw_sd` (fL), flagged
# only against a lab-sent range (there is no fallback row)."


@pytest.mark.parametrize(
    ("value", "flag"),
    [
        P(38.9, "L", id="§1 v2 RDW-SD 38.9 below the lab range 39-46 -> L"),
        P(39.0, "N", id="§1 v2 RDW-SD 39.0 on the lab low -> N"),
        P(46.0, "N", id="§1 v2 RDW-SD 46.0 on the lab high -> N"),
        P(46.1, "H", id="§1 v2 RDW-SD 46.1 above the lab range -> H"),
    ],
)
def test_rdw_sd_is_flagged_against_the_laboratory_range(value: float, flag: str) -> None:
    a = analyte(interpret(cbc(female(), rdw_sd=res(value, "fL", low=39.0, high=46.0))), "rdw_sd")
    assert a["unit"] == "fL" and a["flag"] == flag


@pytest.mark.parametrize("value", [10.0, 42.0, 90.0])
def test_rdw_sd_without_a_laboratory_range_is_not_flagged(value: float) -> None:
    a = analyte(interpret(cbc(female(), rdw_sd=res(value, "fL"))), "rdw_sd")
    assert a["reference_range"] is None and a["flag"] is None


def test_rdw_in_fl_is_not_rdw_cv() -> None:
    # §1 v2: "788-0 is RDW-CV in %": a width in fL sent as rdw cannot be converted; the message names rdw_sd.
    with pytest.raises(input_error()) as caught:
        interpret(cbc(female(), rdw=res(45, "fL")))
    assert "rdw_sd" in caught.value.errors["results.rdw.unit"][0]


# --- numbers in text -----------------------------------------------------------------------------------------
# clinical-rules §1 v2: "The answer's `value` keeps at least the digits that were sent; text rounds to 3
# significant figures but never across a threshold it was compared with (149.99 is written 149.99, not 150),
# and never prints a raw float (0.540336)."


def test_149_99_is_written_149_99_not_150() -> None:
    ans = interpret(cbc(female(), platelets=149.99))
    assert analyte(ans, "platelets")["value"] == 149.99
    detail = finding(ans, "thrombocytopenia")["detail"]  # §4: 149.99 < 150
    assert detail.startswith("Platelets 149.99 ")
    assert "platelets 149.99" in ans["summary"]


def test_the_issue_examples_are_written_to_3_figures() -> None:
    # issue 13: "0.540336", "Haemoglobin 9.12372 g/dL". 0.8 x 67.542 % = 0.540336; 5.66255 mmol/L / 0.6206 =
    # 9.12431 g/dL (below the WHO 12 for women [§4], far from any threshold: 3 figures, 9.12).
    ans = interpret(cbc(female(), wbc=0.8, neutrophils_percent=67.542, hemoglobin=res(5.66255, "mmol/L")))
    assert analyte(ans, "neutrophils")["value"] == 0.540336  # the answer's value keeps 6 figures
    texts = " ".join(f["detail"] for f in ans["findings"]) + " " + ans["summary"]
    assert "Neutrophils 0.54 " in texts and "0.540336" not in texts
    assert "Haemoglobin 9.12 g/dL" in texts and "9.1243" not in texts


def test_a_value_sent_with_many_digits_keeps_them_in_the_answer() -> None:
    # §1 v2: "The answer's `value` keeps at least the digits that were sent" (Synthea sends 15 figures).
    a = analyte(interpret(cbc(female(), wbc=5.343049912222984)), "wbc")
    assert a["value"] == 5.343049912222984


def test_a_critical_text_does_not_round_onto_its_threshold() -> None:
    # §3 critical platelets < 20: 19.996 would be "20.0" at 3 figures, across the threshold.
    ans = interpret(cbc(female(), platelets=19.996))
    assert "platelets 19.996 (< 20" in finding(ans, "critical_value")["detail"]


# --- febrile neutropenia not assessed ---------------------------------------------------------------------------
# api-contract v2: "a rule whose input is missing lists it as not assessed"; §7 fever with neutrophils <= 0.5.


@pytest.mark.parametrize(
    ("neutrophils", "listed"),
    [
        P(0.49, True, id="§7 0.49 <= 0.5, fever not stated -> not assessed"),
        P(0.5, True, id="§7 0.5 on the bound (at or below), fever not stated -> not assessed"),
        P(0.51, False, id="§7 0.51 above 0.5 -> decided (no febrile neutropenia whatever the fever)"),
    ],
)
def test_febrile_neutropenia_is_not_assessed_when_fever_is_not_stated(neutrophils: float, listed: bool) -> None:
    ans = interpret(cbc(female(), neutrophils=neutrophils))
    assert (not_assessed(ans, "febrile_neutropenia") is not None) is listed


def test_febrile_neutropenia_is_decided_when_fever_is_stated() -> None:
    assert not_assessed(interpret(cbc(female(), neutrophils=0.4, fever=False)), "febrile_neutropenia") is None
    assert finding(interpret(cbc(female(), neutrophils=0.4, fever=True)), "febrile_neutropenia") is not None
