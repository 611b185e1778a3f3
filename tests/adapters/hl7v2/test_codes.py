"""OBX-3 codes: LOINC from the rule tables (clinical-rules §1), local codes from data, a site's map on top."""

from __future__ import annotations

import pytest

from labservice.adapters.hl7v2.codes import LocalCodeError, load_code_map
from labservice.core.ruleset import default_ruleset

RS = default_ruleset()


def test_loinc_codes_are_the_rule_tables_codes():
    loinc = RS.analyte_by_loinc()
    # clinical-rules §1: platelets 777-3, 26515-7; WBC 6690-2, 26464-8, 804-5; haemoglobin 718-7, 20509-6
    assert {loinc[c] for c in ("777-3", "26515-7")} == {"platelets"}
    assert {loinc[c] for c in ("6690-2", "26464-8", "804-5")} == {"wbc"}
    assert {loinc[c] for c in ("718-7", "20509-6")} == {"hemoglobin"}
    # LOINC 11125-2 (platelet morphology) and 11156-7 (leukocyte morphology) are not counts
    assert "11125-2" not in loinc and "11156-7" not in loinc


@pytest.mark.parametrize(
    ("code", "analyte"),
    [
        ("PLTC", "platelets"),
        ("WBC", "wbc"),
        ("RBC", "rbc"),
        ("HGB", "hemoglobin"),
        ("HCT", "hematocrit"),
        ("MCV", "mcv"),
        ("MCH", "mch"),
        ("MCHC", "mchc"),
        ("RDW", "rdw"),
        ("PLT", "platelets"),
        ("pltc", "platelets"),
    ],
)
def test_default_local_codes_cover_the_nhapi_messages(code, analyte):
    # the nHapi messages code OBX-3 as WBC, RBC, HGB, HCT, MCV, MCH, MCHC, RDW, PLTC (no coding system)
    found = load_code_map(RS).lookup(code, "")
    assert found is not None and found.analyte == analyte


def test_mpv_is_not_mapped():
    assert load_code_map(RS).lookup("MPV", "") is None


def test_a_site_file_overrides_and_extends_the_default(tmp_path):
    site = tmp_path / "site.csv"
    site.write_text(
        "code,coding_system,analyte,unit\n"
        "PLTC,,platelets,k/uL\n"
        "11125-2,LN,platelets,\n"
        "THROMBO,99LOC,platelets,10*9/L\n",
        encoding="utf-8",
    )
    codes = load_code_map(RS, site)
    assert codes.lookup("PLTC", "").unit == "k/uL"  # overridden: now with a unit
    assert codes.lookup("11125-2", "LN").analyte == "platelets"  # a LOINC code a sender misuses
    assert codes.lookup("THROMBO", "99LOC").analyte == "platelets"
    assert codes.lookup("THROMBO", "OTHER") is None  # a coding system given must match
    assert codes.lookup("WBC", "").analyte == "wbc"  # the default rows remain


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("code,analyte\nPLT,thrombocytes\n", "unknown analyte 'thrombocytes'"),
        ("code,analyte,unit\nPLT,platelets,bananas\n", "unknown unit 'bananas' for platelets"),
        ("code,analyte\nPLT,platelets\nPLT,platelets\n", "listed twice"),
        ("code\nPLT\n", "missing column(s) analyte"),
    ],
)
def test_a_malformed_site_file_names_file_and_line(tmp_path, content, message):
    site = tmp_path / "site.csv"
    site.write_text(content, encoding="utf-8")
    with pytest.raises(LocalCodeError) as caught:
        load_code_map(RS, site)
    assert message in str(caught.value)
    assert str(site) in str(caught.value)


def test_a_missing_site_file_is_an_error(tmp_path):
    with pytest.raises(LocalCodeError, match="cannot read"):
        load_code_map(RS, tmp_path / "absent.csv")
