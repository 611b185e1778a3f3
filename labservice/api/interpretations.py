"""POST /api/v1/interpretations: one CBC object, or an array of them, in; answers in the same shape.

The view is deliberately thin and does no per-request setup: it checks the media type, parses
the JSON itself (so a parse error can name its position), validates with schemas built once at
import, calls the service once for the whole request, and serialises the service's answer as is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, request
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint
from marshmallow import ValidationError

from labservice.adapters.errors import InputError
from labservice.api.common import is_json, keep_requested, read_json
from labservice.api.common import problem_doc as _problem
from labservice.api.common import schema_ref as _ref
from labservice.api.schemas import (
    CBC_LIST_SCHEMA,
    CBC_SCHEMA,
    CBCSchema,
    InterpretationSchema,
    ProblemSchema,
    ResultSchema,
)
from labservice.errors import BODY_PATH, Problem, first_error, flatten_errors
from labservice.examples import CONTRACT_EXAMPLE
from labservice.extensions import current_clock_skew, current_ruleset
from labservice.middleware.audit_trail import touched_answers
from labservice.security.principal import current_principal
from labservice.services.interpret import interpret_documents

if TYPE_CHECKING:
    from flask_smorest import Api

blp = Blueprint(
    "interpretations",
    __name__,
    url_prefix="/api/v1",
    description="Interpret complete blood counts: describes the counts, never diagnoses.",
)


@blp.route("/interpretations", methods=["POST"])
@blp.doc(
    summary="Interpret one CBC, or an array of CBCs",
    description=(
        "The body is one CBC object, or a JSON array of CBC objects (up to MAX_BATCH_ITEMS, "
        "1000 by default) answered with an array in the same order. A result is "
        "`{value, unit, reference_range?}` or a bare number in the canonical unit. If any CBC "
        "of an array is invalid the answer is 422 naming its index, and none is interpreted."
    ),
    requestBody={
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": [_ref("CBC"), _ref("CBCBatch")]}, "example": CONTRACT_EXAMPLE}
        },
    },
    responses={
        "200": {
            "description": "One answer per CBC: an object for an object, an array for an array.",
            "content": {
                "application/json": {"schema": {"oneOf": [_ref("Interpretation"), _ref("InterpretationBatch")]}}
            },
        },
        "400": _problem("Malformed JSON (the detail names line, column and character)."),
        "413": _problem("Body larger than MAX_CONTENT_LENGTH, or more CBCs than MAX_BATCH_ITEMS."),
        "415": _problem("Content type is not application/json (or application/*+json)."),
        "422": _problem(
            "JSON that is not a valid CBC: unknown field or unit, wrong type, "
            "implausible value, a `collected_at` more than CLOCK_SKEW_SECONDS ahead of the "
            "service's clock. `errors` maps field paths to messages; in an array "
            "the path starts with the CBC's index."
        ),
    },
)
def create_interpretations() -> ResponseReturnValue:
    """Interpret complete blood counts"""
    if not is_json(request.mimetype):
        sent = request.mimetype or "no content type"
        raise Problem(415, f"Send the CBC as application/json, not {sent}.")
    body = read_json(request.get_data(cache=False), non_finite=True)  # NaN: 422 naming the field (schemas)
    if isinstance(body, list):
        answers = _interpret_list(body)
        touched_answers(answers)  # the audit trail (labservice.middleware.audit_trail)
        return current_app.json.response(answers)
    if isinstance(body, dict):
        answer = _interpret_one(body)
        touched_answers([answer])
        return current_app.json.response(answer)
    raise Problem(
        422,
        "The body must be a CBC object or an array of CBC objects.",
        {BODY_PATH: [f"Expected an object or an array, not {_json_type(body)}."]},
    )


def _interpret_one(body: dict) -> dict:
    try:
        doc = CBC_SCHEMA.load(body)
    except ValidationError as error:
        errors = flatten_errors(error.messages)
        raise Problem(422, f"The body is not a valid CBC: {first_error(errors)}", errors) from None
    try:
        answers = interpret_documents(
            [doc],
            ruleset=current_ruleset(),
            keep=keep_requested(),
            raws=[body],
            clock_skew=current_clock_skew(),
            may_read=current_principal().has("read"),
        )
    except InputError as error:
        raise Problem(422, error.detail, error.errors) from None
    return answers[0]


def _interpret_list(body: list) -> list:
    limit = current_app.config["MAX_BATCH_ITEMS"]
    if len(body) > limit:
        raise Problem(
            413,
            f"The array holds {len(body)} CBCs; the limit is {limit} per request.",
            {BODY_PATH: [f"At most {limit} items."]},
        )
    if not body:
        return []
    try:
        docs = CBC_LIST_SCHEMA.load(body)
    except ValidationError as error:
        errors = flatten_errors(error.messages)
        raise Problem(422, _list_detail(errors, len(body)), errors) from None
    try:
        return interpret_documents(
            docs,
            ruleset=current_ruleset(),
            indexed=True,
            keep=keep_requested(),
            raws=body,
            clock_skew=current_clock_skew(),
            may_read=current_principal().has("read"),
        )
    except InputError as error:
        raise Problem(422, error.detail, error.errors) from None


def _list_detail(errors: dict[str, list[str]], count: int) -> str:
    heads = (path.split(".", 1)[0] for path in errors)
    indexes = sorted({int(head) for head in heads if head.isdigit()})
    where = ", ".join(str(i) for i in indexes[:10]) + (", ..." if len(indexes) > 10 else "")
    return f"{len(indexes)} of {count} CBCs are not valid (index {where}); none was interpreted."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    return "a number"


def register(api: Api, app: Flask) -> None:
    """Register the blueprint and the named request/answer schemas its documentation refers to."""
    limit = app.config["MAX_BATCH_ITEMS"]
    components = api.spec.components
    components.schema("Result", schema=ResultSchema)
    components.schema("CBC", schema=CBCSchema)
    components.schema("CBCBatch", {"type": "array", "items": _ref("CBC"), "maxItems": limit})
    components.schema("Interpretation", schema=InterpretationSchema)
    components.schema("InterpretationBatch", {"type": "array", "items": _ref("Interpretation")})
    if "Problem" not in components.schemas:  # flask-smorest may have named it as ERROR_SCHEMA
        components.schema("Problem", schema=ProblemSchema)
    api.register_blueprint(blp)
