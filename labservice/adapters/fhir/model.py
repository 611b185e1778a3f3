"""What the FHIR R4 reader hands on: CBCs as our JSON documents, plus where each part came from.

The reader (`labservice.adapters.fhir.reader.read_fhir`) turns a Bundle, DiagnosticReport, panel
Observation or single Observation into `FhirRead`. Everything downstream (the engine, storing,
the FHIR answer, CDS Hooks cards) works from these types, never from the raw resource walk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class UsedObservation:
    """One Observation the CBC took a value from."""

    analyte: str  # our analyte key: platelets, wbc, hemoglobin, ...
    resource: dict[str, Any]  # the Observation as sent (not modified)
    path: str  # FHIRPath-like location in the input, e.g. "Bundle.entry[3].resource"
    reference: str | None  # how others refer to it: "Observation/f001" or the entry's fullUrl
    status: str | None  # Observation.status as sent (final, preliminary, amended, ...)


@dataclass(frozen=True)
class Unused:
    """A resource (or part of one) that looked CBC-related but could not be used, and why."""

    resource_type: str
    id: str | None
    path: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"resource_type": self.resource_type, "id": self.id, "path": self.path, "reason": self.reason}


@dataclass
class FhirCbc:
    """One CBC found in the input."""

    document: dict[str, Any]  # our JSON CBC document (api-contract vocabulary), ready to interpret
    locations: dict[str, str]  # document field path ("results.platelets") -> input location (for errors)
    observations: list[UsedObservation]
    report: dict[str, Any] | None = None  # the DiagnosticReport (or panel Observation) grouping it
    report_path: str | None = None
    patient: dict[str, Any] | None = None  # the Patient resource, when the input holds it
    subject: str | None = None  # the subject reference, e.g. "Patient/123" or "urn:uuid:..."
    non_final: list[str] = field(default_factory=list)  # e.g. "platelets: preliminary"
    #: how the input refers to `report`: "DiagnosticReport/x" or its urn:uuid fullUrl
    report_reference: str | None = None


@dataclass
class FhirRead:
    """Everything read from one FHIR input."""

    cbcs: list[FhirCbc]
    unused: list[Unused]  # CBC-looking resources that could not be used, with the reason
    ignored: dict[str, int]  # resources outside a CBC's scope, counted by resourceType
