"""Column headers → fields (headers.py): the alias families, units written in headers, and what is not taken.

Expected fields come from the names the labs use for each analyte (clinical-rules §1); a header
that is not recognised must come back as (None, None) so that it is listed as ignored, never guessed.
"""

from __future__ import annotations

import pytest

from labservice.adapters.csv_input.headers import field_for_name, name_key, resolve_header, split_header

ALIASES = [
    # platelets
    ("PLT", "platelets"),
    ("Platelets", "platelets"),
    ("Platelet Count", "platelets"),
    ("platelet_count", "platelets"),
    ("PLT count", "platelets"),
    ("Thrombocytes", "platelets"),
    # white cells
    ("WBC", "wbc"),
    ("wbc", "wbc"),
    ("White Blood Cells", "wbc"),
    ("Leukocytes", "wbc"),
    ("WCC", "wbc"),
    # haemoglobin
    ("HGB", "hemoglobin"),
    ("Hb", "hemoglobin"),
    ("Hgb", "hemoglobin"),
    ("Haemoglobin", "hemoglobin"),
    ("Hemoglobin", "hemoglobin"),
    # haematocrit
    ("HCT", "hematocrit"),
    ("Haematocrit", "hematocrit"),
    ("PCV", "hematocrit"),
    # red cells and indices
    ("RBC", "rbc"),
    ("Red Blood Cell Count", "rbc"),
    ("Erythrocytes", "rbc"),
    ("MCV", "mcv"),
    ("Mean Cell Volume", "mcv"),
    ("MCH", "mch"),
    ("MCHC", "mchc"),
    ("RDW", "rdw"),
    ("RDW-CV", "rdw"),
    # clinical-rules §1 v2: "Accept RDW-SD as its own analyte `rdw_sd` (fL)"
    ("RDW-SD", "rdw_sd"),
    ("RDW SD", "rdw_sd"),
    # clinical-rules §1 v2: "absolute lymphocytes likewise from lymphocyte %"
    ("LYMPH%", "lymphocytes_percent"),
    ("Lymphocytes %", "lymphocytes_percent"),
    # absolute neutrophils
    ("NEUT#", "neutrophils"),
    ("ANC", "neutrophils"),
    ("NEUTn", "neutrophils"),
    ("Neut Abs", "neutrophils"),
    ("neut_abs", "neutrophils"),
    ("Absolute Neutrophil Count", "neutrophils"),
    ("Neutrophils", "neutrophils"),  # a bare count name is the absolute count, not the percentage
    # neutrophil percentage
    ("NEUT%", "neutrophils_percent"),
    ("Neutrophils %", "neutrophils_percent"),
    # lymphocytes
    ("LYMPH#", "lymphocytes"),
    ("LYMn", "lymphocytes"),
    ("ALC", "lymphocytes"),
    ("Lymphocytes", "lymphocytes"),
    # reticulocytes
    ("RETIC#", "reticulocytes"),
    ("Reticulocyte Count", "reticulocytes"),
    ("RETIC%", "reticulocytes_percent"),
    ("RETIC %", "reticulocytes_percent"),
    ("Ret%", "reticulocytes_percent"),
    # context
    ("Sex", "sex"),
    ("SEX", "sex"),
    ("Gender", "sex"),
    ("Age", "age_years"),
    ("Patient Age", "age_years"),
    ("DOB", "birth_date"),
    ("Date of Birth", "birth_date"),
    ("Pregnant", "pregnant"),
    # ids
    ("Sample ID", "sample_id"),
    ("MRN", "patient_id"),
    ("Patient ID", "patient_id"),
    ("Collection Date", "collected_at"),
    # the field names themselves
    ("hemoglobin", "hemoglobin"),
    ("neutrophils_percent", "neutrophils_percent"),
    ("age_years", "age_years"),
    ("platelets_ref_low", "platelets_ref_low"),
]


@pytest.mark.parametrize(("header", "field"), ALIASES)
def test_alias_resolves_without_unit(header: str, field: str) -> None:
    assert resolve_header(header) == (field, None)


