"""The Patient and the CBC Observations for one call: from prefetch, else from the FHIR server.

Per prefetch key (CDS Hooks 2.0, "Prefetch Template"):

- a FHIR resource: used as sent (the Patient read; the Observation searchset Bundle);
- `null`: the client has no data for it ("If the CDS Client has no data to populate a template
  prefetch key, the prefetch template key MUST have a value of null"): no Patient, or no CBC;
- absent (or an OperationOutcome, which some clients send when their own prefetch failed): not
  satisfied, so the service reads it from `fhirServer` with the `fhirAuthorization` token, if that
  server is on the calling client's allowlist (fhir_client.py says how the fetch is guarded).

When a key is not satisfied and there is no FHIR server, or the server cannot give it, the call
cannot be answered. The specification says so in "Prefetch Template": "If the CDS Service is
unable to obtain required data because it cannot access the FHIR server and the request did not
contain the necessary prefetch keys, the service SHALL respond with an HTTP 412 Precondition Failed
status code." That is `PreconditionFailed` here (the view answers 412). Whatever stopped the fetch (not
allowlisted, a refused address, a closed port, no DNS answer, a redirect, a timeout, an HTTP error), the
call is told the same `GENERIC_FAILURE` under `fhirServer`; the reason goes to the log.

Prefetched data for another patient than `context.patientId` is refused (400): reviewing the wrong
patient's counts is the one mistake a CDS card must never make.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from labservice.adapters.cdshooks.fhir_client import GENERIC_FAILURE, FhirAccess, FhirFetchError
from labservice.adapters.cdshooks.request import BadHookRequest, HookRequest
from labservice.adapters.cdshooks.service import MEDICATION_KEYS, OBSERVATIONS_KEY, PATIENT_KEY, PATIENT_TOKEN

#: A literal reference to a Patient, relative or absolute: "Patient/123", "https://x/fhir/Patient/123".
PATIENT_REFERENCE = re.compile(r"(?:^|/)Patient/([^/]+?)(?:/_history/[^/]+)?$")
MISSING = object()


class PreconditionFailed(Exception):
    """Required FHIR data is neither prefetched nor obtainable from the FHIR server (HTTP 412)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        path, messages = next(iter(errors.items()))
        super().__init__(f"{path}: {messages[0]}")


@dataclass
class Entry:
    """One resource of the Observation search result, and where it was in the call."""

    resource: dict[str, Any]
    full_url: str | None
    origin: str  # e.g. "prefetch.cbcObservations.entry[3].resource"


@dataclass
class Gathered:
    patient: dict[str, Any] | None = None
    patient_origin: str = f"prefetch.{PATIENT_KEY}"
    entries: list[Entry] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)  # prefetch keys read from the FHIR server


def gather(request: HookRequest, templates: dict[str, str], *, access: FhirAccess) -> Gathered:
    """Everything the review needs; raise BadHookRequest (400) or PreconditionFailed (412)."""
    out = Gathered()
    unmet: dict[str, list[str]] = {}
    resources: dict[str, Any] = {}
    client = access.client(request.fhir_server, request.access_token) if request.fhir_server else None
    for key in (PATIENT_KEY, OBSERVATIONS_KEY, *(k for k in MEDICATION_KEYS if k in templates)):
        optional = key in MEDICATION_KEYS  # the card is given without them (read without that context)
        value = MISSING if request.prefetch is None else request.prefetch.get(key, MISSING)
        if value is not MISSING and not _is_operation_outcome(value):
            resources[key] = value
            continue
        if client is None and optional:
            continue
        if client is None:
            unmet[f"prefetch.{key}"] = [
                "Not prefetched, and the request has no fhirServer to read it from "
                "(GET /cds-services gives the template)."
            ]
            continue
        relative = templates[key].replace(PATIENT_TOKEN, request.patient_id)
        try:
            resources[key] = client.get(relative)
        except FhirFetchError:
            if not optional:
                unmet["fhirServer"] = [GENERIC_FAILURE]  # one answer for every cause: no port scanner
            continue
        out.fetched.append(key)
    takers = {
        PATIENT_KEY: _take_patient,
        OBSERVATIONS_KEY: _take_observations,
        **{key: _taker(key) for key in MEDICATION_KEYS},
    }
    for fetched in (False, True):  # what the client sent is checked first: a bad request is 400, not 412
        for key, value in resources.items():
            if (key in out.fetched) == fetched:
                takers[key](out, value, request, fetched=fetched)
        if unmet:
            raise PreconditionFailed(unmet)
    return out


