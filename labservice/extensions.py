"""The app's state and every `current_*` accessor, in one place.

`create_app` (and the blueprints' `register` helpers) put the objects built once at startup into
`app.extensions` under these keys; views, middleware and the MLLP listener read them back through the
accessors here. This module imports nothing from `labservice.api`, so the layers below the HTTP API
(the audit trail, the dashboard, the MLLP listener) reach the app's state without importing the API.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

if TYPE_CHECKING:
    from labservice.adapters.hl7v2.reader import ReadSettings
    from labservice.batch.results_store import BatchStore
    from labservice.core.ruleset import Ruleset
    from labservice.store.database import Database

RULESET_EXTENSION = "labservice.ruleset"
DATABASE_EXTENSION = "labservice.database"
STORE_EXTENSION = "labservice.batch_store"
SETTINGS_EXTENSION = "labservice.hl7v2"


def _app(app: Flask | None) -> Any:
    return current_app if app is None else app


def current_ruleset(app: Flask | None = None) -> Ruleset:
    """The ruleset loaded when the app was created."""
    return _app(app).extensions[RULESET_EXTENSION]


def current_database(app: Flask | None = None) -> Database:
    """The database connected when the app was created."""
    return _app(app).extensions[DATABASE_EXTENSION]


def current_store(app: Flask | None = None) -> BatchStore:
    """The batch store of this app (BATCH_DIRECTORY)."""
    return _app(app).extensions[STORE_EXTENSION]


def current_hl7v2_settings(app: Flask | None = None) -> ReadSettings:
    """How HL7 v2 messages are read (rule set, local-code map, time zone), read once at startup."""
    return _app(app).extensions[SETTINGS_EXTENSION]


def current_clock_skew(app: Flask | None = None) -> timedelta:
    """How far ahead of the service's clock a collection time may be (CLOCK_SKEW_SECONDS)."""
    return timedelta(seconds=_app(app).config["CLOCK_SKEW_SECONDS"])
