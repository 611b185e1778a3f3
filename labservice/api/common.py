"""What the endpoints of the HTTP API share, written once: references into the OpenAPI document, the
documented problem+json answer, the one reader of JSON bodies, and storing unless `?store=false`."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app

from labservice.errors import BODY_PATH, PROBLEM_CONTENT_TYPE, Problem
from labservice.extensions import current_database, current_ruleset
from labservice.middleware.audit_trail import audit_in_transaction
from labservice.query import store_requested
from labservice.services.store_results import Keep, keep_in


def schema_ref(name: str) -> dict[str, str]:
    """A reference to a named schema of the OpenAPI document."""
    return {"$ref": f"#/components/schemas/{name}"}


def problem_doc(description: str) -> dict[str, Any]:
    """An OpenAPI response: an RFC 9457 problem (labservice.errors), with what causes it."""
    return {"description": description, "content": {PROBLEM_CONTENT_TYPE: {"schema": schema_ref("Problem")}}}


def is_json(mimetype: str) -> bool:
    """application/json, or a JSON-based type such as application/fhir+json."""
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


#: Python refuses to read an integer of more digits than this (int-str conversion limit, 4300 by default);
#: a float cannot hold one of more than 309. A longer JSON integer is read as a float (infinity), so the
#: schema that reads its field answers 422 naming it, not a 400 for the whole body or a 500 (§1 v2).
INT_DIGITS_READ = 4300


def _parse_int(text: str) -> int | float:
    if len(text) - text.startswith("-") > INT_DIGITS_READ:
        return float(text)
    return int(text)


def read_json(raw: bytes, *, non_finite: bool = False) -> Any:
    """A request body parsed as JSON, or Problem 400 naming what is wrong: the line, column and character of
    a syntax error, the first byte that is not UTF-8, nesting too deep to parse.

    NaN and Infinity are not JSON (RFC 8259), though Python's json module reads them: they are refused here,
    unless `non_finite`, for a body whose schema refuses them itself naming the field (a CBC's results)."""
    try:
        if non_finite:
            return json.loads(raw, parse_int=_parse_int)
        return json.loads(raw, parse_constant=_reject_constant, parse_int=_parse_int)
    except json.JSONDecodeError as error:
        raise Problem(
            400,
            f"Malformed JSON at line {error.lineno} column {error.colno} (character {error.pos}): {error.msg}.",
            {BODY_PATH: [error.msg]},
        ) from None
    except UnicodeDecodeError as error:
        raise Problem(400, f"The body is not UTF-8 text (byte {error.start}).", {BODY_PATH: ["Not UTF-8."]}) from None
    except ValueError as error:
        raise Problem(400, f"Malformed JSON: {error}.", {BODY_PATH: [str(error)]}) from None
    except RecursionError:
        raise Problem(400, "Malformed JSON: nested too deeply.", {BODY_PATH: ["Nested too deeply."]}) from None


def keep_requested(source: str = "json") -> Keep | None:
    """Where to store the CBCs with a patient id (received from `source`), or None if the request says
    ?store=false."""
    if not store_requested():
        return None
    return keep_in(
        current_database(),
        current_ruleset(),
        current_app.config["DELTA_WINDOW_DAYS"],
        source=source,
        before_commit=audit_in_transaction,  # the audit rows in the storing transaction: both kept, or neither
    )
