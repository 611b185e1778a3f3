"""Which LOINC code names which analyte (from reference_ranges/analytes.csv) and which codes are CBC panels.

The analyte map is the ruleset's own (`analytes.csv`, column `loinc`, clinical-rules §1 [S15]), the
same one the CSV adapter uses for long files, so a laboratory that adds a code adds it once.
"""

from __future__ import annotations

from typing import Any

from labservice.adapters.errors import InputError
from labservice.core.ruleset import Ruleset

LOINC_SYSTEMS = ("http://loinc.org", "urn:oid:2.16.840.1.113883.6.1")
UCUM_SYSTEM = "http://unitsofmeasure.org"
#: CBC panels of clinical-rules §1 [S15]: 58410-2 CBC panel, 57021-8 CBC with differential.
CBC_PANEL_CODES = frozenset({"58410-2", "57021-8"})


def loinc_codes(concept: Any) -> list[str]:
    """The LOINC codes of a CodeableConcept, in order (codings of other systems are skipped)."""
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return []
    return [
        coding["code"]
        for coding in codings
        if isinstance(coding, dict) and coding.get("system") in LOINC_SYSTEMS and isinstance(coding.get("code"), str)
    ]


def analyte_of(concept: Any, ruleset: Ruleset) -> tuple[str, str] | None:
    """(analyte, LOINC code) for the first coding that names one of our analytes."""
    known = ruleset.analyte_by_loinc()
    for code in loinc_codes(concept):
        if code in known:
            return known[code], code
    return None


def is_cbc_panel(concept: Any) -> bool:
    return any(code in CBC_PANEL_CODES for code in loinc_codes(concept))


def coded_parts(resource: dict[str, Any], path: str, ruleset: Ruleset) -> list[tuple[str, dict[str, Any], str]]:
    """(analyte, part, its path) for an Observation and each `component` that carries a CBC LOINC code.

    Most laboratories send one Observation per analyte; some send a panel Observation whose
    components are the analytes. Both are read the same way.
    """
    out = []
    own = analyte_of(resource.get("code"), ruleset)
    if own is not None:
        out.append((own[0], resource, path))
    components = resource.get("component")
    if components is None:
        return out
    if not isinstance(components, list):
        raise InputError({f"{path}.component": ["component must be a list."]})
    for k, component in enumerate(components):
        if not isinstance(component, dict):
            raise InputError({f"{path}.component[{k}]": ["A component must be a JSON object."]})
        coded = analyte_of(component.get("code"), ruleset)
        if coded is not None:
            out.append((coded[0], component, f"{path}.component[{k}]"))
    return out
