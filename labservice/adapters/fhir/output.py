"""Our interpretation answers as one FHIR R4 Bundle (type `collection`).

Per CBC: copies of the input Observations annotated with our `interpretation` and the
`referenceRange` the service used (ids and fullUrls kept, so a client can match them); a
DiagnosticReport (the input's copy, or a new CBC panel report) whose `conclusion` is our summary
and whose `conclusionCode` holds the verified SNOMED CT codes of the findings; the urgency as a
`Flag`. One `OperationOutcome` lists what the reader could not use and the results that are not
final. Input resources are never modified. Ids are derived from the interpretation id, so the same
answer gives the same Bundle; every reference written here to a resource of the Bundle uses that
entry's fullUrl.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from labservice.adapters.fhir.model import FhirCbc, FhirRead, UsedObservation
from labservice.adapters.fhir.terminology import (
    CBC_PANEL,
    FLAG_CATEGORY_LAB,
    FLAG_DETAIL_EXTENSION,
    FLAG_PRIORITY_DISPLAY,
    FLAG_PRIORITY_EXTENSION,
    FLAG_PRIORITY_SYSTEM,
    HEMATOLOGY,
    INTERPRETATION_DISPLAY,
    INTERPRETATION_SYSTEM,
    URGENCY_DISPLAY,
    URGENCY_PRIORITY,
    URGENCY_SYSTEM,
    conclusion_codes,
)
from labservice.core.render import urgency_text
from labservice.core.ruleset import Ruleset
from labservice.core.units import UnitError, conversion_factor

#: Namespace of the name-based (v5) UUIDs of this Bundle's entries.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:labservice:fhir:bundle")
INTERPRETATION_IDENTIFIER = "urn:labservice:interpretation"
UCUM = "http://unitsofmeasure.org"
FINAL_STATUSES = ("final", "amended", "corrected")
NOT_A_DIAGNOSIS = "It describes the counts; it is not a diagnosis."


def to_bundle(read: FhirRead, answers: list[dict], ruleset: Ruleset) -> dict:
    """The FHIR answer: `answers[i]` is our interpretation of `read.cbcs[i]`."""
    if len(answers) != len(read.cbcs):
        raise ValueError(f"{len(answers)} answers for {len(read.cbcs)} CBCs")
    entries: list[dict] = []
    seen: set[str] = set()
    for cbc, answer in zip(read.cbcs, answers, strict=True):
        for entry in _cbc_entries(cbc, answer, ruleset):
            if entry["fullUrl"] not in seen:  # a resource shared by two CBCs (the Patient) appears once
                seen.add(entry["fullUrl"])
                entries.append(entry)
    bundle_key = "|".join(str(answer.get("id")) for answer in answers)
    outcome = _operation_outcome(read, bundle_key)
    if outcome is not None:
        entries.append(outcome)
    for entry in entries:
        _unlink_outside(entry["resource"], seen)
    return {"resourceType": "Bundle", "id": _uid(bundle_key, "bundle"), "type": "collection", "entry": entries}


def _unlink_outside(node: Any, full_urls: set[str]) -> None:
    """A copied `urn:` reference to a resource of the client's Bundle that this answer does not carry (an
    Encounter, a Specimen) cannot resolve here: it becomes a logical reference, identifier = the URN (RFC 3986)."""
    if isinstance(node, dict):
        reference = node.get("reference")
        if isinstance(reference, str) and reference.startswith("urn:") and reference not in full_urls:
            del node["reference"]
            node.setdefault("identifier", {"system": "urn:ietf:rfc:3986", "value": reference})
        for value in node.values():
            _unlink_outside(value, full_urls)
    elif isinstance(node, list):
        for value in node:
            _unlink_outside(value, full_urls)


def _uid(key: str, role: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{key}/{role}"))


def _entry(full_url: str, resource: dict) -> dict:
    return {"fullUrl": full_url, "resource": resource}


def _is_absolute(reference: str | None) -> bool:
    return reference is not None and reference.split(":", 1)[0] in ("urn", "http", "https")


def _cbc_entries(cbc: FhirCbc, answer: dict, ruleset: Ruleset) -> list[dict]:
    key = str(answer["id"])
    observations = [_observation_entry(used, answer, key, ruleset) for used in cbc.observations]
    by_analyte = {used.analyte: entry["fullUrl"] for used, entry in zip(cbc.observations, observations, strict=True)}
    subject = _subject(cbc)
    report = _report_entry(cbc, answer, key, observations, subject, ruleset)
    flag = _flag_entry(cbc, answer, key, subject, report["fullUrl"], by_analyte, ruleset)
    out = [report, *observations, flag]
    if cbc.patient is not None and _is_absolute(cbc.subject):
        # The subject points into the client's Bundle (urn:uuid): bring the Patient so it resolves here.
        out.append(_entry(str(cbc.subject), copy.deepcopy(cbc.patient)))
    return out


def _subject(cbc: FhirCbc) -> dict:
    if cbc.subject:
        return {"reference": cbc.subject}
    return {"display": "patient not identified in the input"}


# --- Observations ---------------------------------------------------------------------------


def _observation_entry(used: UsedObservation, answer: dict, key: str, ruleset: Ruleset) -> dict:
    resource = _annotated_copy(used.resource)
    result = answer.get("analytes", {}).get(used.analyte)
    if result is not None and result.get("flag"):
        resource["interpretation"] = [_interpretation(result["flag"])]
    if result is not None and result.get("reference_range"):
        reference_range = _reference_range(result, resource.get("valueQuantity") or {}, used.analyte, ruleset)
        if reference_range is not None:
            resource["referenceRange"] = [reference_range]
    if _is_absolute(used.reference):
        full_url = str(used.reference)
    else:
        full_url = "urn:uuid:" + _uid(key, f"observation/{used.reference or used.path}")
    return _entry(full_url, resource)


def _annotated_copy(resource: dict) -> dict:
    """A copy to annotate. Its narrative describes the resource as sent, so it goes (the client keeps the original)."""
    out = copy.deepcopy(resource)
    out.pop("text", None)
    return out


def _interpretation(flag: str) -> dict:
    return {
        "coding": [{"system": INTERPRETATION_SYSTEM, "code": flag, "display": INTERPRETATION_DISPLAY[flag]}],
        "text": f"{INTERPRETATION_DISPLAY[flag]} (labservice)",
    }


def _reference_range(result: dict, quantity: dict, analyte: str, ruleset: Ruleset) -> dict | None:
    """The range the service used, in the Observation's own unit when it converts, else canonical."""
    used = result["reference_range"]
    if used.get("low") is None and used.get("high") is None:
        return None
    unit = quantity.get("code") or quantity.get("unit")
    try:
        factor = conversion_factor(ruleset, analyte, unit) if unit else None
    except UnitError:
        factor = None
    out: dict[str, Any] = {}
    for bound in ("low", "high"):
        if used.get(bound) is None:
            continue
        if factor:
            out[bound] = {k: v for k, v in quantity.items() if k in ("unit", "system", "code")}
            out[bound]["value"] = _number(used[bound] / factor)
        else:
            out[bound] = {"value": _number(used[bound]), "unit": result["unit"], "system": UCUM, "code": result["unit"]}
    origin = used.get("origin")
    where = f" ({origin})" if origin else ""
    out["text"] = f"Range used by labservice{where}: {used.get('source') or 'source not stated'}"
    return out


