"""RFC 9457 problem details for every error under /api: one shape, one content type.

Every error answer under ``/api`` is ``application/problem+json`` with ``type``, ``title``,
``status``, ``detail`` and ``errors`` (field path -> messages; empty when no field is to blame).
Outside ``/api`` (``/healthz``, future HTML pages) Flask's own error pages are kept.

When the database cannot be reached (or stops answering mid-request), whatever raised it (a view, an
authentication or audit hook), the answer is 503 with ``Retry-After``: problem+json under ``/api`` and
``/cds-services``, a short text elsewhere. The engine reconnects by itself when the database returns
(``labservice.store.database``), so no restart is needed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, cast

from flask import Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

PROBLEM_CONTENT_TYPE = "application/problem+json"
API_PREFIX = "/api"
CDS_PREFIX = "/cds-services"
#: Seconds a client is asked to wait (Retry-After) when the database does not answer.
DATABASE_RETRY_AFTER = 5
#: Field path used when the error concerns the body as a whole rather than one field.
BODY_PATH = "body"


class Problem(HTTPException):
    """An HTTP error that carries RFC 9457 members; raise it from views, the handler renders it."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: Mapping[str, list[str]] | None = None,
        *,
        title: str | None = None,
        type_uri: str = "about:blank",
    ) -> None:
        super().__init__(description=detail)
        self.code = status
        self.detail = detail
        self.errors = dict(errors or {})
        self.title = title or HTTPStatus(status).phrase
        self.type_uri = type_uri


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn marshmallow's nested error dict into ``{"3.results.platelets.unit": [...]}``.

    List indexes become path segments; marshmallow's ``_schema`` (an error about the object
    itself) becomes the object's own path, or ``body`` at the top.
    """
    out: dict[str, list[str]] = {}
    _flatten_into(out, messages, prefix)
    return out


def _flatten_into(out: dict[str, list[str]], messages: Any, prefix: str) -> None:
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            key = str(key)
            if key == "_schema":  # an error about the object itself
                path = prefix
            elif prefix:
                path = f"{prefix}.{key}"
            else:
                path = key
            _flatten_into(out, value, path)
    elif isinstance(messages, list | tuple):
        for item in messages:
            _flatten_into(out, item, prefix)
    else:
        out.setdefault(prefix or BODY_PATH, []).append(str(messages))


def first_error(errors: Mapping[str, list[str]]) -> str:
    """'path: message' of the first error, and how many more there are: how a problem's detail sums up its
    `errors`."""
    if not errors:
        return "see errors."
    path, messages = next(iter(errors.items()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path}: {messages[0]}{more}"


def problem_response(
    status: int,
    detail: str,
    errors: Mapping[str, list[str]] | None = None,
    *,
    title: str | None = None,
    type_uri: str = "about:blank",
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Build an ``application/problem+json`` response."""
    body = {
        "type": type_uri,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "errors": dict(errors or {}),
    }
    # cast: flask annotates JSONProvider.response with werkzeug's sansio base class, but it builds the
    # app's response_class (a flask Response), which is what the callers' hooks return.
    response = cast(Response, current_app.json.response(body))
    response.status_code = status
    response.content_type = PROBLEM_CONTENT_TYPE
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _is_api_request() -> bool:
    path = request.path
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def handle_http_exception(error: HTTPException) -> ResponseReturnValue:
    """Render any HTTPException under /api as problem+json; elsewhere keep Flask's page."""
    if not _is_api_request():
        return error
    status = error.code or 500
    if isinstance(error, Problem):
        return problem_response(status, error.detail, error.errors, title=error.title, type_uri=error.type_uri)
    # Keep headers such as Allow (405) but not the HTML content type.
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    errors: dict[str, list[str]] = {}
    data = getattr(error, "data", None)  # webargs / flask-smorest abort(..., errors=...)
    if isinstance(data, Mapping):
        raw = data.get("errors", data.get("messages"))
        if raw:
            errors = flatten_errors(raw)
    detail = error.description or HTTPStatus(status).phrase
    if isinstance(error, RequestEntityTooLarge) and current_app.config.get("MAX_CONTENT_LENGTH"):
        detail = f"The body is larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes."
    elif isinstance(error, InternalServerError):
        detail = "The server could not answer this request; the error has been logged."
    return problem_response(status, detail, errors, headers=headers)


def database_unavailable_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean the database is unreachable or stopped answering (not a bug in a query).

    SQLAlchemy wraps driver errors (OperationalError, InterfaceError), raises DisconnectionError from the
    pool and TimeoutError when no pooled connection frees up; the drivers' own classes are listed too for
    code that talks to them directly."""
    errors: list[type[Exception]] = [
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.DisconnectionError,
        sa_exc.TimeoutError,
        sqlite3.OperationalError,
        sqlite3.InterfaceError,
    ]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is installed with the project
        pass
    else:
        errors += [psycopg.OperationalError, psycopg.InterfaceError]
    return tuple(errors)


def handle_database_unavailable(error: BaseException) -> ResponseReturnValue:
    """503 with Retry-After; the log names the error class only (a statement's parameters may hold patient data)."""
    original = getattr(error, "orig", None)
    current_app.logger.warning(
        "database unavailable (%s%s) on %s %s",
        type(error).__name__,
        f" from {type(original).__name__}" if original is not None else "",
        request.method,
        request.url_rule.rule if request.url_rule else "(no route)",
    )
    detail = "The database is not answering. Try again shortly (a retry stores nothing twice)."
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER)}
    path = request.path
    if _is_api_request() or path == CDS_PREFIX or path.startswith(CDS_PREFIX + "/"):
        return problem_response(503, detail, title="Service Unavailable", headers=headers)
    response = current_app.response_class(detail + "\n", status=503, mimetype="text/plain")
    response.headers.update(headers)
    return response


def register_error_handlers(app: Flask) -> None:
    """Make problem+json the one error shape under /api (this replaces flask-smorest's handler), and answer
    503 when the database does not answer."""
    app.register_error_handler(HTTPException, handle_http_exception)
    for error in database_unavailable_errors():
        app.register_error_handler(error, handle_database_unavailable)
