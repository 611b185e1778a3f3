"""The codes that carry a CBC's film and context on the FHIR R4 and HL7 v2 paths (clinical-rules §8, §10-§12 v2).

`reference_ranges/context_codes.csv` says which code (system + code, or an ATC group by prefix) stands for which
field of the api-contract `film` and `context` objects: LOINC codes for the film's platelet clumps and the PLASMIC
laboratory items (INR, creatinine, indirect bilirubin, haptoglobin), and medication codes (WHO ATC, RxNorm) for
myelosuppressive therapy and heparin exposure. Each row cites where its code was checked; the RxNorm rows are
examples (column `example`), a site adds the codes its EHR uses.

The readers (adapters/fhir/context.py, adapters/hl7v2/context.py) turn what they find into `MedicationExposure`
and `(field, value)` pairs; `medication_context` decides what the exposures state, the same way for both paths.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

CODES_FILE = "context_codes.csv"
LOINC = "http://loinc.org"
ATC = "http://www.whocc.no/atc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
#: HL7 v2 coding systems (table 0396) -> the FHIR system URI of the same code system.
HL7_SYSTEMS = {"LN": LOINC, "WC": ATC, "RXNORM": RXNORM}

MYELOSUPPRESSIVE = "context.myelosuppressive_therapy"
HEPARIN = "context.heparin_started_at"
MEDICATION_FIELDS = (MYELOSUPPRESSIVE, HEPARIN)
PLATELET_CLUMPS = "film.platelet_clumps"
HAPTOGLOBIN = "context.haptoglobin_undetectable"
#: Quantities and the units they must be sent in (the contract's fields are in mg/dL; INR has no unit).
QUANTITY_UNITS = {
    "context.inr": frozenset({"", "1", "{inr}", "{ratio}", "inr", "ratio"}),
    "context.creatinine_mg_dl": frozenset({"mg/dl"}),
    "context.indirect_bilirubin_mg_dl": frozenset({"mg/dl"}),
}
OBSERVATION_FIELDS = (PLATELET_CLUMPS, HAPTOGLOBIN, *QUANTITY_UNITS)
#: thresholds.csv: how far back "in the last 6 weeks" reaches (clinical-rules §11 v2).
WINDOW_KEY = "myelosuppressive_therapy_window_days"

#: Presence answers: words, and the LOINC answer codes and SNOMED CT concepts of the presence answer list
#: (LA9633-4 / 52101004 Present, LA9634-2 / 2667000 Absent: nmdp-ig/cibmtr-reporting-ig
#: build/input/fsh/terminology/observations/PresenceAbsence.fsh, commit 23bcc0f6e80cfe0cb555c157c88d0a3e109290a9).
_PRESENT = frozenset(
    {"present", "positive", "pos", "detected", "seen", "yes", "y", "true", "la9633-4", "52101004"}
    | {"occasional", "few", "many", "numerous", "1+", "2+", "3+", "4+"}
)
_ABSENT = frozenset(
    {"absent", "negative", "neg", "not detected", "undetected", "none", "none seen", "not seen", "no", "n"}
    | {"false", "nil", "la9634-2", "2667000"}
)


class ContextCodeError(ValueError):
    """A row of context_codes.csv that cannot be used: the message names the file and line."""


@dataclass(frozen=True)
class ContextCodes:
    exact: dict[tuple[str, str], str]  # (system, code) -> field
    prefixes: tuple[tuple[str, str, str], ...]  # (system, code prefix, field), longest first

    def field_of(self, system: str, code: str) -> str | None:
        """The field a coding stands for, or None."""
        found = self.exact.get((system, code.strip()))
        if found is not None:
            return found
        for prefix_system, prefix, name in self.prefixes:
            if system == prefix_system and code.strip().upper().startswith(prefix.upper()):
                return name
        return None

    def observation_codes(self) -> frozenset[str]:
        """The LOINC codes of observations (film and PLASMIC items), for grouping and prefetch queries."""
        return frozenset(code for (system, code), name in self.exact.items() if system == LOINC)


@lru_cache(maxsize=8)
def load_context_codes(directory: Path) -> ContextCodes:
    path = directory / CODES_FILE
    exact: dict[tuple[str, str], str] = {}
    prefixes: list[tuple[str, str, str]] = []
    known = (*MEDICATION_FIELDS, *OBSERVATION_FIELDS)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            where = f"{CODES_FILE}:{reader.line_num}"
            name, system, code = (row.get(k, "").strip() for k in ("field", "system", "code"))
            if name not in known:
                raise ContextCodeError(f"{where}: field {name!r} is not one of {', '.join(known)}")
            if not system or not code or not (row.get("source") or "").strip():
                raise ContextCodeError(f"{where}: system, code and source are required")
            if row.get("match", "exact").strip() == "prefix":
                prefixes.append((system, code, name))
            elif (system, code) in exact:
                raise ContextCodeError(f"{where}: {system}|{code} is listed twice")
            else:
                exact[(system, code)] = name
    return ContextCodes(exact, tuple(sorted(prefixes, key=lambda p: -len(p[1]))))


def presence(text: object) -> bool | None:
    """True / False for a presence answer (word or code, case and spacing ignored), else None."""
    if isinstance(text, bool):
        return text
    if not isinstance(text, str):
        return None
    key = re.sub(r"\s+", " ", text.strip().casefold())
    return True if key in _PRESENT else False if key in _ABSENT else None


def quantity_problem(name: str, unit: str | None) -> str | None:
    """Why a quantity for `name` cannot be used as sent (its unit), else None."""
    allowed = QUANTITY_UNITS[name]
    if (unit or "").strip().casefold() in allowed:
        return None
    wanted = "no unit" if name == "context.inr" else "mg/dL"
    return f"{name.split('.', 1)[1]}: a value in {unit!r}, {wanted} expected"


def haptoglobin_undetectable(value: float | None, comparator: str | None, words: object = None) -> bool | None:
    """Haptoglobin below its detection limit (a value with comparator `<` or `<=`, 0, or a not-detected answer)
    is undetectable; a measured value above 0 is not; anything else is not stated (clinical-rules §10 v2)."""
    if comparator in ("<", "<="):
        return True
    if value is not None and not math.isnan(value):
        return value <= 0.0
    said = presence(words)
    return None if said is None else not said


@dataclass(frozen=True)
class MedicationExposure:
    """One medication record (FHIR MedicationStatement / Request / Administration, HL7 v2 RXA)."""

    field: str  # MYELOSUPPRESSIVE or HEPARIN
    start: datetime | None
    end: datetime | None
    running: bool  # its status says it is still given (active, in-progress, on-hold)
    where: str  # its location in the input, for the answer's `unused` list


@dataclass
class MedicationContext:
    """What a CBC's medication records state, and the records that state nothing, with the reason."""

    context: dict[str, object] = field(default_factory=dict)
    locations: dict[str, str] = field(default_factory=dict)
    unused: list[tuple[str, str]] = field(default_factory=list)  # (where, reason): a record that cannot be read
    #: (where, reason): a record read, but dated outside what this CBC's context covers (another CBC's, perhaps)
    out_of_time: list[tuple[str, str]] = field(default_factory=list)
    #: every record that supports what is stated (`locations` names the one each field is shown with)
    supporting: list[str] = field(default_factory=list)


