"""CDS Hooks 2.0 endpoints under /cds-services (outside /api, as the specification places them).

- `GET /cds-services`: discovery.
- `POST /cds-services/cbc-review`: the `patient-view` service; answers `{"cards": [...]}`.
- `POST /cds-services/cbc-review/feedback`: card outcomes, appended to a JSON Lines log.

A plain Flask blueprint, not part of the OpenAPI document: the CDS Hooks specification is its
contract. `labservice.errors` renders problem+json only under /api and keeps Flask's HTML pages
elsewhere, so this blueprint has its own handler: every error here, including an unknown service
(404) and a wrong method (405), is the same `application/problem+json` body, which CDS clients can
read as JSON. Malformed calls answer 400 naming the field; missing FHIR data 412; FHIR that is not
a valid CBC 422. `fhirServer` is read only when it is on the calling client's allowlist
(`CDS_FHIR_SERVERS`, see labservice.adapters.cdshooks.fhir_client). Responses allow any origin (CORS),
which browser-based CDS clients such as the CDS Hooks sandbox need; the answers hold only what the
caller sent.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from flask import Blueprint, Flask, current_app, request
from flask.typing import ResponseReturnValue
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from labservice.adapters.cbc_schema import load_read_documents
from labservice.adapters.cdshooks.cards import dashboard_link_for
from labservice.adapters.cdshooks.feedback import parse_feedback
from labservice.adapters.cdshooks.fhir_client import (
    DEFAULT_MAX_BYTES,
    FhirAccess,
    allowed_for,
    parse_fhir_servers,
    parse_private_networks,
)
from labservice.adapters.cdshooks.prefetch import PreconditionFailed
from labservice.adapters.cdshooks.request import BadHookRequest, parse_hook_request
from labservice.adapters.cdshooks.service import PLATELET_ORDER_CHECK, SERVICES, CdsService, discovery
from labservice.adapters.errors import InputError
from labservice.api.common import read_json
from labservice.errors import Problem, flatten_errors, problem_response
from labservice.extensions import current_database, current_ruleset
from labservice.security.principal import current_principal, touched_patients
from labservice.services.cds_review import review
from labservice.services.interpret import interpret_documents
from labservice.services.order_review import order_review
from labservice.store.repository import patient_record

FEEDBACK_FILE = "cds-feedback.jsonl"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

bp = Blueprint("cds_services", __name__, url_prefix="/cds-services")


@bp.route("", methods=ALL_METHODS)
@bp.route("/", methods=ALL_METHODS)
def discover() -> ResponseReturnValue:
    if request.method != "GET":
        raise MethodNotAllowed(valid_methods=["GET"])
    return current_app.json.response(discovery(current_ruleset()))


@bp.route("/<service_id>", methods=ALL_METHODS)
def call_service(service_id: str) -> ResponseReturnValue:
    service = _service(service_id)
    if request.method != "POST":
        raise MethodNotAllowed(valid_methods=["POST"])
    hook = parse_hook_request(_json_body(), service)
    try:
        if service.id == PLATELET_ORDER_CHECK.id:
            cards = order_review(
                hook,
                ruleset=current_ruleset(),
                interpret=_interpret,
                base_url=_base_url(),
                access=_fhir_access(),
                links=_dashboard_links,
            )
        else:
            cards = review(
                hook,
                ruleset=current_ruleset(),
                interpret=_interpret,
                base_url=_base_url(),
                access=_fhir_access(),
                stored=_is_stored,
            )
    except PreconditionFailed as error:
        raise Problem(
            412,
            f"The FHIR data this service needs could not be obtained: {error}",
            error.errors,
            title="Precondition Failed",
        ) from None
    except BadHookRequest:
        raise
    except InputError as error:
        raise Problem(422, f"The FHIR data is not a usable CBC: {error.detail}", error.errors) from None
    touched_patients([hook.patient_id], "read")  # the audit trail: the patient in context
    return current_app.json.response(cards)


@bp.route("/<service_id>/feedback", methods=ALL_METHODS)
def feedback(service_id: str) -> ResponseReturnValue:
    service = _service(service_id)
    if request.method != "POST":
        raise MethodNotAllowed(valid_methods=["POST"])
    records = parse_feedback(_json_body())
    _append_feedback(service, records)
    return current_app.json.response({"recorded": len(records)})


@bp.route("/<path:rest>", methods=ALL_METHODS)
def elsewhere(rest: str) -> ResponseReturnValue:
    raise NotFound(f"There is nothing at /cds-services/{rest}; GET /cds-services lists the services.")


def _service(service_id: str) -> CdsService:
    service = SERVICES.get(service_id)
    if service is None:
        raise Problem(
            404,
            f"No CDS service {service_id!r}; GET /cds-services lists the services.",
            {"service": [f"Known services: {', '.join(SERVICES)}."]},
        )
    return service


def _json_body() -> Any:
    if request.mimetype != "application/json":
        raise Problem(415, f"Send the call as application/json, not {request.mimetype or 'no content type'}.")
    return read_json(request.get_data(cache=False))


def _interpret(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate and interpret without storing: a patient-view call is a read (see review.py)."""
    try:
        loaded = load_read_documents(docs)
    except ValidationError as error:
        raise InputError(flatten_errors(error.messages)) from None
    return interpret_documents(loaded, ruleset=current_ruleset(), indexed=True)


