"""Swagger UI's JavaScript and CSS served by the service itself (from the swagger-ui-bundle
package), so the interactive documentation works on a closed hospital network."""

from __future__ import annotations

from flask import Blueprint, Flask
from swagger_ui_bundle import swagger_ui_path

ASSETS_URL = "/api/docs/assets/"


def register(app: Flask) -> None:
    blueprint = Blueprint("swagger_assets", __name__, static_folder=swagger_ui_path, static_url_path="")
    app.register_blueprint(blueprint, url_prefix=ASSETS_URL.rstrip("/"))
