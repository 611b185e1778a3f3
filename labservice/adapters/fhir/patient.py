"""The patient part of a CBC document from the FHIR subject: id, sex (`gender`) and birth date.

The subject Reference is resolved within the input (relative `Patient/x`, `urn:uuid:` fullUrl,
contained `#id`). The patient id is the Patient's MR-type identifier (HL7 v2 table 0203 "MR",
medical record number) when it has one, else its id, else the reference as written (or the
Reference's own identifier when it has no reference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from labservice.adapters.errors import InputError
from labservice.adapters.fhir.index import Node, ResourceIndex, reference_text

IDENTIFIER_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0203"
SEX_OF_GENDER = {"female": "female", "male": "male", "other": "unknown", "unknown": "unknown"}
FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class PatientContext:
    fields: dict[str, Any] = field(default_factory=dict)  # our document's `patient`
    locations: dict[str, str] = field(default_factory=dict)  # "patient.sex" -> FHIR path
    node: Node | None = None  # the Patient, when the input holds it
    subject: str | None = None  # the subject reference as written


def patient_context(subject: Any, subject_path: str, source: Node, index: ResourceIndex) -> PatientContext:
    context = PatientContext(subject=reference_text(subject))
    if subject is None:
        return context
    if not isinstance(subject, dict):
        raise InputError({subject_path: ["subject must be a Reference (a JSON object)."]})
    target = index.resolve(subject, source)
    if target is not None and target.type == "Patient":
        context.node = target
        _from_patient(target, context)
        context.locations.setdefault("patient", target.path)
        return context
    if target is None:
        pid = context.subject or _identifier_value(subject.get("identifier"))
        if pid and (context.subject is None or not context.subject.startswith("#")):
            context.fields["id"] = pid
            context.locations["patient.id"] = subject_path
    context.locations["patient"] = subject_path
    return context


def _from_patient(node: Node, context: PatientContext) -> None:
    resource, path = node.resource, node.path
    pid, where = _patient_id(resource, path)
    if pid is None and node.reference and not node.reference.startswith("#"):
        pid, where = node.reference, path
    if pid:
        context.fields["id"] = pid
        context.locations["patient.id"] = where
    gender = resource.get("gender")
    if gender is not None:
        if not isinstance(gender, str):
            raise InputError({f"{path}.gender": ["gender must be a code (a string)."]})
        context.fields["sex"] = SEX_OF_GENDER.get(gender, gender)  # anything else: the schema names it
        context.locations["patient.sex"] = f"{path}.gender"
    birth = resource.get("birthDate")
    if birth is not None:
        if not isinstance(birth, str):
            raise InputError({f"{path}.birthDate": ["birthDate must be a date (a string)."]})
        if FULL_DATE.match(birth):  # a year or year-month alone cannot give an age in days
            context.fields["birth_date"] = birth
            context.locations["patient.birth_date"] = f"{path}.birthDate"


def _patient_id(resource: dict[str, Any], path: str) -> tuple[str | None, str]:
    identifiers = resource.get("identifier")
    if isinstance(identifiers, list):
        for i, identifier in enumerate(identifiers):
            if _is_medical_record_number(identifier) and _identifier_value(identifier):
                return _identifier_value(identifier), f"{path}.identifier[{i}].value"
    ident = resource.get("id")
    if isinstance(ident, str) and ident:
        return ident, f"{path}.id"
    return None, path


def _is_medical_record_number(identifier: Any) -> bool:
    kind = identifier.get("type") if isinstance(identifier, dict) else None
    codings = kind.get("coding") if isinstance(kind, dict) else None
    return any(
        isinstance(c, dict) and c.get("code") == "MR" and c.get("system", IDENTIFIER_TYPES) == IDENTIFIER_TYPES
        for c in codings or []
    )


def _identifier_value(identifier: Any) -> str | None:
    value = identifier.get("value") if isinstance(identifier, dict) else None
    return value if isinstance(value, str) and value else None
