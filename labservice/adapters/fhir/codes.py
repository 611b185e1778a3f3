"""Which LOINC code names which analyte (from reference_ranges/analytes.csv) and which codes are CBC panels.

The analyte map is the ruleset's own (`analytes.csv`, column `loinc`, clinical-rules §1 [S15]), the
same one the CSV adapter uses for long files, so a laboratory that adds a code adds it once.
"""

from __future__ import annotations

from typing import Any

from labservice.core.ruleset import Ruleset

LOINC_SYSTEMS = ("http://loinc.org", "urn:oid:2.16.840.1.113883.6.1")
UCUM_SYSTEM = "http://unitsofmeasure.org"
#: CBC panels of clinical-rules §1 [S15]: 58410-2 CBC panel, 57021-8 CBC with differential.
CBC_PANEL_CODES = frozenset({"58410-2", "57021-8"})


def analyte_by_loinc(ruleset: Ruleset) -> dict[str, str]:
    """LOINC code -> our analyte key (cached on the ruleset)."""
    cached = ruleset._cache.get("fhir_analyte_by_loinc")
    if cached is None:
        cached = {code: name for name, analyte in ruleset.analytes.items() for code in analyte.loinc}
        ruleset._cache["fhir_analyte_by_loinc"] = cached
    return cached


def loinc_codes(concept: Any) -> list[str]:
    """The LOINC codes of a CodeableConcept, in order (codings of other systems are skipped)."""
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return []
    return [coding["code"] for coding in codings
            if isinstance(coding, dict) and coding.get("system") in LOINC_SYSTEMS
            and isinstance(coding.get("code"), str)]


def analyte_of(concept: Any, ruleset: Ruleset) -> tuple[str, str] | None:
    """(analyte, LOINC code) for the first coding that names one of our analytes."""
    known = analyte_by_loinc(ruleset)
    for code in loinc_codes(concept):
        if code in known:
            return known[code], code
    return None


def is_cbc_panel(concept: Any) -> bool:
    return any(code in CBC_PANEL_CODES for code in loinc_codes(concept))