@lru_cache(maxsize=8)
def _fhir_servers(setting: str) -> dict[str, frozenset[str]]:
    return parse_fhir_servers(setting)


def _fhir_access() -> FhirAccess:
    """What this caller may fetch: its allowlisted FHIR servers (CDS_FHIR_SERVERS) and the caps."""
    config = current_app.config
    allowed = allowed_for(_fhir_servers(config.get("CDS_FHIR_SERVERS") or ""), [current_principal().id])
    return FhirAccess(
        allowed=allowed,
        private_networks=parse_private_networks(config.get("CDS_FHIR_PRIVATE_NETWORKS")),
        timeout=float(config.get("CDS_FHIR_TIMEOUT") or 3),
        max_bytes=int(config.get("CDS_FHIR_MAX_BYTES") or DEFAULT_MAX_BYTES),
        log=current_app.logger.warning,
    )


def _is_stored(patient_id: str) -> bool:
    """Whether the record of results has this patient (the dashboard's page exists): a link to a page that
    answers 404 is worse than none."""
    with current_database().session() as session:
        return patient_record(session, patient_id) is not None


def _dashboard_links(patient_id: str) -> list[dict[str, str]]:
    return [dashboard_link_for(_base_url(), patient_id)] if _is_stored(patient_id) else []


def _base_url() -> str:
    """PUBLIC_BASE_URL when configured (behind a proxy), else the URL the client called."""
    return (current_app.config.get("PUBLIC_BASE_URL") or request.host_url).rstrip("/")


def _feedback_path() -> str:
    return current_app.config.get("CDS_FEEDBACK_FILE") or os.path.join(current_app.instance_path, FEEDBACK_FILE)


def _append_feedback(service: CdsService, records: list[dict[str, Any]]) -> None:
    path = _feedback_path()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    received = datetime.now(UTC).isoformat(timespec="seconds")
    lines = "".join(json.dumps({"received": received, "service": service.id, **record}) + "\n" for record in records)
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # gunicorn workers append to the same file
        handle.write(lines)
    current_app.logger.info(
        "CDS feedback for %s: %s", service.id, ", ".join(f"{record['card']} {record['outcome']}" for record in records)
    )


@bp.errorhandler(HTTPException)
def _json_error(error: HTTPException) -> ResponseReturnValue:
    status = error.code or 500
    if isinstance(error, Problem):
        return problem_response(status, error.detail, error.errors, title=error.title, type_uri=error.type_uri)
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    return problem_response(status, error.description or "", headers=headers)


@bp.errorhandler(BadHookRequest)
def _bad_request(error: BadHookRequest) -> ResponseReturnValue:
    return problem_response(400, f"The CDS Hooks request is malformed: {error.detail}", error.errors)


@bp.after_request
def _allow_any_origin(response):
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    return response


def register(app: Flask) -> None:
    """The blueprint; a malformed FHIR server allowlist or network list stops the app, naming the setting."""
    _fhir_servers(app.config.get("CDS_FHIR_SERVERS") or "")
    parse_private_networks(app.config.get("CDS_FHIR_PRIVATE_NETWORKS"))
    app.register_blueprint(bp)
