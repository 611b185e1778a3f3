"""FhirRead objects built by hand from the fixture files, for the FHIR output tests.

Built without the reader (`labservice.adapters.fhir.reader`), so these tests stand on their own:
the LOINC codes are those of clinical-rules.md section 1, and every value, unit and range is copied
from the fixture resource as sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labservice.adapters.cbc_schema import load_read_documents
from labservice.adapters.fhir.model import FhirCbc, FhirRead, UsedObservation
from labservice.core.ruleset import default_ruleset
from labservice.services.interpret import interpret_documents
from tests.shared_data import FIXTURES

#: clinical-rules.md section 1: the LOINC codes to accept, by analyte.
LOINC_ANALYTES = {
    "777-3": "platelets",
    "26515-7": "platelets",
    "6690-2": "wbc",
    "26464-8": "wbc",
    "804-5": "wbc",
    "718-7": "hemoglobin",
    "20509-6": "hemoglobin",
    "4544-3": "hematocrit",
    "20570-8": "hematocrit",
    "789-8": "rbc",
    "26453-1": "rbc",
    "787-2": "mcv",
    "30428-7": "mcv",
    "785-6": "mch",
    "786-4": "mchc",
    "788-0": "rdw",
    "21000-5": "rdw",
    "751-8": "neutrophils",
    "26499-4": "neutrophils",
    "731-0": "lymphocytes",
    "26474-7": "lymphocytes",
    "60474-4": "reticulocytes",
    "14196-0": "reticulocytes",
    "17849-1": "reticulocytes_percent",
    "4679-7": "reticulocytes_percent",
    "31112-6": "reticulocytes_percent",
}
SPEC = FIXTURES / "fhir-r4-spec-examples"
US_CORE = FIXTURES / "us-core-cbc"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def loinc(resource: dict) -> str | None:
    for coding in (resource.get("code") or {}).get("coding", []):
        if coding.get("system") == "http://loinc.org":
            return coding.get("code")
    return None


def result_of(resource: dict) -> dict[str, Any]:
    """Our JSON result for one Observation: value, unit (UCUM code, else the printed unit), range."""
    quantity = resource["valueQuantity"]
    out: dict[str, Any] = {"value": quantity["value"], "unit": quantity.get("code") or quantity.get("unit")}
    for reference_range in resource.get("referenceRange", []):
        low, high = reference_range.get("low"), reference_range.get("high")
        if low and high:
            out["reference_range"] = {"low": low["value"], "high": high["value"]}
    return out


def cbc_from(
    observations: list[tuple[dict, str, str | None]],
    *,
    report: dict | None = None,
    report_path: str | None = None,
    subject: str | None = None,
    patient: dict | None = None,
    context: dict | None = None,
    collected_at: str | None = None,
) -> FhirCbc:
    """A FhirCbc from (Observation, path, reference) triples: one result per CBC analyte."""
    used, results = [], {}
    for resource, path, reference in observations:
        analyte = LOINC_ANALYTES.get(loinc(resource) or "")
        if analyte is None or "valueQuantity" not in resource or analyte in results:
            continue
        results[analyte] = result_of(resource)
        used.append(UsedObservation(analyte, resource, path, reference, resource.get("status")))
    document: dict[str, Any] = {"results": results}
    if context:
        document["patient"] = context
    if collected_at:
        document["collected_at"] = collected_at
    non_final = [f"{u.analyte}: {u.status}" for u in used if u.status not in ("final", "amended", "corrected")]
    return FhirCbc(
        document=document,
        locations={},
        observations=used,
        report=report,
        report_path=report_path,
        patient=patient,
        subject=subject,
        non_final=non_final,
    )


def spec_example_read() -> tuple[FhirRead, dict]:
    """diagnosticreport-example.json: Bundle 101, DiagnosticReport entry[0] and Observations r1..r17."""
    bundle = load(SPEC / "diagnosticreport-example.json")
    entries = bundle["entry"]
    report = entries[0]["resource"]
    observations = [
        (e["resource"], f"Bundle.entry[{i}].resource", e["fullUrl"])
        for i, e in enumerate(entries)
        if e["resource"]["resourceType"] == "Observation"
    ]
    cbc = cbc_from(
        observations,
        report=report,
        report_path="Bundle.entry[0].resource",
        subject=report["subject"]["reference"],
        collected_at=report["effectiveDateTime"],
    )
    others = [
        e["resource"]
        for e in entries
        if e["resource"]["resourceType"] == "Observation" and LOINC_ANALYTES.get(loinc(e["resource"]) or "") is None
    ]
    return FhirRead(cbcs=[cbc], unused=[], ignored={"Observation": len(others)}), bundle


def interpret(read: FhirRead) -> list[dict]:
    """Our answers for the read's CBCs, as the JSON endpoint computes them (not stored)."""
    docs = load_read_documents([cbc.document for cbc in read.cbcs])
    return interpret_documents(docs, default_ruleset(), indexed=True)
