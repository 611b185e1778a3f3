"""The film and context of a CBC on the FHIR R4 path (clinical-rules §8, §10-§12 v2; adapters/context_codes.py).

- Observations in the CBC's report, panel or loose group coded as `reference_ranges/context_codes.csv` lists:
  platelet clumps (LOINC 7796-6, a presence answer) -> `film.platelet_clumps`; INR, creatinine and indirect
  bilirubin (valueQuantity, INR without a unit, the others in mg/dL) -> `context.inr`, `context.creatinine_mg_dl`,
  `context.indirect_bilirubin_mg_dl`; haptoglobin (below its detection limit) -> `context.haptoglobin_undetectable`.
- MedicationStatement, MedicationRequest and MedicationAdministration resources for the CBC's patient, coded
  (medicationCodeableConcept, or the `code` of a referenced Medication) with a listed ATC or RxNorm code ->
  `context.myelosuppressive_therapy` and `context.heparin_started_at` (adapters/context_codes.medication_context).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from labservice.adapters.context_codes import (
    HAPTOGLOBIN,
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
from labservice.adapters.fhir.index import Node, ResourceIndex, reference_text
from labservice.adapters.fhir.model import FhirCbc, Unused
from labservice.adapters.fhir.values import WITHDRAWN_STATUSES, status_of
from labservice.core.ruleset import Ruleset

MEDICATION_TYPES = ("MedicationStatement", "MedicationRequest", "MedicationAdministration")
#: Statuses of a record that was never given or is void (FHIR R4 value sets of the three resources).
NOT_GIVEN = frozenset({"entered-in-error", "cancelled", "not-taken", "not-done", "draft", "intended"})
#: Statuses of a record still being given.
RUNNING = frozenset({"active", "in-progress", "on-hold"})


def context_codes(rs: Ruleset) -> ContextCodes:
    return load_context_codes(rs.directory)


def _codings(concept: Any) -> list[tuple[str, str]]:
    if not isinstance(concept, dict):
        return []
    return [
        (str(c.get("system") or ""), c["code"])
        for c in concept.get("coding") or []
        if isinstance(c, dict) and isinstance(c.get("code"), str)
    ]


def _field(concept: Any, codes: ContextCodes) -> str | None:
    for system, code in _codings(concept):
        name = codes.field_of(system, code)
        if name is not None:
            return name
    return None


def is_context_observation(resource: dict[str, Any], codes: ContextCodes) -> bool:
    name = _field(resource.get("code"), codes)
    return name is not None and name not in MEDICATION_FIELDS


def _words(resource: dict[str, Any]) -> list[object]:
    words: list[object] = [resource.get("valueBoolean"), resource.get("valueString")]
    concept = resource.get("valueCodeableConcept")
    if isinstance(concept, dict):
        words.append(concept.get("text"))
        for coding in concept.get("coding") or []:
            if isinstance(coding, dict):
                words += [coding.get("code"), coding.get("display")]
    return [w for w in words if w is not None]


def read_observations(
    group_members: list[Node], codes: ContextCodes, unused: list[Unused], in_scope: set[int], locations: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(film fields, context fields) from the context Observations among a CBC's members."""
    film: dict[str, Any] = {}
    context: dict[str, Any] = {}
    for node in group_members:
        resource = node.resource
        name = _field(resource.get("code"), codes)
        if name is None or name in MEDICATION_FIELDS:
            continue
        in_scope.add(id(node))
        target, key = (film, "platelet_clumps") if name == PLATELET_CLUMPS else (context, name.split(".", 1)[1])
        if key in target:
            unused.append(Unused(node.type, node.id, node.path, f"{key}: a second result in this CBC"))
            continue
        if status_of(resource, node.path) in WITHDRAWN_STATUSES:
            unused.append(Unused(node.type, node.id, node.path, f"{key}: the result is withdrawn"))
            continue
        value, reason = _value(name, resource)
        if value is None:
            unused.append(Unused(node.type, node.id, node.path, f"{key}: {reason}"))
            continue
        target[key] = value
        locations[name] = node.path
    return film, context


