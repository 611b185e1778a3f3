"""clinical-rules §1: the LOINC codes to accept, each mapped to its analyte in analytes.csv."""

from __future__ import annotations

import pytest

from labservice.core.ruleset import default_ruleset

RS = default_ruleset()

# Copied from clinical-rules.md §1 ("LOINC codes to accept (FHIR, HL7 v2)").
LOINC_FROM_RULES = [
    ("platelets", "777-3"),
    ("platelets", "26515-7"),
    ("wbc", "6690-2"),
    ("wbc", "26464-8"),
    ("wbc", "804-5"),
    ("hemoglobin", "718-7"),
    ("hemoglobin", "20509-6"),
    ("hemoglobin", "59260-0"),
    ("hematocrit", "4544-3"),
    ("hematocrit", "20570-8"),
    ("rbc", "789-8"),
    ("rbc", "26453-1"),
    ("mcv", "787-2"),
    ("mcv", "30428-7"),
    ("mch", "785-6"),
    ("mchc", "786-4"),
    # clinical-rules §1 v2: "788-0 is RDW-CV in %; 21000-5 is RDW-SD in fL ... its own analyte `rdw_sd`".
    ("rdw", "788-0"),
    ("rdw_sd", "21000-5"),
    ("neutrophils", "751-8"),
    ("neutrophils", "26499-4"),
    ("lymphocytes", "731-0"),
    ("lymphocytes", "26474-7"),
    ("reticulocytes", "60474-4"),
    ("reticulocytes", "14196-0"),
    ("reticulocytes_percent", "17849-1"),
    ("reticulocytes_percent", "4679-7"),
    ("reticulocytes_percent", "31112-6"),
    # clinical-rules §1 v2: "absolute lymphocytes likewise from lymphocyte % (LOINC 736-9 or 26478-8 ...)".
    # Checked against fixtures: 736-9 in the FHIR R4 spec's diagnosticreport-example(-ghp), 26478-8 in the
    # NIST LRI CBC message and FHIR-Converter LAB-ORU samples (fixtures/hl7v2/fhir-converter) and MIMIC-III
    # D_LABITEMS; 21000-5 in the Synthea bundles, in fL.
    ("lymphocytes_percent", "736-9"),
    ("lymphocytes_percent", "26478-8"),
]


@pytest.mark.parametrize(("analyte", "code"), LOINC_FROM_RULES)
def test_each_loinc_code_of_the_rules_maps_to_its_analyte(analyte, code):
    assert code in RS.analytes[analyte].loinc


def test_no_loinc_code_maps_to_two_analytes():
    seen: dict[str, str] = {}
    for name, analyte in RS.analytes.items():
        for code in analyte.loinc:
            assert code not in seen, f"{code} maps to {seen.get(code)} and {name}"
            seen[code] = name
