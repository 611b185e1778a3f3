"""Codes the FHIR answer uses: HL7 interpretation flags, flag priorities, and the SNOMED CT map.

The SNOMED CT codes for our finding codes are data (`reference_ranges/snomed_ct.csv`), each row
citing the published page it was checked against; a finding without a verified code has an empty
`snomed_code` and gets no conclusionCode. The table is read from the ruleset's directory (a
laboratory's copy of `reference_ranges/`), or from the packaged one when that copy has none.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from labservice.core.ruleset import Ruleset, RulesetError
from labservice.rule_tables import packaged_directory

SNOMED_FILE = "snomed_ct.csv"
SNOMED_SYSTEM = "http://snomed.info/sct"
SNOMED_COLUMNS = ("finding_code", "snomed_code", "display", "source_tag", "source", "note")

INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
#: Displays of the v3 ObservationInterpretation codes the engine emits (terminology.hl7.org).
INTERPRETATION_DISPLAY = {"N": "Normal", "L": "Low", "H": "High", "LL": "Critical low", "HH": "Critical high"}

LOINC_SYSTEM = "http://loinc.org"
CBC_PANEL = {"system": LOINC_SYSTEM, "code": "58410-2", "display": "CBC panel - Blood by Automated count"}
DIAGNOSTIC_SERVICE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0074"
HEMATOLOGY = {"system": DIAGNOSTIC_SERVICE_SYSTEM, "code": "HM", "display": "Hematology"}

FLAG_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/flag-category"
FLAG_CATEGORY_LAB = {"system": FLAG_CATEGORY_SYSTEM, "code": "lab", "display": "Laboratory"}
#: Core extension (R4): the Flag's priority, codes from http://hl7.org/fhir/flag-priority-code.
FLAG_PRIORITY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-priority"
FLAG_PRIORITY_SYSTEM = "http://hl7.org/fhir/flag-priority-code"
FLAG_PRIORITY_DISPLAY = {"PN": "No alarm", "PL": "Low priority", "PM": "Medium priority", "PH": "High priority"}
#: Our urgency -> flag priority. Urgent (haematology within 24-48 h, a known critical value) is already high;
#: immediate (a red flag, a new critical value) is the highest the code system has.
URGENCY_PRIORITY = {"routine": "PN", "soon": "PM", "urgent": "PH", "immediate": "PH"}
#: Core extension (R4): a resource that supports the Flag (the report, the Observations behind it).
FLAG_DETAIL_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-detail"

#: Our own code systems (labservice vocabulary of api-contract.md).
URGENCY_SYSTEM = "urn:labservice:fhir:CodeSystem:urgency"
FINDING_SYSTEM = "urn:labservice:fhir:CodeSystem:finding"
URGENCY_DISPLAY = {"immediate": "Immediate", "urgent": "Urgent", "soon": "Soon", "routine": "Routine"}


@dataclass(frozen=True)
class SnomedRow:
    """One finding code of ours and its SNOMED CT concept, if a verified one exists."""

    finding_code: str
    snomed_code: str  # "" when no code could be verified
    display: str  # the concept's fully specified name
    source_tag: str  # its tag in sources.csv (SCT1, ...)
    source: str  # where the code was checked (URL, or repository + path + commit)
    note: str

    def coding(self) -> dict[str, str]:
        return {"system": SNOMED_SYSTEM, "code": self.snomed_code, "display": self.display}


def verhoeff_valid(digits: str) -> bool:
    """True when the last digit is the Verhoeff check digit of the rest (every SNOMED CT id has one)."""
    mult = (
        (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
        (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
        (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
        (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
        (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
        (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
        (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
        (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
        (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
        (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
    )
    perm = (
        (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
        (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
        (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
        (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
        (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
        (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
        (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
        (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
    )
    check = 0
    for position, digit in enumerate(reversed(digits)):
        check = mult[check][perm[position % 8][int(digit)]]
    return check == 0


def _check_snomed_row(row: dict[str, str], where: str) -> SnomedRow:
    code = (row.get("snomed_code") or "").strip()
    entry = SnomedRow(
        row["finding_code"].strip(),
        code,
        (row.get("display") or "").strip(),
        (row.get("source_tag") or "").strip(),
        (row.get("source") or "").strip(),
        (row.get("note") or "").strip(),
    )
    if not entry.finding_code:
        raise RulesetError(f"{where}: finding_code is empty")
    if code:
        if not (code.isdigit() and 6 <= len(code) <= 18 and verhoeff_valid(code)):
            raise RulesetError(f"{where}: {code!r} is not a SNOMED CT identifier (digits, Verhoeff check digit)")
        if code[-3:-1] not in ("00", "10"):
            raise RulesetError(f"{where}: {code!r} is not a concept identifier (partition {code[-3:-1]})")
        if not entry.display or not entry.source or not entry.source_tag:
            raise RulesetError(f"{where}: SNOMED code {code} needs its display (FSN), source_tag and source")
    elif not entry.note:
        raise RulesetError(f"{where}: a finding without a SNOMED code must say why in note")
    return entry


def load_snomed_map(path: Path) -> dict[str, SnomedRow]:
    """Read and check `snomed_ct.csv`; raise RulesetError naming the file and line on a fault."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in SNOMED_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise RulesetError(f"{path}:1: missing column(s) {', '.join(missing)}")
        out: dict[str, SnomedRow] = {}
        for line, row in enumerate(reader, start=2):
            entry = _check_snomed_row(row, f"{path}:{line}")
            if entry.finding_code in out:
                raise RulesetError(f"{path}:{line}: finding {entry.finding_code!r} listed twice")
            out[entry.finding_code] = entry
    return out


def snomed_map(ruleset: Ruleset) -> dict[str, SnomedRow]:
    """The SNOMED CT map beside the ruleset's tables (loaded once per ruleset); its tags must be in sources.csv."""
    cache = ruleset._cache
    if "snomed_ct" not in cache:
        path = Path(ruleset.directory) / SNOMED_FILE
        path = path if path.exists() else packaged_directory() / SNOMED_FILE
        table = load_snomed_map(path)
        for row in table.values():
            if row.source_tag and row.source_tag not in ruleset.sources:
                raise RulesetError(f"{path}: source tag {row.source_tag!r} of {row.finding_code} is not in sources.csv")
        cache["snomed_ct"] = table
    return cache["snomed_ct"]


def conclusion_codes(findings: list[dict], ruleset: Ruleset) -> list[dict]:
    """conclusionCode entries for the findings (answer["findings"]) that have a verified SNOMED CT code."""
    table = snomed_map(ruleset)
    out = []
    for finding in findings:
        row = table.get(finding["code"])
        if row is not None and row.snomed_code:
            out.append({"coding": [row.coding()], "text": finding.get("title") or finding["code"]})
    return out
