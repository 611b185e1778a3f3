"""POST /api/v1/fhir/$interpret (and /interpret): FHIR R4 in (Bundle, DiagnosticReport, Observation), our
answers or a FHIR Bundle out. GET /api/v1/fhir/metadata: the CapabilityStatement; GET
/api/v1/fhir/OperationDefinition/interpret: the operation's definition. A client that asks for FHIR
(`Accept: application/fhir+json` or `?_format=fhir`) gets its errors as OperationOutcome resources.

Thin like the JSON endpoint: check the media type, parse, `read_fhir`, validate the documents with
the same schema, interpret (and store) with the same service call. Errors in a document built
from FHIR are relocated into the client's input (`Bundle.entry[3].resource(Observation/x)...`).
The answer is our JSON by default, or a FHIR Bundle with `Accept: application/fhir+json` or
`?_format=fhir`.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import flask
from flask import Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint
from marshmallow import ValidationError, fields

from labservice import __version__
from labservice.adapters.cbc_schema import load_read_documents
from labservice.adapters.errors import InputError
from labservice.adapters.fhir.conformance import capability_statement, operation_definition, operation_outcome
from labservice.adapters.fhir.model import FhirCbc, FhirRead
from labservice.adapters.fhir.reader import read_fhir
from labservice.adapters.located import relocate
from labservice.api.common import keep_requested, read_json
from labservice.api.common import problem_doc as _problem
from labservice.api.common import schema_ref as _ref
from labservice.api.schemas import InterpretationSchema
from labservice.errors import BODY_PATH, Problem, first_error, flatten_errors
from labservice.extensions import current_clock_skew, current_ruleset
from labservice.middleware.audit_trail import touched_answers
from labservice.security.principal import current_principal
from labservice.services.interpret import interpret_documents

if TYPE_CHECKING:
    from flask_smorest import Api

FHIR_JSON = "application/fhir+json"
JSON = "application/json"
ACCEPTED_TYPES = (FHIR_JSON, JSON)
FHIR_FORMATS = ("fhir", "fhir+json", FHIR_JSON)
JSON_FORMATS = ("json", JSON)

blp = Blueprint(
    "fhir",
    __name__,
    url_prefix="/api/v1/fhir",
    description="FHIR R4 in: CBCs read from Bundles, DiagnosticReports and Observations.",
)

EXAMPLE = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {
            "fullUrl": "urn:uuid:5d7c3d5e-3b5e-4c1c-9a52-8a0d8f1e0001",
            "resource": {
                "resourceType": "Patient",
                "id": "p1",
                "gender": "female",
                "birthDate": "1990-04-02",
                "identifier": [
                    {
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                        "value": "MRN-0042",
                    }
                ],
            },
        },
        {
            "fullUrl": "urn:uuid:5d7c3d5e-3b5e-4c1c-9a52-8a0d8f1e0002",
            "resource": {
                "resourceType": "DiagnosticReport",
                "id": "cbc1",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                "subject": {"reference": "urn:uuid:5d7c3d5e-3b5e-4c1c-9a52-8a0d8f1e0001"},
                "effectiveDateTime": "2026-11-20T08:30:00Z",
                "result": [{"reference": "urn:uuid:5d7c3d5e-3b5e-4c1c-9a52-8a0d8f1e0003"}],
            },
        },
        {
            "fullUrl": "urn:uuid:5d7c3d5e-3b5e-4c1c-9a52-8a0d8f1e0003",
            "resource": {
                "resourceType": "Observation",
                "id": "plt1",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "777-3"}]},
                "subject": {"reference": "urn:uuid:5d7c3d5e-3b5e-4c1c-9a52-8a0d8f1e0001"},
                "valueQuantity": {
                    "value": 45,
                    "unit": "10*3/uL",
                    "system": "http://unitsofmeasure.org",
                    "code": "10*3/uL",
                },
                "referenceRange": [{"low": {"value": 150}, "high": {"value": 400}}],
            },
        },
    ],
}


@blp.route("/interpret", methods=["POST"])
@blp.doc(
    summary="Interpret the CBCs of a FHIR R4 Bundle, DiagnosticReport or Observation",
    description=(
        "The body is a FHIR R4 Bundle (collection, transaction, batch, searchset or document), a "
        "DiagnosticReport with contained or bundled Observations, a CBC panel Observation with "
        "`hasMember` (58410-2, 57021-8) or a single Observation. Analytes are recognised by their "
        "LOINC codes (clinical-rules §1, `reference_ranges/analytes.csv`); units come from "
        "`valueQuantity.code` (UCUM) or its `unit`; the first `referenceRange` is the laboratory's "
        "range; sex and birth date come from the subject Patient when the input holds it. CBCs are "
        "grouped by DiagnosticReport, by `hasMember` panel, or for loose Observations by subject, "
        "specimen and effective time. Resources that look like CBC results but cannot be used are "
        "listed in `unused` with the reason (no value, withdrawn status, an unresolved reference, a "
        "unit that cannot be converted); other resources are counted in `ignored`. Results that "
        "are not final are labelled in `source.non_final`. CBCs with a patient id are stored unless "
        "`?store=false`. With `Accept: application/fhir+json` or `?_format=fhir` the answer is a "
        "FHIR Bundle."
    ),
    parameters=[
        {
            "in": "query",
            "name": "store",
            "required": False,
            "schema": {"type": "boolean", "default": True},
            "description": "false: interpret without storing",
        },
        {
            "in": "query",
            "name": "_format",
            "required": False,
            "schema": {"type": "string", "enum": ["fhir", FHIR_JSON, "json", JSON]},
            "description": "fhir (or application/fhir+json): answer a FHIR Bundle; json: our JSON answer. "
            "Overrides Accept.",
        },
    ],
    requestBody={
        "required": True,
        "content": {
            FHIR_JSON: {"schema": {"type": "object"}, "example": EXAMPLE},
            JSON: {"schema": {"type": "object"}},
        },
    },
    responses={
        "200": {
            "description": "One interpretation per CBC found, with where it came from; what was not used.",
            "content": {
                JSON: {"schema": _ref("FhirInterpretations")},
                FHIR_JSON: {"schema": {"type": "object", "description": "A FHIR R4 Bundle"}},
            },
        },
        "400": _problem("The body is not JSON (the detail names line and column)."),
        "413": _problem("Body larger than MAX_CONTENT_LENGTH, or more CBCs than MAX_BATCH_ITEMS."),
        "415": _problem("Content type is not application/fhir+json or application/json."),
        "422": _problem(
            "Malformed FHIR (no resourceType, an unsupported resource, entry not a list, a "
            "value that is not a number), an unknown unit or implausible value, or no usable "
            "CBC at all. `errors` is keyed by the FHIR path, e.g. "
            "`Bundle.entry[3].resource(Observation/abc).valueQuantity.value`."
        ),
    },
)
def interpret_fhir() -> ResponseReturnValue:
    """Interpret the CBCs of FHIR R4 resources"""
    if request.mimetype not in ACCEPTED_TYPES:
        sent = request.mimetype or "no content type"
        raise Problem(415, f"Send FHIR as {FHIR_JSON} (or {JSON}), not {sent}.")
    wants_fhir = _wants_fhir()
    body = read_json(request.get_data(cache=False))
    rs = current_ruleset()
    try:
        read = read_fhir(body, rs)
    except InputError as error:
        raise Problem(422, error.detail, error.errors) from None
    _check_count(read)
    answers = _interpret(read)
    touched_answers(answers)  # the audit trail (labservice.middleware.audit_trail)
    if wants_fhir:
        from labservice.adapters.fhir.output import to_bundle

        response = current_app.json.response(to_bundle(read, answers, rs))
        response.content_type = FHIR_JSON
    else:
        response = current_app.json.response(
            {
                "interpretations": [
                    {**answer, "source": source_of(cbc)} for cbc, answer in zip(read.cbcs, answers, strict=True)
                ],
                "unused": [item.as_dict() for item in read.unused],
                "ignored": read.ignored,
            }
        )
    response.vary.add("Accept")
    return response


# FHIR's own spelling of the same operation: POST [base]/$interpret (the same view, scopes and idempotency; the
# OpenAPI document lists it beside /interpret in register()).
flask.Blueprint.add_url_rule(blp, "/$interpret", endpoint="interpret_fhir", view_func=interpret_fhir, methods=["POST"])

STARTED = datetime.now(UTC).replace(microsecond=0).isoformat()


def _base() -> str:
    return request.url_root.rstrip("/") + (blp.url_prefix or "")


def _fhir_response(resource: dict[str, Any]) -> Response:
    response: Response = current_app.response_class(current_app.json.dumps(resource), mimetype=FHIR_JSON)
    return response


@blp.route("/metadata", methods=["GET"])
@blp.doc(
    summary="The FHIR CapabilityStatement of this server",
    description="FHIR R4 (4.0.1), JSON, bearer API keys, and the `$interpret` operation. No key needed.",
    responses={"200": {"description": "A CapabilityStatement", "content": {FHIR_JSON: {"schema": {"type": "object"}}}}},
)
def capability() -> ResponseReturnValue:
    """The FHIR CapabilityStatement"""
    return _fhir_response(
        capability_statement(
            _base(), software_version=__version__, ruleset_version=current_ruleset().version, date=STARTED
        )
    )


@blp.route("/OperationDefinition/interpret", methods=["GET"])
@blp.doc(
    summary="The OperationDefinition of $interpret",
    description="What `$interpret` takes and answers, as a FHIR R4 OperationDefinition. No key needed.",
    responses={
        "200": {"description": "An OperationDefinition", "content": {FHIR_JSON: {"schema": {"type": "object"}}}}
    },
)
def interpret_operation() -> ResponseReturnValue:
    """The OperationDefinition of $interpret"""
    return _fhir_response(operation_definition(_base()))


@blp.after_request
def _errors_as_operation_outcome(response: Response) -> Response:
    """A client that asked for FHIR gets its errors (every problem+json answer here, 401 and 429 included) as an
    OperationOutcome with the same status and headers."""
    if response.mimetype != "application/problem+json" or not _asked_for_fhir():
        return response
    problem = response.get_json(silent=True) or {}
    outcome = _fhir_response(operation_outcome(response.status_code, problem))
    outcome.status_code = response.status_code
    for name, value in response.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            outcome.headers[name] = value
    outcome.vary.add("Accept")
    return outcome


def _asked_for_fhir() -> bool:
    chosen = (request.args.get("_format") or "").lower()
    if chosen:
        return chosen in FHIR_FORMATS
    return request.accept_mimetypes.best_match([JSON, FHIR_JSON, "application/problem+json"]) == FHIR_JSON


def _wants_fhir() -> bool:
    chosen = request.args.get("_format")
    if chosen is not None:
        if chosen.lower() in FHIR_FORMATS:
            return True
        if chosen.lower() in JSON_FORMATS:
            return False
        raise Problem(
            422,
            f"_format {chosen!r} is not supported; use fhir or json.",
            {"_format": [f"Expected one of {', '.join(FHIR_FORMATS + JSON_FORMATS)}."]},
        )
    return request.accept_mimetypes.best_match([JSON, FHIR_JSON]) == FHIR_JSON


def _check_count(read: FhirRead) -> None:
    if not read.cbcs:
        errors: dict[str, list[str]] = {}
        for item in read.unused:
            errors.setdefault(item.path, []).append(item.reason)
        if not errors:
            errors = {BODY_PATH: ["No Observation carries a CBC LOINC code (clinical-rules §1)."]}
        detail = (
            f"No usable CBC in the input ({len(read.unused)} CBC-related resources could "
            "not be used; `errors` says why)."
        )
        if _report_without_its_observations(read):
            detail = (
                "No usable CBC in the input: the DiagnosticReport refers to Observations that are not in it. "
                "Post a Bundle that includes the Observations (or the DiagnosticReport with its Observations "
                "`contained`)."
            )
        raise Problem(422, detail, errors)
    limit = current_app.config["MAX_BATCH_ITEMS"]
    if len(read.cbcs) > limit:
        raise Problem(
            413,
            f"The input holds {len(read.cbcs)} CBCs; the limit is {limit} per request.",
            {BODY_PATH: [f"At most {limit} CBCs."]},
        )


def _report_without_its_observations(read: FhirRead) -> bool:
    """Every unused item is a DiagnosticReport's reference that does not resolve, or the report itself."""
    return (
        bool(read.unused)
        and all(item.resource_type == "DiagnosticReport" or "does not resolve" in item.reason for item in read.unused)
        and any(item.resource_type == "DiagnosticReport" for item in read.unused)
    )


