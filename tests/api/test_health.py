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


# --- issue 14 item 4: liveness and readiness beside /healthz ----------------------------------------


def test_livez_answers_without_a_key_and_reads_no_database(client, app):
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"
    assert "database" not in response.get_json()  # a liveness probe must not depend on the database


def test_readyz_says_each_part_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["checks"]["database"] == "ok"


def test_readyz_is_503_naming_the_part_that_does_not_answer(make_app):
    """A part registered with add_readiness_check that cannot be reached (a real Redis client to a closed
    port) makes the instance not ready, named, with Retry-After; a probe never answers 500."""
    import redis

    from labservice.api.health import add_readiness_check

    app = make_app()
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    add_readiness_check(app, "job_queue", unreachable.ping)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"] == {"database": "ok", "job_queue": "unavailable"}
    assert app.test_client().get("/livez").status_code == 200  # alive all the same: not to be restarted


def test_probes_are_not_rate_limited(make_app):
    app = make_app(RATE_LIMIT="2/minute")
    client = app.test_client()
    assert [client.get(path).status_code for path in ["/livez", "/readyz"] * 5] == [200] * 10
