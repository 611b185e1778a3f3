"""POST /api/v1/hl7v2/interpret: one HL7 v2 ORU^R01 / ORF^R04 message in; our JSON answers or an ACK out.

Thin: check the media type, hand the bytes to `receive_message` (the same call the MLLP listener
makes), and answer JSON (default) or the HL7 ACK (`Accept: x-application/hl7-v2+er7` or
`?ack=true`). As in "HL7 over HTTP", an ACK answers 200 whether it says AA, AE or AR; only a body
that is not HL7 at all (400), too large (413) or of the wrong media type (415) changes the status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint
from marshmallow import fields

from labservice.adapters.hl7v2.reader import ReadSettings, read_settings
from labservice.api.common import keep_requested
from labservice.api.common import problem_doc as _problem
from labservice.api.common import schema_ref as _ref
from labservice.api.schemas import InterpretationSchema
from labservice.errors import Problem
from labservice.extensions import SETTINGS_EXTENSION, current_clock_skew, current_hl7v2_settings, current_ruleset
from labservice.middleware.audit_trail import touched_answers
from labservice.security.principal import current_principal
from labservice.services.hl7v2_receive import receive_message

if TYPE_CHECKING:
    from flask_smorest import Api

ER7 = "x-application/hl7-v2+er7"
TEXT = "text/plain"
JSON = "application/json"
ACCEPTED_TYPES = (ER7, TEXT)
#: HTTP statuses an ACK answer keeps; any other problem is an AE/AR inside a 200.
TRANSPORT_STATUSES = (400, 413, 415)

blp = Blueprint(
    "hl7v2",
    __name__,
    url_prefix="/api/v1/hl7v2",
    description="HL7 v2 in: CBCs read from ORU^R01 and ORF^R04 messages; an ACK on request.",
)

EXAMPLE = (
    "\r".join(
        [
            "MSH|^~\\&|LIS|LAB|labservice|HOSP|20261120093000+0000||ORU^R01^ORU_R01|MSG00001|P|2.5.1",
            "PID|1||MRN-0042^^^HOSP^MR||DOE^JANE||19920402|F",
            "OBR|1|ORD1|FIL1|58410-2^CBC panel - Blood by Automated count^LN|||20261120083000+0000",
            "OBX|1|NM|777-3^Platelets [#/volume] in Blood by Automated count^LN||45|10*3/uL^^UCUM|150-410|L|||F",
            "OBX|2|NM|6690-2^Leukocytes [#/volume] in Blood by Automated count^LN||2.1|10*3/uL^^UCUM|4.0-11.0|L|||F",
            "OBX|3|NM|718-7^Hemoglobin [Mass/volume] in Blood^LN||8.2|g/dL^^UCUM|12.0-15.0|L|||P",
        ]
    )
    + "\r"
)


def _problem_or_ack(description: str) -> dict[str, Any]:
    """An error that is problem+json, or the AR ACK when the ACK was asked for."""
    documented = _problem(description)
    documented["content"][ER7] = {"schema": {"type": "string", "description": "HL7 v2 ACK (AR)"}}
    return documented


@blp.route("/interpret", methods=["POST"])
@blp.doc(
    summary="Interpret the CBCs of an HL7 v2 ORU^R01 or ORF^R04 message",
    description=(
        "The body is one HL7 v2 message (ER7, `|`-delimited) as `x-application/hl7-v2+er7` or "
        "`text/plain`; segments may be separated by CR, LF or CRLF, and a UTF-8 byte-order mark is "
        "ignored. Each OBR group with a CBC result is one CBC. OBX-3 is read as LOINC (coding system "
        "LN, codes of clinical-rules §1) or through the local-code map (`reference_ranges/"
        "hl7_local_codes.csv`, extended by HL7_LOCAL_CODES); OBX-5 NM or SN, OBX-6 the unit, OBX-7 "
        "the laboratory's range, OBX-11 the result status (F, C, U used; P, R, S and unknown statuses "
        "used and listed in `source.non_final`; I, O, N, X, D, W never used). PID-3, PID-7, PID-8 give "
        "the patient; OBR-7 (else SPM-17, else OBX-14) the collection time. Every OBX not used is "
        "listed in `unused` with the reason. CBCs with a patient id are stored unless `?store=false`. "
        "With `Accept: x-application/hl7-v2+er7` or `?ack=true` the answer is the HL7 ACK instead: AA, "
        "AE (content to correct, with ERR segments naming segment and field) or AR (a message type "
        "not taken, or not HL7), with HTTP 200 except for 400, 413 and 415."
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
            "name": "ack",
            "required": False,
            "schema": {"type": "boolean", "default": False},
            "description": "true: answer the HL7 ACK (as Accept: x-application/hl7-v2+er7 does)",
        },
    ],
    requestBody={
        "required": True,
        "content": {ER7: {"schema": {"type": "string"}, "example": EXAMPLE}, TEXT: {"schema": {"type": "string"}}},
    },
    responses={
        "200": {
            "description": "One interpretation per OBR group with CBC results, with where it came from, and "
            "every OBX not used; or the ACK (AA, AE or AR).",
            "content": {
                JSON: {"schema": _ref("Hl7v2Interpretations")},
                ER7: {"schema": {"type": "string", "description": "HL7 v2 ACK"}},
            },
        },
        "400": _problem_or_ack(
            "Not an HL7 v2 message (no MSH segment, no encoding characters) or not decodable "
            "text; with the ACK asked for, an AR ACK."
        ),
        "413": _problem_or_ack(
            "Body larger than MAX_CONTENT_LENGTH, or more CBCs than MAX_BATCH_ITEMS; with the "
            "ACK asked for and too many CBCs, an AR ACK."
        ),
        "415": _problem("Content type is not x-application/hl7-v2+er7 or text/plain, or an unknown charset."),
        "422": _problem(
            "A message type other than ORU^R01 / ORF^R04, several messages in one body, no OBX "
            "with a CBC result, an OBX-5 that is not a number, no unit, an unknown unit or an "
            "implausible value. `errors` is keyed by segment and field, e.g. `OBR[1].OBX[3]-6` "
            "(occurrences in the message, not Set IDs)."
        ),
    },
)
def interpret_hl7v2() -> ResponseReturnValue:
    """Interpret the CBCs of an HL7 v2 message"""
    if request.mimetype not in ACCEPTED_TYPES:
        sent = request.mimetype or "no content type"
        raise Problem(415, f"Send the HL7 v2 message as {ER7} (or {TEXT}), not {sent}.")
    wants_ack = _wants_ack()
    received = receive_message(
        request.get_data(cache=False),
        current_hl7v2_settings(),
        keep=keep_requested("hl7v2"),
        charset=request.mimetype_params.get("charset"),
        max_cbcs=current_app.config["MAX_BATCH_ITEMS"],
        clock_skew=current_clock_skew(),
        may_read=current_principal().has("read"),
    )
    touched_answers((received.answer or {}).get("interpretations", []))  # the audit trail
    problem = received.problem
    response: Any
    if wants_ack:
        status = problem.status if problem is not None and problem.status in TRANSPORT_STATUSES else 200
        response = Response(received.ack, status=status, content_type=f"{ER7}; charset=utf-8")
    elif problem is not None:
        raise Problem(problem.status, problem.detail, problem.errors)
    else:
        response = current_app.json.response(received.answer)
    response.vary.add("Accept")
    return response


def _wants_ack() -> bool:
    chosen = request.args.get("ack")
    if chosen is not None:
        if chosen.lower() in ("true", "1", "yes"):
            return True
        if chosen.lower() in ("false", "0", "no"):
            return False
        raise Problem(422, f"ack {chosen!r} is not true or false.", {"ack": ["Expected true or false."]})
    return request.accept_mimetypes.best_match([JSON, ER7]) == ER7


class Hl7v2InterpretationSchema(InterpretationSchema):
    """The usual answer plus where the CBC came from (a subclass, not allOf: the answer allows no other field)."""

    source = fields.Dict(metadata={"allOf": [_ref("Hl7v2Source")]})


def register(api: Api, app: Flask) -> None:
    """Read the local-code map and time zone once (a bad file stops the app, naming file and line),
    register the blueprint and the answer schema its documentation refers to."""
    settings: ReadSettings = read_settings(
        current_ruleset(app), app.config.get("HL7_LOCAL_CODES"), app.config.get("HL7_TIMEZONE", "UTC")
    )
    app.extensions[SETTINGS_EXTENSION] = settings
    components = api.spec.components
    string = {"type": "string"}
    components.schema(
        "Hl7v2Source",
        {
            "type": "object",
            "properties": {
                "obr": {
                    "type": "string",
                    "description": "The order group, e.g. OBR[1] (its occurrence in the message)",
                },
                "order": {
                    "type": "object",
                    "description": "OBR-4: code, text, coding_system",
                    "additionalProperties": string,
                },
                "observations": {
                    "type": "object",
                    "additionalProperties": string,
                    "description": "analyte -> the OBX it was read from, e.g. OBR[1].OBX[5]",
                },
                "non_final": {
                    "type": "array",
                    "description": "Results used whose OBX-11 is not final",
                    "items": {
                        "type": "object",
                        "properties": {"analyte": string, "observation": string, "status": string, "meaning": string},
                    },
                },
                "collected_at": {
                    "type": "string",
                    "nullable": True,
                    "description": "Where the collection time came from: OBR-7, SPM-17 or OBX-14",
                },
                "notes": {
                    "type": "array",
                    "items": string,
                    "description": "What the reader assumed or could not use, with the field",
                },
            },
        },
    )
    components.schema(
        "Hl7v2Unused",
        {
            "type": "object",
            "properties": {
                "location": string,
                "code": string,
                "text": string,
                "coding_system": string,
                "analyte": string,
                "value_type": string,
                "value": string,
                "unit": string,
                "status": string,
                "reason": string,
            },
        },
    )
    components.schema("Hl7v2Interpretation", schema=Hl7v2InterpretationSchema)
    components.schema(
        "Hl7v2Interpretations",
        {
            "type": "object",
            "properties": {
                "message": {
                    "type": "object",
                    "additionalProperties": string,
                    "description": "MSH: type, control_id, version, processing_id, sending application and facility",
                },
                "interpretations": {"type": "array", "items": _ref("Hl7v2Interpretation")},
                "unused": {
                    "type": "array",
                    "items": _ref("Hl7v2Unused"),
                    "description": "Segments and OBX not used, each with the reason",
                },
            },
        },
    )
    api.register_blueprint(blp)
