"""The film and context of a CBC on the HL7 v2 path (clinical-rules §8, §10-§12 v2; adapters/context_codes.py).

- An OBX in the CBC's order group whose OBX-3 is a LOINC code of `reference_ranges/context_codes.csv`: platelet
  clumps (7796-6; OBX-5 a presence answer, CWE code or text, or ST) -> `film.platelet_clumps`; INR, creatinine,
  indirect bilirubin (NM, OBX-6 the unit: none for INR, mg/dL for the others) -> `context.*`; haptoglobin
  (SN `<^10` or a not-detected answer) -> `context.haptoglobin_undetectable`.
- RXA segments after the patient's PID (pharmacy/treatment administration: RXA-3 start, RXA-4 end, RXA-5 the
  administered code with coding system WC = WHO ATC or RXNORM, HL7 table 0396; RXA-20 completion status RE / NA =
  not given; RXA-21 D = deleted) -> `context.myelosuppressive_therapy` and `context.heparin_started_at` for every
  CBC of that patient. An ORU^R01 has no pharmacy segment group: this is the encoding labservice documents
  (docs/interoperability.md), not one the standard prescribes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from labservice.adapters.context_codes import (
    HAPTOGLOBIN,
    HL7_SYSTEMS,
    LOINC,
    MEDICATION_FIELDS,
    PLATELET_CLUMPS,
    QUANTITY_UNITS,
    WINDOW_KEY,
    ContextCodes,
    MedicationExposure,
    haptoglobin_undetectable,
    load_context_codes,
    medication_context,
    presence,
    quantity_problem,
)
from labservice.adapters.hl7v2.codes import LOINC_SYSTEMS
from labservice.adapters.hl7v2.message import Segment
from labservice.adapters.hl7v2.statuses import read_status
from labservice.adapters.hl7v2.values import read_number, read_time
from labservice.core.ruleset import Ruleset

#: RXA-20 completion statuses of a dose that was not given (HL7 table 0322), RXA-21 action code of a deletion.
NOT_GIVEN = frozenset({"RE", "NA"})
DELETED = "D"


def context_codes(rs: Ruleset) -> ContextCodes:
    return load_context_codes(rs.directory)


def context_field(obx: Segment, codes: ContextCodes) -> str | None:
    """The film or context field an OBX carries (by its LOINC code in OBX-3), or None."""
    for k in (1, 4):
        if obx.get(3, k + 2).upper() in LOINC_SYSTEMS:
            name = codes.field_of(LOINC, obx.get(3, k))
            if name is not None and name not in MEDICATION_FIELDS:
                return name
    return None


def read_context_obx(
    obx: Segment, name: str, film: dict[str, Any], context: dict[str, Any], locations: dict[str, str]
) -> str | None:
    """Put one context OBX into `film` / `context`; the reason it cannot be used, else None."""
    target, key = (film, "platelet_clumps") if name == PLATELET_CLUMPS else (context, name.split(".", 1)[1])
    status = read_status(obx.get(11))
    if not status.used:
        return f"{key}: result status {status.code} ({status.meaning})"
    if key in target:
        return f"{key}: a second result in this order group"
    value_type = obx.get(2).upper()
    structured = [obx.get(5, k) for k in range(1, 5)]
    if name in QUANTITY_UNITS:
        number = read_number(value_type, obx.get(5) if value_type != "SN" else obx.field(5), structured)
        if number.value is None:
            return f"{key}: {number.problem or 'not a number'}"
        problem = quantity_problem(name, obx.get(6, 1))
        if problem:
            return problem
        target[key] = number.value
    elif name == HAPTOGLOBIN:
        comparator = structured[0] if value_type == "SN" else None
        measured = read_number(value_type, obx.get(5), []).value if value_type == "NM" else None
        answer = (obx.get(5, 2) or obx.get(5, 1)) if value_type in ("CWE", "CE", "CNE") else obx.get(5)
        said = haptoglobin_undetectable(measured, comparator, answer)
        if said is None:
            return f"{key}: neither a value nor a detected / not detected answer"
        target[key] = said
    else:
        words = [obx.get(5, 1), obx.get(5, 2)] if value_type in ("CWE", "CE", "CNE") else [obx.get(5)]
        said = next((p for word in words if (p := presence(word)) is not None), None)
        if said is None:
            return f"{key}: not a presence answer (present / absent, positive / negative)"
        target[key] = said
    locations[name] = f"{obx.location}-5"
    return None


def _exposure(rxa: Segment, codes: ContextCodes, zone, zone_name: str) -> MedicationExposure | None:
    name = None
    for k in (1, 4):
        system = HL7_SYSTEMS.get(rxa.get(5, k + 2).upper())
        if system is not None and rxa.get(5, k):
            name = codes.field_of(system, rxa.get(5, k))
            if name in MEDICATION_FIELDS:
                break
    if name not in MEDICATION_FIELDS:
        return None
    start = read_time(rxa.get(3), zone, zone_name).iso if rxa.get(3) else None
    end = read_time(rxa.get(4), zone, zone_name).iso if rxa.get(4) else None
    return MedicationExposure(
        name,
        datetime.fromisoformat(start) if start else None,
        datetime.fromisoformat(end) if end else None,
        False,  # an administration record, not an order: it states the dates it was given
        rxa.location,
    )


def medication_fields(
    rxas: list[Segment], collected_at: str | None, rs: Ruleset, zone, zone_name: str
) -> tuple[dict[str, Any], dict[str, str], list[dict[str, Any]], list[str]]:
    """(context fields, their locations, unused RXA entries, every RXA read for them) for a CBC collected at
    `collected_at`."""
    codes = context_codes(rs)
    exposures, unused = [], []
    for rxa in rxas:
        exposure = _exposure(rxa, codes, zone, zone_name)
        if exposure is None:
            unused.append(_rxa_entry(rxa, "not a medication code listed in reference_ranges/context_codes.csv"))
        elif rxa.get(20).upper() in NOT_GIVEN or rxa.get(21).upper() == DELETED:
            unused.append(_rxa_entry(rxa, f"not given (RXA-20 {rxa.get(20)!r}, RXA-21 {rxa.get(21)!r})"))
        else:
            exposures.append(exposure)
    at = datetime.fromisoformat(collected_at) if collected_at else None
    stated = medication_context(exposures, at, rs.value(WINDOW_KEY))
    by_location = {rxa.location: rxa for rxa in rxas}
    unused += [_rxa_entry(by_location[where], reason) for where, reason in (*stated.unused, *stated.out_of_time)]
    context = {
        name.split(".", 1)[1]: value.isoformat() if isinstance(value, datetime) else value
        for name, value in stated.context.items()
    }
    locations = {name: f"{where}-5" for name, where in stated.locations.items()}
    return context, locations, unused, stated.supporting


def _rxa_entry(rxa: Segment, reason: str) -> dict[str, Any]:
    return {
        "location": rxa.location,
        "code": rxa.get(5, 1),
        "text": rxa.get(5, 2),
        "coding_system": rxa.get(5, 3),
        "start": rxa.get(3),
        "reason": reason,
    }
