"""One Observation → one result of our CBC document (value, unit, the laboratory's range), or why not.

The unit comes from `valueQuantity.code` when its system is UCUM, else from the `unit` text (the
first spelling `reference_ranges/units.csv` knows for the analyte; an unknown one is passed on so
the engine names it). The laboratory's range is the first `referenceRange` meant as the normal
range for everyone (no `appliesTo` or `age`), converted to the value's unit.

Malformed JSON types raise InputError naming the FHIR path; an Observation that is well formed but
carries no usable number (dataAbsentReason, valueString, a censored value, a unit that cannot be
converted) gives the reason instead, and the reader lists it as unused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from labservice.adapters.errors import InputError
from labservice.adapters.fhir.codes import UCUM_SYSTEM
from labservice.core.ruleset import Ruleset

REFERENCE_RANGE_MEANING = "http://terminology.hl7.org/CodeSystem/referencerange-meaning"
#: Code systems of Observation.interpretation whose LL / HH / AA are critical flags (clinical-rules §3 v2):
#: HL7 v3 ObservationInterpretation (R4) and HL7 v2 table 0078 (the older spelling).
INTERPRETATION_SYSTEMS = frozenset(
    {
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "http://hl7.org/fhir/v2/0078",
        "http://terminology.hl7.org/CodeSystem/v2-0078",
    }
)
CRITICAL_INTERPRETATIONS = ("LL", "HH", "AA")
#: Observation.status values whose result is withdrawn (FHIR R4 ObservationStatus).
WITHDRAWN_STATUSES = frozenset({"entered-in-error", "cancelled"})
#: Statuses of a complete, verified result; anything else is labelled on the answer.
FINAL_STATUSES = frozenset({"final", "amended", "corrected"})
VALUE_KEYS = (
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
)


@dataclass(frozen=True)
class Reading:
    """A result for the document, and where each of its fields came from (keys relative to the result)."""

    result: dict[str, Any] | float
    locations: dict[str, str]
    dropped: tuple[str, str] | None = None  # (path, reason) of a laboratory range that could not be used


def status_of(resource: dict[str, Any], path: str) -> str | None:
    status = resource.get("status")
    if status is not None and not isinstance(status, str):
        raise InputError({f"{path}.status": ["status must be a code (a string)."]})
    return status


def read_result(resource: dict[str, Any], path: str, analyte: str, ruleset: Ruleset) -> Reading | str:
    """The Observation's value as a result of `analyte`, or the reason it cannot be used."""
    quantity = resource.get("valueQuantity")
    if quantity is None:
        return _no_quantity(resource)
    qpath = f"{path}.valueQuantity"
    if not isinstance(quantity, dict):
        raise InputError({qpath: ["valueQuantity must be a Quantity (a JSON object)."]})
    if "value" not in quantity or quantity["value"] is None:
        return "valueQuantity has no value"
    value = _number(quantity["value"], f"{qpath}.value")
    comparator = _text(quantity, "comparator", qpath)
    if comparator:
        return f"the value is censored ({comparator} {value:g}); only an exact value can be interpreted"
    kind = ruleset.analytes[analyte].unit_kind
    unit, unit_path = _unit(quantity, qpath, kind, ruleset)
    if unit is not None:
        spelling = ruleset.units.lookup(kind, unit)
        # A refused spelling is used nowhere; one the table calls unknown (g/L for a count, §1 v2) goes
        # on to the engine, which answers 422 naming the analyte and the unit, as on every path.
        if spelling is not None and spelling.factor is None and not spelling.note.startswith("unknown unit"):
            return f"unit {unit!r} cannot be used for {analyte}: {spelling.note}"
    locations = {"": path, "value": f"{qpath}.value"}
    if unit_path:
        locations["unit"] = unit_path
    reference_range = _reference_range(resource, path, unit, kind, ruleset, locations)
    dropped = None
    if reference_range is not None:
        low, high = reference_range["low"], reference_range["high"]
        if low is not None and high is not None and not low < high:
            # Passed on: the engine sets it aside with a note in the answer, as on every path (§2 v2).
            dropped = (
                locations["reference_range"],
                f"{analyte}: the laboratory's range is inverted (low {low:g}, high {high:g}); "
                "it was set aside and the fallback range applies",
            )
    if unit is None and reference_range is None:
        return Reading(value, locations, dropped)  # a bare number: the canonical unit, as in our JSON
    result: dict[str, Any] = {"value": value, "unit": unit or ruleset.analytes[analyte].canonical_unit}
    if reference_range is not None:
        result["reference_range"] = reference_range
    return Reading(result, locations, dropped)


def _no_quantity(resource: dict[str, Any]) -> str:
    absent = resource.get("dataAbsentReason")
    if absent is not None:
        return f"no value: dataAbsentReason {_concept_text(absent)}"
    for key in VALUE_KEYS:
        if key in resource and resource[key] is not None:
            shown = resource[key]
            if key == "valueString" and isinstance(shown, str):
                return f"the value is text ({shown[:60]!r}), not a quantity"
            return f"the value is {key}, not valueQuantity"
    return "no value (no valueQuantity)"