def _number(value: float) -> float | int:
    rounded = round(float(value), 6)
    return int(rounded) if rounded.is_integer() else rounded


# --- DiagnosticReport -----------------------------------------------------------------------


def _report_entry(
    cbc: FhirCbc, answer: dict, key: str, observations: list[dict], subject: dict, ruleset: Ruleset
) -> dict:
    source = cbc.report if (cbc.report or {}).get("resourceType") == "DiagnosticReport" else None
    statuses = [used.status for used in cbc.observations]
    if source is not None:
        report = _annotated_copy(source)
        report.setdefault("status", "unknown")
    else:
        final = not cbc.non_final and all(status in FINAL_STATUSES for status in statuses)
        report = {
            "resourceType": "DiagnosticReport",
            "id": _uid(key, "report"),
            "status": "final" if final else "preliminary",
            "category": [{"coding": [dict(HEMATOLOGY)]}],
            "code": {"coding": [dict(CBC_PANEL)], "text": "Complete blood count"},
        }
    report.setdefault("subject", subject)
    collected = cbc.document.get("collected_at")
    if collected and not any(name.startswith("effective") for name in report):
        report["effectiveDateTime"] = collected
    report["result"] = [_result_reference(entry) for entry in observations]
    ours = _conclusion(answer)
    report["conclusion"] = f"{source['conclusion']}\n\n{ours}" if source and source.get("conclusion") else ours
    codes = conclusion_codes(answer.get("findings", []), ruleset)
    if codes or report.get("conclusionCode"):
        report["conclusionCode"] = [*report.get("conclusionCode", []), *codes]
    reference = cbc.report_reference if source is not None else None
    full_url = str(reference) if _is_absolute(reference) else "urn:uuid:" + _uid(key, "report")
    return _entry(full_url, report)


def _result_reference(entry: dict) -> dict:
    code = entry["resource"].get("code") or {}
    display = code.get("text") or next((c.get("display") for c in code.get("coding", []) if c.get("display")), None)
    out = {"reference": entry["fullUrl"]}
    if display:
        out["display"] = display
    return out


def _conclusion(answer: dict) -> str:
    head = (
        f"labservice, automated description of the blood counts, not a diagnosis (ruleset "
        f"{answer.get('ruleset_version')}, CTCAE v{answer.get('ctcae_version')}):"
    )
    parts = [head, answer.get("summary", "").strip()]
    not_assessed = answer.get("not_assessed") or []
    if not_assessed:
        parts.append(
            "Not assessed: "
            + "; ".join(f"{item['code'].replace('_', ' ')} ({item['reason']})" for item in not_assessed)
            + "."
        )
    if "not a diagnosis" not in parts[1]:
        parts.append(NOT_A_DIAGNOSIS)
    return " ".join(part for part in parts if part)


