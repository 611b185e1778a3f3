"""HTTP API: flask-smorest blueprints, the OpenAPI document and the Swagger UI."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from labservice.api.openapi_conventions import document_conventions
from labservice.api.schemas import ProblemSchema
from labservice.errors import handle_http_exception
from labservice.middleware.auth import document_security
from labservice.middleware.idempotency import document_idempotency


class LabserviceApi(Api):
    """flask-smorest's Api with labservice's one error shape (RFC 9457 problem+json)."""

    ERROR_SCHEMA = ProblemSchema
    #: Error responses are documented per operation, with their problem+json media type.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error):
        return handle_http_exception(error)


def register_api(app: Flask) -> LabserviceApi:
    """Create the Api (OpenAPI document, Swagger UI) and register every blueprint with it."""
    from labservice.api import (
        audit,
        batches,
        fhir,
        health,
        hl7v2,
        interpretations,
        patients,
        referrals,
        ruleset,
        swagger_assets,
    )

    api = LabserviceApi(app)
    document_security(api)  # bearerAuth, and each operation's scopes (labservice.middleware.auth)
    document_idempotency(api)  # the Idempotency-Key header (labservice.middleware.idempotency)
    document_conventions(api)  # operationId, servers, the store parameter (labservice.api.openapi_conventions)
    swagger_assets.register(app)
    interpretations.register(api, app)
    batches.register(api, app)
    fhir.register(api, app)
    hl7v2.register(api, app)
    referrals.register(api, app)
    patients.register(api, app)
    ruleset.register(api, app)
    health.register(api, app)
    audit.register(api, app)
    return api
