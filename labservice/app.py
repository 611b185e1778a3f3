"""Application factory: create_app() reads as the table of contents of the service."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from labservice.api import register_api
from labservice.api.cds_services import register as register_cds_services
from labservice.api.metrics import register as register_metrics
from labservice.api.openapi_conventions import document_cds_hooks
from labservice.config import instance_path, load_settings
from labservice.core.ruleset import load_ruleset
from labservice.dashboard import register_dashboard
from labservice.errors import register_error_handlers
from labservice.extensions import DATABASE_EXTENSION, RULESET_EXTENSION
from labservice.middleware.audit_trail import register_audit
from labservice.middleware.auth import register_auth
from labservice.middleware.headers import register_security_headers
from labservice.middleware.idempotency import register_idempotency
from labservice.middleware.ratelimit import register_rate_limits
from labservice.middleware.text_input import register_text_input
from labservice.serving.log_lines import register_logging
from labservice.serving.queue_time import QueueTimeEdge
from labservice.store.database import Database, database_url, migrate_if_it_answers


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app; a malformed rule table stops it here, naming the file and line."""
    settings = {**load_settings(), **(config or {})}
    # The instance folder comes from the settings (INSTANCE_PATH, else ./instance), as for the commands: Flask's
    # own guess is the checkout in an editable install but <venv>/var/... in a wheel install.
    app = Flask(__name__, instance_path=str(instance_path(settings)), instance_relative_config=True)
    register_config(app, config)
    register_request_edges(app)
    register_json(app)
    register_ruleset(app)
    register_database(app)
    register_auth(app)
    register_text_input(app)  # after authentication: a caller without credentials is answered 401 first
    api = register_api(app)
    register_dashboard(app)
    register_cds_services(app)
    register_metrics(app)  # GET /metrics (Prometheus), for a key with the metrics scope
    document_cds_hooks(api, app)  # the CDS Hooks endpoints in the OpenAPI document, by reference to their spec
    register_idempotency(app)  # wraps the views that store, so after every blueprint
    register_error_handlers(app)
    register_rate_limits(app)  # after authentication: limits are per caller
    register_load_shedding(app)
    return app


def register_config(app: Flask, config: Mapping[str, Any] | None) -> None:
    """Typed defaults, then LABSERVICE_* environment variables, then the caller's mapping."""
    app.config.from_mapping(load_settings())
    if config:
        app.config.from_mapping(config)
    app.config["INSTANCE_PATH"] = app.instance_path
    if not app.config.get("BATCH_DIRECTORY"):
        app.config["BATCH_DIRECTORY"] = os.path.join(app.instance_path, "batches")


def register_request_edges(app: Flask) -> None:
    """Request ids and JSON request logs (labservice.serving), security headers, the audit trail
    (labservice.middleware). Their after_request hooks run in reverse: audit rows first (a 503 if they cannot
    be written), then headers, then the log line with the final status."""
    register_logging(app)
    register_security_headers(app)
    register_audit(app)


def register_json(app: Flask) -> None:
    """Keep answer fields in the order the service builds them (the contract's order)."""
    app.json.sort_keys = False  # type: ignore[attr-defined]


def register_database(app: Flask) -> None:
    """Connect to the database (SQLite in instance/ unless DATABASE_URL says otherwise) and, with
    AUTO_MIGRATE, bring it to the newest schema first (under a file lock: workers start together)."""
    url = database_url(app.config.get("DATABASE_URL"), app.instance_path)
    app.config["DATABASE_URL"] = url
    if app.config.get("AUTO_MIGRATE", True):
        os.makedirs(app.instance_path, exist_ok=True)
        with open(os.path.join(app.instance_path, ".migrate.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            migrate_if_it_answers(url, connect_timeout=app.config["DATABASE_CONNECT_TIMEOUT"])
    app.extensions[DATABASE_EXTENSION] = Database.connect(
        url, connect_timeout=app.config["DATABASE_CONNECT_TIMEOUT"], busy_timeout=app.config["DATABASE_BUSY_TIMEOUT"]
    )


def register_ruleset(app: Flask) -> None:
    """Load and validate the rule tables once, at startup (raises RulesetError with file:line)."""
    app.extensions[RULESET_EXTENSION] = load_ruleset(app.config["REFERENCE_RANGES"])


def register_load_shedding(app: Flask) -> None:
    """Outermost WSGI wrapper: a request that waited longer than QUEUE_TIME_BUDGET_MS for a worker is answered
    503 with Retry-After before any other hook runs (no authentication, no database); it also takes the
    client's address from the front (labservice.serving.queue_time)."""
    app.wsgi_app = QueueTimeEdge(app.wsgi_app, app.config["QUEUE_TIME_BUDGET_MS"])  # type: ignore[method-assign]
