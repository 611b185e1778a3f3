"""GET /healthz reports liveness and the ruleset version."""

from __future__ import annotations

from importlib import metadata

from labservice.core.ruleset import load_ruleset


def test_healthz_reports_ok_and_the_ruleset_version(client, app):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["ruleset_version"] == load_ruleset(app.config["REFERENCE_RANGES"]).version


def test_healthz_reports_the_installed_version(client):
    assert client.get("/healthz").get_json()["version"] == metadata.version("labservice")