def _is_operation_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def _origin(key: str, fetched: bool) -> str:
    return f"{key} (read from fhirServer)" if fetched else f"prefetch.{key}"


def _refuse(fetched: bool, errors: dict[str, list[str]]) -> Exception:
    """Bad data from the client's prefetch is a bad request; from its FHIR server, unusable data."""
    return PreconditionFailed(errors) if fetched else BadHookRequest(errors)


def _take_patient(out: Gathered, value: Any, request: HookRequest, *, fetched: bool) -> None:
    where = _origin(PATIENT_KEY, fetched)
    out.patient_origin = where
    if value is None:
        return  # the client has no Patient: no sex or age, which the answer will say
    if not isinstance(value, dict) or value.get("resourceType") != "Patient":
        kind = value.get("resourceType") if isinstance(value, dict) else type(value).__name__
        raise _refuse(
            fetched, {where: [f"Expected a Patient resource (template Patient/{PATIENT_TOKEN}), not {kind}."]}
        )
    ident = value.get("id")
    if ident is not None and ident != request.patient_id:
        raise _refuse(
            fetched,
            {
                f"{where}.id": [
                    f"Patient/{ident} is not the patient in context (context.patientId {request.patient_id})."
                ]
            },
        )
    out.patient = value


def _taker(key: str):
    """Reads a searchset Bundle of medication records (clinical-rules §11, §12 v2) like the Observations."""

    def take(out: Gathered, value: Any, request: HookRequest, *, fetched: bool) -> None:
        _take_observations(out, value, request, fetched=fetched, key=key, kind="medication records")

    return take


def _take_observations(
    out: Gathered,
    value: Any,
    request: HookRequest,
    *,
    fetched: bool,
    key: str = OBSERVATIONS_KEY,
    kind: str = "Observations",
) -> None:
    where = _origin(key, fetched)
    if value is None:
        return  # the client has no such resources for this patient
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
        sent = value.get("resourceType") if isinstance(value, dict) else type(value).__name__
        raise _refuse(fetched, {where: [f"Expected a searchset Bundle of {kind}, not {sent}."]})
    entries = value.get("entry")
    entries = [] if entries is None else entries
    if not isinstance(entries, list):
        raise _refuse(fetched, {f"{where}.entry": ["entry must be a list."]})
    for j, entry in enumerate(entries):
        path = f"{where}.entry[{j}]"
        if not isinstance(entry, dict):
            raise _refuse(fetched, {path: ["A Bundle entry must be a JSON object."]})
        resource = entry.get("resource")
        if resource is None or _is_operation_outcome(resource):
            continue  # a search entry without a resource, or the server's own warnings
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise _refuse(fetched, {f"{path}.resource": ["A FHIR resource must be an object with a resourceType."]})
        other = _other_patient(resource, request.patient_id)
        if other is not None:
            raise _refuse(
                fetched,
                {
                    f"{path}.resource.subject": [
                        f"Patient/{other} is not the patient in context (context.patientId {request.patient_id})."
                    ]
                },
            )
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        out.entries.append(Entry(resource, full_url, f"{path}.resource"))


def _other_patient(resource: dict[str, Any], patient_id: str) -> str | None:
    """The id of another patient the resource's subject names literally, if it does."""
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str):
        return None
    match = PATIENT_REFERENCE.search(reference)
    if match is None or match.group(1) == patient_id:
        return None
    return match.group(1)