def _interpret(read: FhirRead) -> list[dict]:
    docs = [cbc.document for cbc in read.cbcs]
    locations = [cbc.locations for cbc in read.cbcs]
    try:
        loaded = load_read_documents(docs)
    except ValidationError as error:
        errors = relocate(flatten_errors(error.messages), locations)
        raise Problem(422, first_error(errors), errors) from None
    raws = [{**cbc.document, "fhir": source_of(cbc)} for cbc in read.cbcs]
    try:
        return interpret_documents(
            loaded,
            ruleset=current_ruleset(),
            indexed=True,
            keep=keep_requested("fhir"),
            raws=raws,
            clock_skew=current_clock_skew(),
            may_read=current_principal().has("read"),
        )
    except InputError as error:
        errors = relocate(error.errors, locations)
        raise Problem(422, first_error(errors), errors) from None


def source_of(cbc: FhirCbc) -> dict[str, Any]:
    """Where one interpretation came from: the report, each analyte's Observation, non-final statuses."""
    return {
        "report": cbc.report_reference,
        "observations": {used.analyte: used.reference or used.path for used in cbc.observations},
        "non_final": list(cbc.non_final),
    }


class FhirInterpretationSchema(InterpretationSchema):
    """The usual answer plus where the CBC came from (a subclass, not allOf: the answer allows no other field)."""

    source = fields.Dict(metadata={"allOf": [_ref("FhirSource")]})