def _concept_text(concept: Any) -> str:
    if isinstance(concept, dict):
        for coding in concept.get("coding") or []:
            if isinstance(coding, dict) and (coding.get("code") or coding.get("display")):
                return str(coding.get("code") or coding.get("display"))
        if isinstance(concept.get("text"), str):
            return concept["text"]
    return "(given)"


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError({path: [f"Expected a JSON number, not {_json_type(value)}."]})
    try:
        number = float(value)
    except OverflowError:  # an integer literal beyond any float, e.g. 10**400
        number = math.inf
    if not math.isfinite(number):
        raise InputError({path: ["Expected a finite number."]})
    return number


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _text(container: dict[str, Any], key: str, path: str) -> str | None:
    value = container.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError({f"{path}.{key}": [f"{key} must be a string."]})
    return value


def _unit(quantity: dict[str, Any], path: str, kind: str, ruleset: Ruleset) -> tuple[str | None, str | None]:
    """(unit, its location): the UCUM code, else the unit text, whichever the unit table knows first."""
    code = _text(quantity, "code", path)
    text = _text(quantity, "unit", path)
    system = _text(quantity, "system", path)
    candidates: list[tuple[str, str]] = []
    if code and system == UCUM_SYSTEM:
        candidates.append((code, f"{path}.code"))
    if text:
        candidates.append((text, f"{path}.unit"))
    if code and system != UCUM_SYSTEM:
        candidates.append((code, f"{path}.code"))
    for unit, where in candidates:
        if ruleset.units.lookup(kind, unit) is not None:
            return unit, where
    return candidates[0] if candidates else (None, None)


def _reference_range(
    resource: dict[str, Any], path: str, unit: str | None, kind: str, ruleset: Ruleset, locations: dict[str, str]
) -> dict[str, float | None] | None:
    ranges = resource.get("referenceRange")
    if ranges is None:
        return None
    if not isinstance(ranges, list):
        raise InputError({f"{path}.referenceRange": ["referenceRange must be a list."]})
    for i, entry in enumerate(ranges):
        where = f"{path}.referenceRange[{i}]"
        if not isinstance(entry, dict):
            raise InputError({where: ["A referenceRange must be a JSON object."]})
        if not _is_normal_for_everyone(entry):
            continue
        low = _bound(entry, "low", where, unit, kind, ruleset)
        high = _bound(entry, "high", where, unit, kind, ruleset)
        if low is None and high is None:
            continue  # text only
        locations["reference_range"] = where
        locations["reference_range.low"] = f"{where}.low.value"
        locations["reference_range.high"] = f"{where}.high.value"
        return {"low": low, "high": high}
    return None


def _is_normal_for_everyone(entry: dict[str, Any]) -> bool:
    if entry.get("appliesTo") or entry.get("age"):
        return False
    meaning = entry.get("type")
    if meaning is None:
        return True
    codings = meaning.get("coding") if isinstance(meaning, dict) else None
    return any(isinstance(c, dict) and c.get("code") == "normal" for c in codings or [])


def _bound(entry: dict[str, Any], key: str, path: str, unit: str | None, kind: str, ruleset: Ruleset) -> float | None:
    quantity = entry.get(key)
    if quantity is None:
        return None
    where = f"{path}.{key}"
    if not isinstance(quantity, dict):
        raise InputError({where: [f"{key} must be a Quantity (a JSON object)."]})
    if quantity.get("value") is None:
        return None
    value = _number(quantity["value"], f"{where}.value")
    bound_unit, bound_path = _unit(quantity, where, kind, ruleset)
    if bound_unit is None or unit is None or bound_unit == unit:
        return value
    units = ruleset.units
    mine, theirs = units.lookup(kind, unit), units.lookup(kind, bound_unit)
    if theirs is None or theirs.factor is None:
        raise InputError({bound_path or where: [f"unknown unit {bound_unit!r} for this analyte's range"]})
    if mine is None or mine.factor is None or mine.factor == theirs.factor:
        return value  # the value's own unit is reported by the engine if it is unknown
    return float(f"{value * theirs.factor / mine.factor:.12g}")


def laboratory_flag(resource: dict[str, Any]) -> str | None:
    """The laboratory's critical flag on an Observation (or component): LL, HH or AA from `interpretation`
    (HL7 v3 ObservationInterpretation, or no system), honoured by the engine (clinical-rules §3 v2)."""
    concepts = resource.get("interpretation")
    if not isinstance(concepts, list):
        return None
    for concept in concepts:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            if not isinstance(coding, dict):
                continue
            system, code = coding.get("system"), coding.get("code")
            if code in CRITICAL_INTERPRETATIONS and (system is None or system in INTERPRETATION_SYSTEMS):
                return str(code)
    return None
