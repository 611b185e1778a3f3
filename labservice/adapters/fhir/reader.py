"""FHIR R4 → our CBC documents: `read_fhir(resource) -> FhirRead`.

Takes a Bundle (collection, transaction, batch, searchset, document), a DiagnosticReport with
contained or referenced Observations, a panel Observation (`hasMember`) or a single Observation.
Grouping is in `grouping.py`, values and units in `values.py`, the patient in `patient.py`.

Malformed input (no resourceType, an unsupported top-level resource, `entry` not a list, a value
that is not a number) raises InputError naming the FHIR path. Everything else is accounted for:
used Observations in `FhirCbc.observations`, CBC-related resources that could not be used in
`unused` with the reason, and the rest counted in `ignored` by resourceType.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from labservice.adapters.cbc_schema import LABORATORY_FLAGS
from labservice.adapters.errors import InputError
from labservice.adapters.fhir.codes import coded_parts, is_cbc_panel, loinc_codes
from labservice.adapters.fhir.context import apply_medications, context_codes, read_observations
from labservice.adapters.fhir.grouping import Group, find_groups
from labservice.adapters.fhir.index import Node, ResourceIndex
from labservice.adapters.fhir.model import FhirCbc, FhirRead, Unused, UsedObservation
from labservice.adapters.fhir.patient import PatientContext, patient_context
from labservice.adapters.fhir.values import (
    FINAL_STATUSES,
    WITHDRAWN_STATUSES,
    Reading,
    laboratory_flag,
    read_result,
    status_of,
)
from labservice.adapters.film_words import SCHISTOCYTE_LOINC, grade_words, schistocyte_grade
from labservice.core.ruleset import Ruleset, default_ruleset

BUNDLE_TYPES = ("collection", "transaction", "batch", "searchset", "document")
TOP_LEVEL_TYPES = ("Bundle", "DiagnosticReport", "Observation")
#: DiagnosticReport statuses of a complete report (FHIR R4 DiagnosticReportStatus).
FINAL_REPORT_STATUSES = frozenset({"final", "amended", "corrected", "appended"})
#: A dateTime with a time needs a UTC offset in FHIR; a date or year alone cannot be a collection time.
DATE_ONLY = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def read_fhir(resource: dict[str, Any], ruleset: Ruleset | None = None) -> FhirRead:
    """Read the CBCs of one FHIR input (raises InputError for malformed input)."""
    rs = ruleset or default_ruleset()
    index = _index(resource)
    groups = find_groups(index, rs)
    unused: list[Unused] = []
    in_scope: set[int] = set()
    cbcs = []
    for group in groups:
        unused.extend(group.problems)
        cbc = _cbc(group, index, rs, unused, in_scope)
        if cbc is not None:
            cbcs.append(cbc)
    apply_medications(cbcs, index, rs, unused, in_scope)  # clinical-rules §11, §12 v2 (adapters/fhir/context.py)
    by_path = {node.path: node for node in index}
    for item in unused:  # a resource listed as unused is not also counted as ignored
        if item.path in by_path:
            in_scope.add(id(by_path[item.path]))
    ignored = Counter(node.type for node in index if id(node) not in in_scope)
    return FhirRead(cbcs=cbcs, unused=unused, ignored=dict(sorted(ignored.items())))


def _index(resource: Any) -> ResourceIndex:
    if not isinstance(resource, dict):
        raise InputError({"body": ["A FHIR resource must be a JSON object."]})
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or not kind:
        raise InputError(
            {"resourceType": ["The body has no resourceType: send a FHIR Bundle, DiagnosticReport or Observation."]}
        )
    if kind not in TOP_LEVEL_TYPES:
        raise InputError(
            {"resourceType": [f"{kind} is not supported here: send a Bundle, DiagnosticReport or Observation."]}
        )
    if kind == "Bundle":
        bundle_type = resource.get("type")
        if bundle_type not in BUNDLE_TYPES:
            raise InputError(
                {
                    "Bundle.type": [
                        f"Bundle type {bundle_type!r} is not supported; expected one of {', '.join(BUNDLE_TYPES)}."
                    ]
                }
            )
        return ResourceIndex.of_bundle(resource)
    return ResourceIndex.of_resource(resource)[0]


def _cbc(group: Group, index: ResourceIndex, rs: Ruleset, unused: list[Unused], in_scope: set[int]) -> FhirCbc | None:
    report = group.report
    in_scope.update(id(node) for node in group.panels if _is_cbc_panel(node, group, rs))
    if report is not None:
        in_scope.add(id(report))
        status = status_of(report.resource, report.path)
        if status in WITHDRAWN_STATUSES:
            unused.append(Unused(report.type, report.id, report.path, f"status {status}: the report is withdrawn"))
            in_scope.update(id(node) for node in group.members)
            return None
    results: dict[str, Any] = {}
    locations: dict[str, str] = {}
    used: list[UsedObservation] = []
    by_analyte: dict[str, Node] = {}
    non_final: list[str] = []
    lab_flags: dict[str, str] = {}
    for node in group.members:
        parts = coded_parts(node.resource, node.path, rs)
        if not parts:
            continue  # a non-CBC Observation inside the report: counted as ignored
        in_scope.add(id(node))
        status = status_of(node.resource, node.path)
        for analyte, part, path in parts:
            reading = (
                f"status {status}: the result is withdrawn"
                if status in WITHDRAWN_STATUSES
                else read_result(part, path, analyte, rs)
            )
            if isinstance(reading, Reading) and analyte in by_analyte:
                first = by_analyte[analyte]
                reading = f"a second {analyte} result in this CBC; {first.where()} was used"
            if not isinstance(reading, Reading):
                unused.append(Unused(node.type, node.id, path, f"{analyte}: {reading}"))
                continue
            by_analyte[analyte] = node
            results[analyte] = reading.result
            flag = laboratory_flag(part)
            if flag is not None:
                lab_flags[analyte] = flag
                locations[f"{LABORATORY_FLAGS}.{analyte}"] = f"{path}.interpretation"
            if reading.dropped is not None:
                unused.append(Unused(node.type, node.id, *reading.dropped))
            for key, where in reading.locations.items():
                locations[f"results.{analyte}.{key}" if key else f"results.{analyte}"] = where
            used.append(UsedObservation(analyte, node.resource, path, node.reference, status))
            if status not in FINAL_STATUSES:
                non_final.append(f"{analyte}: {status or 'no status'}")
    if not results:
        if report is not None:
            unused.append(Unused(report.type, report.id, report.path, _no_result_reason(group)))
        return None
    cbc = _assemble(group, index, results, locations, used, non_final, in_scope)
    film = _film(group, unused, in_scope, cbc.locations)
    # Platelet clumps and the PLASMIC laboratory items (clinical-rules §8, §10 v2; adapters/fhir/context.py).
    clumps, context = read_observations(group.members, context_codes(rs), unused, in_scope, cbc.locations)
    film.update(clumps)
    if film:
        cbc.document["film"] = film
    if context:
        cbc.document["context"] = context
    if lab_flags:
        cbc.document[LABORATORY_FLAGS] = lab_flags  # clinical-rules §3 v2
    return cbc


def _film(group: Group, unused: list[Unused], in_scope: set[int], locations: dict[str, str]) -> dict[str, Any]:
    """The blood film of a report or panel (clinical-rules §10 v2): a schistocyte Observation (LOINC
    800-3, see adapters/film_words.py) graded in words (valueCodeableConcept or valueString: occasional,
    1+, few -> present; 2+ and above, many, numerous -> many) or as a percentage (valueQuantity in %)."""
    film: dict[str, Any] = {}
    for node in group.members:
        resource = node.resource
        if not SCHISTOCYTE_LOINC.intersection(loinc_codes(resource.get("code"))):
            continue
        in_scope.add(id(node))
        if "schistocytes" in film or "schistocytes_percent" in film:
            unused.append(Unused(node.type, node.id, node.path, "schistocytes: a second result in this CBC"))
            continue
        if status_of(resource, node.path) in WITHDRAWN_STATUSES:
            unused.append(Unused(node.type, node.id, node.path, "schistocytes: the result is withdrawn"))
            continue
        quantity = resource.get("valueQuantity")
        if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
            unit = quantity.get("code") or quantity.get("unit")
            if unit == "%" and 0 <= quantity["value"] <= 100:
                film["schistocytes_percent"] = float(quantity["value"])
                locations["film.schistocytes_percent"] = f"{node.path}.valueQuantity"
            else:
                unused.append(Unused(node.type, node.id, node.path, f"schistocytes: a quantity in {unit!r}, not %"))
            continue
        words = [resource.get("valueString")]
        concept = resource.get("valueCodeableConcept")
        if isinstance(concept, dict):
            words.append(concept.get("text"))
            words += [c.get("display") for c in concept.get("coding") or [] if isinstance(c, dict)]
            words += [c.get("code") for c in concept.get("coding") or [] if isinstance(c, dict)]
        grades = [grade for word in words if isinstance(word, str) and (grade := schistocyte_grade(word))]
        if grades:
            film["schistocytes"] = grades[0]
            locations["film.schistocytes"] = node.path
        else:
            shown = next((w for w in words if isinstance(w, str)), None)
            unused.append(
                Unused(node.type, node.id, node.path, f"schistocytes: {shown!r} is not a grade ({grade_words()})")
            )
    return film


def _is_cbc_panel(panel: Node, group: Group, rs: Ruleset) -> bool:
    """A panel that is part of the CBC (coded as one, or holding CBC results), not a chemistry panel beside it."""
    return is_cbc_panel(panel.resource.get("code")) or any(
        coded_parts(node.resource, node.path, rs) for node in group.direct.get(id(panel), [])
    )


def _no_result_reason(group: Group) -> str:
    if group.problems and not group.members:
        return "no usable CBC result: none of its references resolve to an Observation in the input"
    return "no usable CBC result (the entries listed for its Observations say why)"


def _assemble(
    group: Group,
    index: ResourceIndex,
    results: dict[str, Any],
    locations: dict[str, str],
    used: list[UsedObservation],
    non_final: list[str],
    in_scope: set[int],
) -> FhirCbc:
    report = group.report
    first = next(node for node in group.members if node.resource is used[0].resource)
    anchor = report or first
    locations[""] = anchor.path
    document: dict[str, Any] = {"results": results}
    collected, collected_path = _collection_time(group, first)
    if collected is not None:
        document["collected_at"] = collected
        locations["collected_at"] = collected_path
    subject_owner = report if report is not None and "subject" in report.resource else first
    context = patient_context(
        subject_owner.resource.get("subject"), f"{subject_owner.path}.subject", subject_owner, index
    )
    if context.node is not None:
        in_scope.add(id(context.node))
    patient = _patient_fields(context, collected is not None)
    if patient:
        document["patient"] = patient
        locations.update(
            {
                key: where
                for key, where in context.locations.items()
                if key == "patient" or key.split(".", 1)[1] in patient
            }
        )
    if report is not None:
        status = report.resource.get("status")
        final = FINAL_REPORT_STATUSES if report.type == "DiagnosticReport" else FINAL_STATUSES
        if status not in final:
            non_final.insert(0, f"{_kind(report)}: {status or 'no status'}")
    return FhirCbc(
        document=document,
        locations=locations,
        observations=used,
        report=report.resource if report is not None else None,
        report_path=report.path if report is not None else None,
        patient=context.node.resource if context.node is not None else None,
        subject=context.subject,
        non_final=non_final,
        report_reference=report.where() if report is not None else None,
    )


def _kind(node: Node) -> str:
    return "report" if node.type == "DiagnosticReport" else "panel"


def _patient_fields(context: PatientContext, has_time: bool) -> dict[str, Any]:
    fields = dict(context.fields)
    if not has_time:
        fields.pop("birth_date", None)  # no collection time: no age; adult ranges, and the answer says so
    return fields


def _collection_time(group: Group, first: Node) -> tuple[str | None, str]:
    """The report's effective time, else a panel's, else the first used Observation's."""
    for node in (group.report, *group.panels, first, *group.members):
        if node is None:
            continue
        resource = node.resource
        for key, path in (("effectiveDateTime", ".effectiveDateTime"), ("effectiveInstant", ".effectiveInstant")):
            if resource.get(key) is not None:
                return _time(resource[key], f"{node.path}{path}")
        period = resource.get("effectivePeriod")
        if isinstance(period, dict) and period.get("start") is not None:
            return _time(period["start"], f"{node.path}.effectivePeriod.start")
    return None, ""


def _time(value: Any, path: str) -> tuple[str | None, str]:
    if not isinstance(value, str):
        raise InputError({path: ["A dateTime must be a string."]})
    if DATE_ONLY.match(value):
        return None, path  # a day (or month, year) is not a collection time
    return value, path