def register(api: Api, app: Flask) -> None:
    """Register the blueprint and the answer schema its documentation refers to."""
    components = api.spec.components
    components.schema(
        "FhirSource",
        {
            "type": "object",
            "properties": {
                "report": {
                    "type": "string",
                    "nullable": True,
                    "description": "The DiagnosticReport or panel Observation that grouped this CBC",
                },
                "observations": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "analyte -> the Observation it was read from",
                },
                "non_final": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Statuses that are not final, e.g. `platelets: preliminary`",
                },
            },
        },
    )
    components.schema(
        "FhirUnused",
        {
            "type": "object",
            "properties": {
                "resource_type": {"type": "string"},
                "id": {"type": "string", "nullable": True},
                "path": {"type": "string"},
                "reason": {"type": "string"},
            },
        },
    )
    components.schema("FhirInterpretation", schema=FhirInterpretationSchema)
    components.schema(
        "FhirInterpretations",
        {
            "type": "object",
            "properties": {
                "interpretations": {"type": "array", "items": _ref("FhirInterpretation")},
                "unused": {
                    "type": "array",
                    "items": _ref("FhirUnused"),
                    "description": "CBC-related resources (or parts) that could not be used, and why",
                },
                "ignored": {
                    "type": "object",
                    "additionalProperties": {"type": "integer"},
                    "description": "Resources outside a CBC, counted by resourceType",
                },
            },
        },
    )
    api.register_blueprint(blp)
    # POST /$interpret is the same operation as POST /interpret (one endpoint, registered without its own doc):
    # list it too, under its own operationId. apispec keeps its paths in `_paths` (no public setter for a copy).
    paths = api.spec._paths
    same = copy.deepcopy(paths[f"{blp.url_prefix}/interpret"])
    same["post"]["operationId"] = "interpretFhirOperation"
    same["post"]["summary"] = "The FHIR operation $interpret (the same as POST /api/v1/fhir/interpret)"
    paths[f"{blp.url_prefix}/$interpret"] = same
