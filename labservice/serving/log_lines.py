"""Structured JSON logs with a request id, and no patient data in them.

- Every request gets an id: the client's `X-Request-ID` when it is a sane token (letters, digits and
  `._:-`, at most 64 characters), else a new one. It is echoed on the response and written in every log
  line of the request and in its audit rows.
- One JSON line per request on the `labservice.access` logger: time, level, request_id, method, the
  route *template* (`GET /api/v1/patients/<path:patient_id>/results`: never the path, which can hold a
  patient id, and never the query string or the body), status, duration_ms, principal, remote_addr.
- Application records are JSON lines too (`JsonFormatter`). An exception is logged with its type and
  the frames it passed through (file, line, function), never its message, which can quote input values.
- Flask's own "Exception on /path [GET]" line (it names the path) is replaced by one naming the route.

Handlers are installed by whoever runs the service, not by `create_app`: `gunicorn.conf.py` (through
`gunicorn_logconfig()`), `labservice mllp`, or `configure_logging()` for any other server.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask, g, has_request_context, request
from flask.logging import default_handler

REQUEST_ID_HEADER = "X-Request-ID"
#: A client's request id is kept only when it looks like an id (it ends up in logs and audit rows).
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
ACCESS_LOGGER = "labservice.access"
access_log = logging.getLogger(ACCESS_LOGGER)
log = logging.getLogger("labservice.app")
#: Shown instead of a route when the URL matched none (a 404): the path itself may hold a patient id.
NO_ROUTE = "<no route>"


# --- per request ------------------------------------------------------------------------------------


def request_id() -> str:
    """This request's id (made on first use; outside a request, a fresh one)."""
    if not has_request_context():
        return uuid.uuid4().hex
    current = g.get("request_id")
    if current is None:
        sent = request.headers.get(REQUEST_ID_HEADER, "")
        current = sent if SANE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        g.request_id = current
    return current


def route() -> str:
    """'METHOD /url/<rule>' of this request: the URL rule, never the path as sent."""
    rule = request.url_rule.rule if request.url_rule is not None else NO_ROUTE
    return f"{request.method} {rule}"


def _principal_id() -> str:
    from labservice.security.principal import current_principal

    return current_principal().id


def _begin() -> None:
    g.started_at = time.perf_counter()
    request_id()


def _finish(response):
    response.headers[REQUEST_ID_HEADER] = request_id()
    _log_request(response.status_code)
    return response


def _log_request(status: int) -> None:
    if g.get("request_logged"):
        return
    g.request_logged = True
    request.environ[ROUTE_ENVIRON] = route()  # for gunicorn's access log, if enabled (GUNICORN_ACCESS_FORMAT)
    from labservice.security.remote import remote_address

    started = g.get("started_at")
    duration = (time.perf_counter() - started) * 1000 if started is not None else None
    from labservice.serving.metrics import observe_request  # imported late: see labservice.serving.gunicorn_conf

    rule = request.url_rule.rule if request.url_rule is not None else NO_ROUTE
    observe_request(request.method, rule, status, None if duration is None else duration / 1000)
    level = logging.WARNING if status >= 500 else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    access_log.log(
        level,
        "request",
        extra={
            "fields": {
                "method": request.method,
                "route": rule,
                "status": status,
                "duration_ms": None if duration is None else round(duration, 2),
                "principal": _principal_id(),
                "remote_addr": remote_address(),
            }
        },
    )


def _teardown(error: BaseException | None) -> None:
    """A request whose after_request never ran (an error in another hook) is still logged, as a 500."""
    if g.get("started_at") is not None and not g.get("request_logged"):  # not a test's bare request context
        _log_request(500)


def _log_exception(app: Flask, exc_info: Any) -> None:
    """Flask's log_exception without the path (it can hold a patient id): the route and the traceback."""
    app.logger.error("unhandled exception in %s", route() if has_request_context() else "no request", exc_info=exc_info)


def register_logging(app: Flask) -> None:
    """Request ids, one JSON access line per request, and exceptions logged without the path.

    Register it before the other security hooks: its after_request then runs last and logs the final status.
    """
    app.before_request(_begin)
    app.after_request(_finish)
    app.teardown_request(_teardown)
    app.logger.removeHandler(default_handler)  # records go to the handlers the runner configured
    app.log_exception = _log_exception.__get__(app)  # type: ignore[method-assign]


# --- formatting ---------------------------------------------------------------------------------------


def _frames(exc_info: Any) -> dict[str, Any]:
    kind, _value, tb = exc_info
    frames = [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in traceback.extract_tb(tb)]
    return {"type": f"{kind.__module__}.{kind.__qualname__}" if kind else None, "frames": frames[-30:]}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id and the record's `fields`.

    Exceptions keep their type and frames but not their message (it can quote what a client sent).
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid is None and has_request_context():
            rid = g.get("request_id")
        if rid is not None:
            out["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            out.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = _frames(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class NoUrlFilter(logging.Filter):
    """gunicorn's 'Error handling request /path' names the path: keep the record, drop the path."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Error handling request") and record.args:
            record.msg, record.args = "Error handling request (path not logged)", ()
        return True


HANDLER_NAME = "labservice-json"


def configure_logging(level: str | int = "INFO", stream: Any = None) -> logging.Handler:
    """JSON lines on stderr (or `stream`) for every logger, at `level`; calling it again replaces the handler."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(NoUrlFilter())
    root.addHandler(handler)
    root.setLevel(_level(level))
    _quiet_libraries()
    return handler


def _level(level: str | int) -> int:
    return level if isinstance(level, int) else logging.getLevelName(str(level).upper())


def _quiet_libraries() -> None:
    # werkzeug's development server logs every request line with its URL; alembic is chatty at start-up
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


#: The WSGI environ key where the app leaves 'METHOD /route/<template>' for gunicorn's access log.
ROUTE_ENVIRON = "labservice.route"
#: gunicorn's access log format if someone enables it: the route template the app left in the environ (never the
#: request line, path, query or referrer, which can hold patient ids; gunicorn prints "-" for a request the app
#: never saw).
GUNICORN_ACCESS_FORMAT = '%(h)s "%({labservice.route}e)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'


def gunicorn_logconfig() -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: JSON lines on stderr for gunicorn and the app; gunicorn's own access
    log off (the app writes one line per request, with the route rather than the URL)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"no_url": {"()": NoUrlFilter}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["no_url"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": "INFO", "handlers": ["json"]},
        "loggers": {
            "gunicorn.error": {"handlers": [], "propagate": True},  # its level: gunicorn's --log-level
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            "werkzeug": {"level": "WARNING"},
            "alembic": {"level": "WARNING"},
        },
    }


def enable_access_log(destination: str | None) -> None:
    """gunicorn's access log, when asked for (--access-logfile): JSON lines in GUNICORN_ACCESS_FORMAT."""
    if not destination:
        return
    handler: logging.Handler = (
        logging.StreamHandler(sys.stdout) if destination == "-" else logging.FileHandler(destination)
    )
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("gunicorn.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)


def apply_log_level(level: str) -> None:
    """gunicorn's --log-level for the service's loggers too (`--log-level warning` silences request lines)."""
    number = _level(level)
    for name in ("", "gunicorn.error", "labservice"):
        logging.getLogger(name).setLevel(number)