def medication_context(
    exposures: list[MedicationExposure], collected_at: datetime | None, window_days: float
) -> MedicationContext:
    """The `context` the records state for a CBC collected at `collected_at` (None: unknown).

    - myelosuppressive_therapy is true when a myelosuppressive record is running at the collection, or its
      start or end lies within `window_days` (42, "the last 6 weeks", §11) before it. A record does not state
      "false": the input may not hold every medicine, so no record leaves the field not stated.
    - heparin_started_at is the earliest start of the heparin records that started at or before the collection.
      heparin_in_previous_30_days is never derived: a record cannot tell a previous course from this one (§12).
    """
    out = MedicationContext()
    window = timedelta(days=window_days)
    starts: list[tuple[datetime, str]] = []
    for record in exposures:
        if record.field == MYELOSUPPRESSIVE:
            reason, dated = _myelosuppressive_reason(record, collected_at, window, window_days)
            if reason is None:
                out.supporting.append(record.where)
                if MYELOSUPPRESSIVE not in out.context:
                    out.context[MYELOSUPPRESSIVE] = True
                    out.locations[MYELOSUPPRESSIVE] = record.where
            else:
                (out.out_of_time if dated else out.unused).append((record.where, reason))
        elif record.start is None:
            out.unused.append((record.where, "heparin: no start time, so the 4Ts timing cannot use it"))
        elif collected_at is not None and _aware(record.start) > _aware(collected_at):
            out.out_of_time.append((record.where, "heparin: started after this CBC was collected"))
        else:
            starts.append((record.start, record.where))
            out.supporting.append(record.where)
    if starts:
        start, where = min(starts, key=lambda pair: _aware(pair[0]))
        out.context[HEPARIN] = start
        out.locations[HEPARIN] = where
    return out


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _myelosuppressive_reason(
    record: MedicationExposure, collected_at: datetime | None, window: timedelta, window_days: float
) -> tuple[str | None, bool]:
    """(None, _) when the record states treatment in the window before the CBC, else (why not, whether it is
    because of its dates: a record dated outside the window may be another CBC's)."""
    if collected_at is None:
        return (None, False) if record.running else ("myelosuppressive therapy: no CBC collection time", False)
    at = _aware(collected_at)
    start = _aware(record.start) if record.start is not None else None
    end = _aware(record.end) if record.end is not None else None
    if start is not None and start > at:
        return "myelosuppressive therapy: started after this CBC was collected", True
    if record.running:
        return None, False
    latest = end or start
    if latest is None:
        return "myelosuppressive therapy: no date and not active", False
    if at - latest <= window:
        return None, False
    days = f"{window_days:g}"
    if end is None:
        return f"myelosuppressive therapy: started more than {days} days before the CBC, no end date given", True
    return f"myelosuppressive therapy: ended more than {days} days before the CBC", True
