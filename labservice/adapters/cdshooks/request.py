"""A CDS Hooks 2.0 service call, validated: `parse_hook_request(body, service) -> HookRequest`.

The fields and their optionality are those of the specification's "Calling a CDS Service" table
(hook, hookInstance, fhirServer, fhirAuthorization, context, prefetch) and of the `patient-view`
hook's context (userId, patientId, encounterId). Fields the service does not use (the token's
`expires_in`, `scope`, `subject`; `context.userId`) are type-checked when present but not required,
so a client that leaves them out is still served. A malformed call raises `BadHookRequest`
naming the field (the view answers 400).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from labservice.adapters.cdshooks.service import CdsService
from labservice.adapters.errors import InputError

#: FHIR R4 `id` datatype (§2.24.0.1): up to 64 letters, digits, '-' and '.'.
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
FETCH_SCHEMES = ("http", "https")


class BadHookRequest(InputError):
    """A CDS Hooks call that is malformed: the view answers 400 naming the field."""


@dataclass(frozen=True)
class HookRequest:
    """The parts of a CDS Hooks call this service uses."""

    hook: str
    hook_instance: str
    patient_id: str
    user_id: str | None = None
    encounter_id: str | None = None
    fhir_server: str | None = None
    access_token: str | None = None  # fhirAuthorization.access_token: a Bearer token
    prefetch: dict[str, Any] | None = None  # None: the client sent no prefetch at all
    extra_context: dict[str, Any] = field(default_factory=dict)


def parse_hook_request(body: Any, service: CdsService) -> HookRequest:
    """Validate a call to `service`; raise BadHookRequest with every problem found, by field."""
    errors: dict[str, list[str]] = {}
    if not isinstance(body, dict):
        raise BadHookRequest({"body": ["A CDS Hooks request must be a JSON object."]})
    hook = _string(body, "hook", errors, required=True)
    if hook is not None and hook != service.hook:
        errors.setdefault("hook", []).append(f"{service.id} answers the {service.hook} hook, not {hook!r}.")
    instance = _string(body, "hookInstance", errors, required=True)
    if instance is not None and not _is_uuid(instance):
        errors.setdefault("hookInstance", []).append("hookInstance must be a UUID.")
    server = _fhir_server(body, errors)
    token = _access_token(body, server, errors)
    context = body.get("context")
    patient_id = user_id = encounter_id = None
    if not isinstance(context, dict):
        errors["context"] = [
            "context is required: an object with patientId (and userId)."
            if context is None
            else "context must be a JSON object."
        ]
    else:
        patient_id = _string(context, "patientId", errors, required=True, prefix="context.")
        if patient_id is not None and not FHIR_ID.match(patient_id):
            errors.setdefault("context.patientId", []).append(
                "patientId must be a FHIR id: 1 to 64 letters, digits, '-' or '.'."
            )
        user_id = _string(context, "userId", errors, prefix="context.")
        encounter_id = _string(context, "encounterId", errors, prefix="context.")
        if encounter_id is not None and not FHIR_ID.match(encounter_id):
            errors.setdefault("context.encounterId", []).append(
                "encounterId must be a FHIR id: 1 to 64 letters, digits, '-' or '.'."
            )
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        errors["prefetch"] = ["prefetch must be a JSON object: prefetch key -> FHIR resource (or null)."]
    if errors:
        raise BadHookRequest(errors)
    assert hook is not None and instance is not None and patient_id is not None and isinstance(context, dict)
    extra = {key: value for key, value in context.items() if key not in ("patientId", "userId", "encounterId")}
    return HookRequest(
        hook=hook,
        hook_instance=instance,
        patient_id=patient_id,
        user_id=user_id,
        encounter_id=encounter_id,
        fhir_server=server,
        access_token=token,
        prefetch=prefetch,
        extra_context=extra,
    )


def _string(
    obj: dict[str, Any], key: str, errors: dict[str, list[str]], *, required: bool = False, prefix: str = ""
) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            errors.setdefault(prefix + key, []).append(f"{key} is required.")
        return None
    if not isinstance(value, str) or not value.strip():
        errors.setdefault(prefix + key, []).append(f"{key} must be a non-empty string.")
        return None
    return value


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _fhir_server(body: dict[str, Any], errors: dict[str, list[str]]) -> str | None:
    server = _string(body, "fhirServer", errors)
    if server is None:
        return None
    parts = urlsplit(server)
    # Only http(s): the service fetches from this URL, and urllib would also open file: or ftp: URLs.
    if parts.scheme.lower() not in FETCH_SCHEMES or not parts.netloc:
        errors.setdefault("fhirServer", []).append("fhirServer must be an absolute http(s) URL.")
        return None
    return server.rstrip("/")


def _access_token(body: dict[str, Any], server: str | None, errors: dict[str, list[str]]) -> str | None:
    auth = body.get("fhirAuthorization")
    if auth is None:
        return None
    if not isinstance(auth, dict):
        errors["fhirAuthorization"] = ["fhirAuthorization must be a JSON object."]
        return None
    if body.get("fhirServer") is None:
        # Spec, request table: "If fhirAuthorization is provided, this field [fhirServer] is REQUIRED."
        errors.setdefault("fhirServer", []).append("fhirServer is required when fhirAuthorization is given.")
    token = _string(auth, "access_token", errors, required=True, prefix="fhirAuthorization.")
    kind = _string(auth, "token_type", errors, required=True, prefix="fhirAuthorization.")
    if kind is not None and kind.lower() != "bearer":
        errors.setdefault("fhirAuthorization.token_type", []).append("token_type must be Bearer.")
    expires = auth.get("expires_in")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int)):
        errors.setdefault("fhirAuthorization.expires_in", []).append("expires_in must be an integer (seconds).")
    for key in ("scope", "subject"):
        if auth.get(key) is not None and not isinstance(auth[key], str):
            errors.setdefault(f"fhirAuthorization.{key}", []).append(f"{key} must be a string.")
    return token if server is not None else None