def _value(name: str, resource: dict[str, Any]) -> tuple[Any, str]:
    quantity = resource.get("valueQuantity")
    sent = quantity.get("value") if isinstance(quantity, dict) else None
    has_number = isinstance(sent, int | float) and not isinstance(sent, bool)
    number = float(sent) if has_number else None  # type: ignore[arg-type]
    if name in QUANTITY_UNITS:
        if not has_number:
            return None, "no valueQuantity with a number"
        assert isinstance(quantity, dict)
        if quantity.get("comparator"):
            return None, f"a censored value ({quantity['comparator']}{number}) is not a measurement"
        problem = quantity_problem(name, quantity.get("code") or quantity.get("unit"))
        return (None, problem.split(": ", 1)[1]) if problem else (number, "")
    if name == HAPTOGLOBIN:
        comparator = quantity.get("comparator") if isinstance(quantity, dict) else None
        words = _words(resource)
        said = haptoglobin_undetectable(number, comparator, words[0] if words else None)
        return (said, "") if said is not None else (None, "neither a value nor a detected / not detected answer")
    for word in _words(resource):
        said = presence(word)
        if said is not None:
            return said, ""
    return None, "not a presence answer (present / absent, positive / negative, LA9633-4 / LA9634-2)"


def medication_nodes(index: ResourceIndex, codes: ContextCodes) -> list[tuple[Node, str]]:
    """(record, field) for every medication record whose code context_codes.csv lists."""
    out = []
    for node in index:
        if node.type not in MEDICATION_TYPES:
            continue
        concept = node.resource.get("medicationCodeableConcept")
        reference = node.resource.get("medicationReference")
        if concept is None and isinstance(reference, dict):
            target = index.resolve(reference, node)
            concept = target.resource.get("code") if target is not None else None
        name = _field(concept, codes)
        if name in MEDICATION_FIELDS:
            out.append((node, name))
    return out


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # a date alone: its start, UTC


def _period(resource: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """(start, end) of a record: effective[x], else a MedicationRequest's dosage bounds or authoredOn."""
    if "effectiveDateTime" in resource:
        moment = _time(resource["effectiveDateTime"])
        return moment, moment
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        return _time(period.get("start")), _time(period.get("end"))
    for dosage in resource.get("dosageInstruction") or []:
        repeat = ((dosage.get("timing") or {}).get("repeat") or {}) if isinstance(dosage, dict) else {}
        bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
        if isinstance(bounds, dict) and bounds.get("start"):
            return _time(bounds.get("start")), _time(bounds.get("end"))
    return _time(resource.get("authoredOn")), None


def _same_patient(node: Node, cbc: FhirCbc, index: ResourceIndex) -> bool:
    subject = node.resource.get("subject")
    if not isinstance(subject, dict):
        return cbc.subject is None
    target = index.resolve(subject, node)
    if target is not None and cbc.patient is not None:
        return target.resource is cbc.patient
    return cbc.subject is not None and reference_text(subject) == cbc.subject


def apply_medications(
    cbcs: list[FhirCbc], index: ResourceIndex, rs: Ruleset, unused: list[Unused], in_scope: set[int]
) -> None:
    """Put each CBC's medication context into its document (and say which records state nothing, and why)."""
    records = medication_nodes(index, context_codes(rs))
    if not records:
        return
    window = rs.value(WINDOW_KEY)
    by_path = {node.path: node for node, _ in records}
    reasons: dict[str, Unused] = {}  # a record no CBC could read, and why (the first reason given)
    used: set[str] = set()
    for cbc in cbcs:
        exposures = []
        for node, name in records:
            if not _same_patient(node, cbc, index):
                continue
            status = node.resource.get("status")
            if status in NOT_GIVEN:
                reasons.setdefault(node.path, Unused(node.type, node.id, node.path, f"status {status}: not given"))
                continue
            start, end = _period(node.resource)
            exposures.append(MedicationExposure(name, start, end, status in RUNNING, node.path))
        stated = medication_context(exposures, _time(cbc.document.get("collected_at")), window)
        for where, reason in stated.unused:
            node = by_path[where]
            reasons.setdefault(where, Unused(node.type, node.id, where, reason))
        used.update(stated.supporting)
        # A record dated outside this CBC's window is not about this CBC: counted as ignored unless another uses it.
        if stated.context:
            context = cbc.document.setdefault("context", {})
            for name, value in stated.context.items():
                key = name.split(".", 1)[1]
                context[key] = value.isoformat() if isinstance(value, datetime) else value
                cbc.locations[name] = stated.locations[name]
    for node, _ in records:
        if node.path in used or node.path in reasons:
            in_scope.add(id(node))
    unused.extend(item for where, item in reasons.items() if where not in used)
