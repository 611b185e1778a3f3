"""Small FHIR R4 resources for reader tests, and FHIR bundles built from MIMIC-III LABEVENTS rows.

Codes and units are written the way the fixtures write them (LOINC system, UCUM system and code).
"""

from __future__ import annotations

import csv
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
MR_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


def concept(code: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code}]}


def quantity(value: Any, unit: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"value": value}
    if unit is not None:
        out.update(unit=unit, system=UCUM, code=unit)
    return out


def observation(ident: str, code: str, value: Any = None, unit: str | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": ident, "status": "final", "code": concept(code)}
    if value is not None:
        resource["valueQuantity"] = quantity(value, unit)
    resource.update(extra)
    return resource


def patient(
    ident: str, *, mrn: str | None = None, gender: str | None = None, birth: str | None = None, **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": ident}
    if mrn:
        resource["identifier"] = [
            {"system": "urn:example:other", "value": f"other-{ident}"},
            {"type": MR_TYPE, "system": "urn:example:mrn", "value": mrn},
        ]
    if gender:
        resource["gender"] = gender
    if birth:
        resource["birthDate"] = birth
    resource.update(extra)
    return resource


def report(ident: str, results: list[str], code: str = "58410-2", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": ident,
        "status": "final",
        "code": concept(code),
        "result": [{"reference": r} for r in results],
    }
    resource.update(extra)
    return resource


def bundle(*resources: dict[str, Any], kind: str = "collection", urls: list[str] | None = None) -> dict[str, Any]:
    """A Bundle whose entries have fullUrls `urls` (default: the RESTful `Type/id` form on example.org)."""
    entries = []
    for i, resource in enumerate(resources):
        url = urls[i] if urls else f"http://example.org/fhir/{resource['resourceType']}/{resource.get('id')}"
        entries.append({"fullUrl": url, "resource": resource})
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


# --- MIMIC-III demo LABEVENTS as FHIR -------------------------------------------------------------

#: ITEMID -> (LOINC code as D_LABITEMS.csv gives it, the analyte it means). Platelets 51265, WBC 51301,
#: haemoglobin 51222 (fixtures README, mimic-iii-demo).
MIMIC_ITEMS = {"51265": "777-3", "51301": "804-5", "51222": "718-7"}


def mimic_cbcs(labevents: Path) -> dict[tuple[str, str], dict[str, tuple[str, str]]]:
    """(HADM_ID, CHARTTIME) -> {ITEMID: (VALUE, VALUEUOM)} for the CBC items, rows as written in the file."""
    out: dict[tuple[str, str], dict[str, tuple[str, str]]] = defaultdict(dict)
    with labevents.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["ITEMID"] in MIMIC_ITEMS:
                out[(row["HADM_ID"], row["CHARTTIME"])][row["ITEMID"]] = (row["VALUE"], row["VALUEUOM"])
    return dict(out)


def mimic_value(text: str) -> dict[str, Any] | None:
    """A valueQuantity's value part: a number, `<5` as a comparator, None for text such as UNABLE TO REPORT."""
    text = text.strip()
    comparator = next((c for c in ("<=", ">=", "<", ">") if text.startswith(c)), None)
    number = text[len(comparator) :] if comparator else text
    try:
        value = float(number)
    except ValueError:
        return None
    return {"value": value, "comparator": comparator} if comparator else {"value": value}


def mimic_transaction(groups: list[tuple[tuple[str, str], dict[str, tuple[str, str]]]]) -> dict[str, Any]:
    """One transaction Bundle: per (HADM_ID, CHARTTIME) a CBC DiagnosticReport and its Observations.

    The subject is `Patient/mimic-<HADM_ID>` (SUBJECT_ID was dropped from this copy of the table; the
    admission stands in for the patient). MIMIC-III times carry no offset; they are written as UTC.
    Units are the VALUEUOM text (K/uL, g/dL), which is not UCUM, so no `system` is given.
    """
    entries = []
    for (hadm, charttime), items in groups:
        subject = {"reference": f"Patient/mimic-{hadm or 'outpatient'}"}
        when = charttime.replace(" ", "T") + "Z"
        results = []
        for itemid, (value, unit) in sorted(items.items()):
            parsed = mimic_value(value)
            url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'mimic/{hadm}/{charttime}/{itemid}')}"
            obs: dict[str, Any] = {
                "resourceType": "Observation",
                "id": url.rsplit(":", 1)[1],
                "status": "final",
                "code": concept(MIMIC_ITEMS[itemid]),
                "subject": subject,
                "effectiveDateTime": when,
            }
            if parsed is None:
                obs["valueString"] = value
            else:
                obs["valueQuantity"] = {**parsed, "unit": unit}
            entries.append({"fullUrl": url, "resource": obs, "request": {"method": "POST", "url": "Observation"}})
            results.append({"reference": url})
        report_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'mimic/{hadm}/{charttime}')}"
        entries.append(
            {
                "fullUrl": report_url,
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "id": report_url.rsplit(":", 1)[1],
                    "status": "final",
                    "code": concept("58410-2"),
                    "subject": subject,
                    "effectiveDateTime": when,
                    "result": results,
                },
                "request": {"method": "POST", "url": "DiagnosticReport"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