# --- Flag (urgency) -------------------------------------------------------------------------


def _flag_entry(
    cbc: FhirCbc,
    answer: dict,
    key: str,
    subject: dict,
    report_url: str,
    observation_urls: dict[str, str],
    ruleset: Ruleset,
) -> dict:
    urgency = answer["urgency"]
    reasons = answer.get("urgency_reasons") or []
    texts, analytes = _reasons(answer, reasons, ruleset)
    priority = URGENCY_PRIORITY[urgency]
    extension = [
        {
            "url": FLAG_PRIORITY_EXTENSION,
            "valueCodeableConcept": {
                "coding": [
                    {"system": FLAG_PRIORITY_SYSTEM, "code": priority, "display": FLAG_PRIORITY_DISPLAY[priority]}
                ]
            },
        },
        {"url": FLAG_DETAIL_EXTENSION, "valueReference": {"reference": report_url, "display": "CBC report"}},
    ]
    for analyte in analytes:
        if analyte in observation_urls:
            extension.append(
                {
                    "url": FLAG_DETAIL_EXTENSION,
                    "valueReference": {"reference": observation_urls[analyte], "display": analyte},
                }
            )
    because = f" Because of: {'; '.join(texts)}." if texts else " No finding raises it."
    flag: dict[str, Any] = {
        "resourceType": "Flag",
        "id": _uid(key, "flag"),
        "extension": extension,
        "identifier": [{"system": INTERPRETATION_IDENTIFIER, "value": key}],
        "status": "active",
        "category": [{"coding": [dict(FLAG_CATEGORY_LAB)]}],
        "code": {
            "coding": [{"system": URGENCY_SYSTEM, "code": urgency, "display": URGENCY_DISPLAY[urgency]}],
            "text": f"CBC urgency {urgency_text(urgency, answer.get('urgency_reasons'), ruleset)}.{because} "
            f"{NOT_A_DIAGNOSIS}",
        },
        "subject": subject,
    }
    collected = cbc.document.get("collected_at")
    if collected:
        flag["period"] = {"start": collected}
    return _entry("urn:uuid:" + flag["id"], flag)


def _reasons(answer: dict, reasons: list[str], ruleset: Ruleset) -> tuple[list[str], list[str]]:
    """Readable reasons, and the analytes behind them (in order, once each).

    A reason whose finding is in the answer reads as its title and points at its evidence; any
    other reads as the `reason_text` of its row in findings.csv and points at the row's analytes
    (the aplastic reason at the criteria met).
    """
    findings = {finding["code"]: finding for finding in answer.get("findings", [])}
    texts: list[str] = []
    analytes: list[str] = []
    for reason in reasons:
        spec = ruleset.reason(reason)
        code = spec.code if spec else reason  # new_critical_value is the reason of critical_value
        if code in findings:
            finding = findings[code]
            texts.append(finding.get("title") or reason.replace("_", " "))
            names = list((finding.get("evidence") or {}).keys())
        else:
            texts.append(ruleset.text(spec.reason_text) if spec and spec.reason_text else reason.replace("_", " "))
            names = list(spec.analytes) if spec else []
            if spec and spec.family == "aplastic":
                names = list((answer.get("aplastic_anemia") or {}).get("criteria_met") or [])
        # Evidence may hold more than analytes (critical_value's `known`, the 4Ts block's baseline...).
        analytes.extend(name for name in names if name not in analytes and name in ruleset.analytes)
    return texts, analytes


# --- OperationOutcome -----------------------------------------------------------------------


def _operation_outcome(read: FhirRead, bundle_key: str) -> dict | None:
    issues = []
    for unused in read.unused:
        name = f"{unused.resource_type}/{unused.id}" if unused.id else unused.resource_type
        issues.append(
            {
                "severity": "warning",
                "code": "informational",
                "details": {"text": f"{name} was not used: {unused.reason}"},
                "diagnostics": unused.reason,
                "expression": [unused.path],
            }
        )
    for cbc in read.cbcs:
        paths = {used.analyte: used.path for used in cbc.observations}
        if cbc.report_path:
            paths["report"] = cbc.report_path  # the reader labels a non-final report "report: <status>"
        for label in cbc.non_final:
            analyte = label.split(":", 1)[0].strip()
            issue: dict[str, Any] = {
                "severity": "warning",
                "code": "informational",
                "details": {"text": f"Result not final ({label}); interpreted as sent."},
            }
            if analyte in paths:
                issue["expression"] = [paths[analyte]]
            issues.append(issue)
    if not issues:
        return None
    outcome_id = _uid(bundle_key, "outcome")
    return _entry("urn:uuid:" + outcome_id, {"resourceType": "OperationOutcome", "id": outcome_id, "issue": issues})
