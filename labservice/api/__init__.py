"""HTTP API: flask-smorest blueprints, the OpenAPI document and the Swagger UI."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from flask import Flask, current_app
from flask_smorest import Api

from labservice.api.schemas import ProblemSchema
from labservice.errors import handle_http_exception
from labservice.security.auth import document_security
from labservice.security.idempotency import document_idempotency

if TYPE_CHECKING:
    from labservice.core.ruleset import Ruleset
    from labservice.store.database import Database

RULESET_EXTENSION = "labservice.ruleset"


class LabserviceApi(Api):
    """flask-smorest's Api with labservice's one error shape (RFC 9457 problem+json)."""

    ERROR_SCHEMA = ProblemSchema
    #: Error responses are documented per operation, with their problem+json media type.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error):
        return handle_http_exception(error)


def current_ruleset() -> Ruleset:
    """The ruleset loaded when the app was created."""
    return current_app.extensions[RULESET_EXTENSION]


def current_clock_skew() -> timedelta:
    """How far ahead of the service's clock a collection time may be (CLOCK_SKEW_SECONDS)."""
    return timedelta(seconds=current_app.config["CLOCK_SKEW_SECONDS"])


def current_database() -> Database:
    """The database connected when the app was created."""
    return current_app.extensions["labservice.database"]


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
    document_security(api)  # bearerAuth, and each operation's scopes (labservice.security.auth)
    document_idempotency(api)  # the Idempotency-Key header (labservice.security.idempotency)
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