@pytest.mark.parametrize("header", ["plt", "  PLT  ", "P.L.T", "Platelet-Count", "PLATELET_COUNT", "platelet  count"])
def test_case_spaces_dots_dashes_and_underscores_do_not_matter(header: str) -> None:
    assert resolve_header(header) == ("platelets", None)


UNITS_IN_HEADERS = [
    ("PLT (K/uL)", ("platelets", "K/uL")),
    ("PLT ( K/uL )", ("platelets", "K/uL")),
    ("PLT (/uL)", ("platelets", "/uL")),
    ("Hb [g/L]", ("hemoglobin", "g/L")),
    ("HGB (g/dL)", ("hemoglobin", "g/dL")),
    ("WBC, 10^9/L", ("wbc", "10^9/L")),
    ("NEUT# (10^9/L)", ("neutrophils", "10^9/L")),
    ("HCT (L/L)", ("hematocrit", "L/L")),
    ("MCV [fL]", ("mcv", "fL")),
    ("Age (months)", ("age_years", "months")),
    ("Age (years)", ("age_years", "years")),
    ("Age, weeks", ("age_years", "weeks")),
    # a percentage on a count that has a percentage twin means the twin
    ("Neutrophils (%)", ("neutrophils_percent", "%")),
    ("Neutrophils, %", ("neutrophils_percent", "%")),
    ("NEUT# [%]", ("neutrophils_percent", "%")),
    ("Reticulocytes (%)", ("reticulocytes_percent", "%")),
    ("RETIC (%)", ("reticulocytes_percent", "%")),
    ("Lymphocytes (%)", ("lymphocytes_percent", "%")),  # clinical-rules §1 v2: lymphocyte %
    # clinical-rules §1 v2: "21000-5 is RDW-SD in fL ... its own analyte `rdw_sd`": RDW in fL is RDW-SD
    ("RDW-SD (fL)", ("rdw_sd", "fL")),
    ("RDW SD [fL]", ("rdw_sd", "fL")),
    ("RDW (fL)", ("rdw_sd", "fL")),
    # ... but not on a count without a twin: the unit stays, and the plan rejects it
    ("WBC (%)", ("wbc", "%")),
    ("Hb (%)", ("hemoglobin", "%")),
    ("RDW (%)", ("rdw", "%")),
    ("RDW-CV (%)", ("rdw", "%")),
]


@pytest.mark.parametrize(("header", "expected"), UNITS_IN_HEADERS)
def test_unit_is_split_from_the_header(header: str, expected: tuple[str, str]) -> None:
    assert resolve_header(header) == expected


UNKNOWN = [
    "",
    "Comment",
    "Ward",
    "Foo (K/uL)",
    "NEUT",  # neither absolute nor percentage: not guessed
    "Lymph (%)",  # "Lymph" alone names neither the count nor the percentage: not guessed
    "MPV",
    "Sodium",
]


@pytest.mark.parametrize("header", UNKNOWN)
def test_unknown_headers_are_not_guessed(header: str) -> None:
    assert resolve_header(header) == (None, None)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("PLT (K/uL)", ("PLT", "K/uL")),
        ("Hb [g/L]", ("Hb", "g/L")),
        ("WBC, 10^9/L", ("WBC", "10^9/L")),
        ("PLT", ("PLT", None)),
        ("(K/uL)", ("(K/uL)", None)),  # no name before the unit: not a unit
    ],
)
def test_split_header(header: str, expected: tuple[str, str | None]) -> None:
    assert split_header(header) == expected


def test_name_key_collapses_separators_and_case() -> None:
    assert name_key("  Platelet__Count.-x ") == "platelet count x"
    assert name_key("NEUT#") == "neut#"


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("Platelet Count", "platelets"),
        ("NEUT #", "neutrophils"),
        ("neutrophils %", "neutrophils_percent"),
        ("Potassium", None),
    ],
)
def test_field_for_name_serves_long_item_names_too(name: str, field: str | None) -> None:
    assert field_for_name(name) == field
