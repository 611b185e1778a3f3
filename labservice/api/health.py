"""Health probes for load balancers and orchestrators; no authentication, no rate limit.

- `GET /healthz`: the service is up, its version, whether its database answers, and which ruleset it answers
  with. 503 (with Retry-After) while the database does not answer, so traffic can be sent elsewhere; the
  service reconnects by itself when it returns.
- `GET /livez` (Kubernetes' liveness probe): the process answers requests. It touches nothing else, so a
  database outage never gets a healthy process restarted.
- `GET /readyz` (readiness): whether this instance can do its work now: the database answers, and so does
  the job queue where batch jobs wait. 503 with Retry-After and the part that does not answer otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint
from marshmallow import fields

from labservice import __version__
from labservice.api.schemas import HealthSchema
from labservice.errors import DATABASE_RETRY_AFTER
from labservice.extensions import current_database, current_ruleset

if TYPE_CHECKING:
    from flask_smorest import Api

blp = Blueprint("health", __name__, description="Liveness, the database and the ruleset version.")


class HealthStatusSchema(HealthSchema):
    version = fields.String(metadata={"example": __version__, "description": "The version of labservice answering"})
    status = fields.String(
        metadata={
            "enum": ["ok", "unavailable"],
            "example": "ok",
            "description": "ok when the service and its database answer",
        }
    )
    database = fields.String(
        metadata={
            "enum": ["ok", "unavailable"],
            "example": "ok",
            "description": "Whether the database answered a trivial query just now",
        }
    )


@blp.route("/healthz", methods=["GET"])
@blp.response(200, HealthStatusSchema, description="The service and its database answer.")
@blp.alt_response(
    503,
    schema=HealthStatusSchema,
    success=True,
    description="The database does not answer (Retry-After says when to ask again).",
)
def healthz() -> ResponseReturnValue:
    """Report that the service is up, whether its database answers, and the version of its rule tables"""
    answers = current_database().answers()
    body: dict[str, Any] = {
        "status": "ok" if answers else "unavailable",
        "ruleset_version": current_ruleset().version,
        "version": __version__,
        "database": "ok" if answers else "unavailable",
    }
    if answers:
        return body
    response = current_app.json.response(body)
    response.status_code = 503
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response


class LiveSchema(HealthSchema):
    status = fields.String(metadata={"enum": ["ok"], "example": "ok", "description": "Always ok: the process answers"})
    version = fields.String(metadata={"example": __version__, "description": "The version of labservice answering"})


class ReadySchema(HealthStatusSchema):
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={
            "example": {"database": "ok"},
            "description": "Each part the service needs, `ok` or `unavailable`: the database, and the job queue "
            "when batch jobs are served",
        },
    )


@blp.route("/livez", methods=["GET"])
@blp.response(200, LiveSchema, description="The process answers requests.")
def livez() -> ResponseReturnValue:
    """Report that the process answers (a liveness probe: it reads no database)"""
    return {"status": "ok", "ruleset_version": current_ruleset().version, "version": __version__}


READINESS = "labservice.readiness_checks"


def add_readiness_check(app: Flask, name: str, answers: Callable[[], bool]) -> None:
    """Make /readyz ask `answers()` too, under `name` (the job queue registers itself here)."""
    app.extensions.setdefault(READINESS, {})[name] = answers


@blp.route("/readyz", methods=["GET"])
@blp.response(200, ReadySchema, description="Every part the service needs answers.")
@blp.alt_response(
    503,
    schema=ReadySchema,
    success=True,
    description="A part does not answer (`checks` names it; Retry-After says when to ask again).",
)
def readyz() -> ResponseReturnValue:
    """Report whether this instance can do its work now: its database and its job queue answer"""
    parts = {"database": current_database().answers, **current_app.extensions.get(READINESS, {})}
    checks = {name: "ok" if _answers(check) else "unavailable" for name, check in parts.items()}
    ready = all(value == "ok" for value in checks.values())
    body: dict[str, Any] = {
        "status": "ok" if ready else "unavailable",
        "ruleset_version": current_ruleset().version,
        "version": __version__,
        "database": checks["database"],
        "checks": checks,
    }
    if ready:
        return body
    response = current_app.json.response(body)
    response.status_code = 503
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response


def _answers(check: Any) -> bool:
    try:
        return bool(check())
    except Exception:  # a check that fails is a part that does not answer, never a 500 from a probe
        return False


def register(api: Api, app: Flask) -> None:
    api.register_blueprint(blp)
