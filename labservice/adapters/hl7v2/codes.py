"""Which OBX-3 code names which analyte: LOINC (coding system LN) and the laboratory's local codes.

LOINC codes come from the ruleset (`analytes.csv`, column `loinc`, clinical-rules §1 [S15]), the
same map the CSV and FHIR adapters use. Local codes come from `hl7_local_codes.csv` in the rule
directory (the packaged default when a laboratory's copy has none), extended or overridden by the
CSV file that HL7_LOCAL_CODES names. Columns: `code, coding_system, analyte, unit, source, note`.
An empty `coding_system` matches any coding system, LN included, so a site can map a LOINC code
that clinical-rules §1 does not list (FHIR-Converter's samples send platelet counts as 11125-2,
which LOINC defines as platelet morphology). `unit` is the unit to assume when OBX-6 is empty.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from labservice.core.ruleset import Ruleset
from labservice.core.units import UnitError, conversion_factor
from labservice.rule_tables import packaged_directory

LOCAL_CODES_FILE = "hl7_local_codes.csv"
LOINC_SYSTEMS = frozenset({"LN", "LOINC"})
REQUIRED_COLUMNS = ("code", "analyte")


class LocalCodeError(ValueError):
    """A local-code file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class LocalCode:
    analyte: str
    unit: str  # unit assumed when OBX-6 is empty ('' = none: an empty OBX-6 is an error)
    where: str  # file:line


@dataclass
class CodeMap:
    """Local codes keyed by (coding system, code), both upper-cased; system '' matches any."""

    local: dict[tuple[str, str], LocalCode] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def lookup(self, code: str, system: str) -> LocalCode | None:
        code, system = code.strip().upper(), system.strip().upper()
        if system and (system, code) in self.local:
            return self.local[(system, code)]
        return self.local.get(("", code))


def load_code_map(ruleset: Ruleset, extra: str | Path | None = None) -> CodeMap:
    """The default local codes (rule directory, else packaged), then `extra` overriding them."""
    default = Path(ruleset.directory) / LOCAL_CODES_FILE
    if not default.exists():
        default = packaged_directory() / LOCAL_CODES_FILE
    codes = CodeMap()
    for path in (default, Path(extra) if extra else None):
        if path is not None:
            _load_into(codes, path, ruleset)
    return codes


def _load_into(codes: CodeMap, path: Path, ruleset: Ruleset) -> None:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise LocalCodeError(f"{path}: cannot read the local-code file ({error.strerror})") from None
    seen: set[tuple[str, str]] = set()
    with handle:
        reader = csv.DictReader(handle)
        missing = [name for name in REQUIRED_COLUMNS if name not in (reader.fieldnames or ())]
        if missing:
            raise LocalCodeError(f"{path}:1: missing column(s) {', '.join(missing)}")
        for row in reader:
            cells = {key: (value or "").strip() for key, value in row.items() if key}
            if not any(cells.values()):
                continue
            where = f"{path}:{reader.line_num}"
            key = (cells.get("coding_system", "").upper(), cells["code"].upper())
            if not key[1]:
                raise LocalCodeError(f"{where}: code is empty")
            if key in seen:
                raise LocalCodeError(f"{where}: code {cells['code']!r} is listed twice")
            seen.add(key)
            analyte, unit = cells["analyte"], cells.get("unit", "")
            if analyte not in ruleset.analytes:
                raise LocalCodeError(f"{where}: unknown analyte {analyte!r} (one of {', '.join(ruleset.analytes)})")
            if unit:
                try:
                    conversion_factor(ruleset, analyte, unit)
                except UnitError as error:
                    raise LocalCodeError(f"{where}: {error}") from None
            codes.local[key] = LocalCode(analyte, unit, where)
    codes.files.append(str(path))
