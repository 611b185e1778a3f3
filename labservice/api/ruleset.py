"""GET /api/v1/ruleset: the rule tables the service applies, with their sources."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask
from flask_smorest import Blueprint

from labservice.api.schemas import RulesetSchema
from labservice.core.ruleset_document import ruleset_document
from labservice.extensions import current_ruleset

if TYPE_CHECKING:
    from flask_smorest import Api

blp = Blueprint(
    "ruleset",
    __name__,
    url_prefix="/api/v1",
    description="The thresholds, grades, cut-offs and reference ranges in use, with sources.",
)


@blp.route("/ruleset", methods=["GET"])
@blp.response(200, RulesetSchema)
def get_ruleset() -> dict:
    """Every rule the engine applies, with its source (the tables of reference_ranges/)"""
    rs = current_ruleset()
    key = "ruleset_document"
    if key not in rs._cache:
        rs._cache[key] = ruleset_document(rs)
    return rs._cache[key]


def register(api: Api, app: Flask) -> None:
    api.register_blueprint(blp)
