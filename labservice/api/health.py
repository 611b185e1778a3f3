"""GET /healthz: the service is up and which ruleset it answers with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask
from flask_smorest import Blueprint

from labservice.api import current_ruleset
from labservice.api.schemas import HealthSchema

if TYPE_CHECKING:
    from flask_smorest import Api

blp = Blueprint("health", __name__, description="Liveness and ruleset version.")


@blp.route("/healthz", methods=["GET"])
@blp.response(200, HealthSchema)
def healthz() -> dict[str, str]:
    """Report that the service is up and the version of its rule tables"""
    return {"status": "ok", "ruleset_version": current_ruleset().version}


def register(api: Api, app: Flask) -> None:
    api.register_blueprint(blp)
