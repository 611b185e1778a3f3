"""GET /healthz: the service is up, its version, whether its database answers, and which ruleset it answers with.

No authentication: a load balancer or an orchestrator polls it. It answers 503 (with Retry-After) while the
database does not answer, so traffic can be sent elsewhere; the service reconnects by itself when it returns.
"""

from __future__ import annotations

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


def register(api: Api, app: Flask) -> None:
    api.register_blueprint(blp)
