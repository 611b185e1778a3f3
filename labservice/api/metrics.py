"""GET /metrics: Prometheus metrics (labservice.serving.metrics) for a key with the `metrics` scope.

A plain blueprint, outside the OpenAPI document: its format is Prometheus' text exposition format. It needs
an API key with the `metrics` scope (`labservice create-key --name prometheus --scopes metrics`), which can
read nothing else: a scraper gets no patient data, and a patient-data key is not needed to scrape. Prometheus
sends it as `authorization: {credentials_file: ...}` in its scrape configuration.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response
from flask.typing import ResponseReturnValue

from labservice.extensions import current_ruleset
from labservice.serving.metrics import render

bp = Blueprint("metrics", __name__)


@bp.route("/metrics", methods=["GET"])
def metrics() -> ResponseReturnValue:
    text, content_type = render(current_ruleset().version)
    return Response(text, content_type=content_type, headers={"Cache-Control": "no-store"})


def register(app: Flask) -> None:
    app.register_blueprint(bp)
