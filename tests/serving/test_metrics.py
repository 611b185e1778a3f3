"""Issue 14 item 4: Prometheus metrics at /metrics (labservice.serving.metrics), for a key with the metrics
scope: request counts and latency histograms by route template, shed requests, the rule-set version; under
gunicorn, the sum over every worker."""

from __future__ import annotations

import io
import re
import urllib.request
import uuid

import pytest
from flask.testing import FlaskClient

from labservice.core.ruleset import load_ruleset
from tests.api.helpers import assert_problem
from tests.security.audit_support import bearer_client, new_key, seed_database, start_gunicorn


def _samples(text: str, name: str) -> dict[str, float]:
    """{'label text': value} for every sample of this metric name."""
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(\{{.*\}})? (\S+)", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


def test_metrics_need_the_metrics_scope_and_no_other_key_reads_them(make_app):
    app = make_app()
    assert_problem(FlaskClient(app, app.response_class).get("/metrics"), 401)  # no key
    assert_problem(bearer_client(app, new_key(app, "read", "interpret")).get("/metrics"), 403)
    scraper = bearer_client(app, new_key(app, "metrics"))
    assert scraper.get("/metrics").status_code == 200
    assert_problem(scraper.get("/api/v1/referrals"), 403)  # a scraper's key reads no patient data
    assert bearer_client(app, new_key(app, "admin")).get("/metrics").status_code == 200


def test_requests_are_counted_and_timed_by_route_template_never_by_path(make_app):
    app = make_app()
    reader = bearer_client(app, new_key(app, "read"))
    for patient in ("MRN-SECRET-1", "MRN-SECRET-2", "MRN-SECRET-3"):
        reader.get(f"/api/v1/patients/{patient}/results")
    response = bearer_client(app, new_key(app, "metrics")).get("/metrics")
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert "MRN-SECRET" not in text
    route = "/api/v1/patients/<path:patient_id>/results"
    counts = _samples(text, "labservice_http_requests_total")
    ours = {labels: value for labels, value in counts.items() if f'route="{route}"' in labels}
    assert sum(ours.values()) >= 3  # the fixture's app is per test, the counter per process: at least ours
    histogram = _samples(text, "labservice_http_request_duration_seconds_count")
    assert any(f'route="{route}"' in labels and value >= 3 for labels, value in histogram.items())


def test_the_ruleset_version_and_shed_requests_are_exposed(make_app):
    app = make_app()
    text = bearer_client(app, new_key(app, "metrics")).get("/metrics").get_data(as_text=True)
    version = load_ruleset(app.config["REFERENCE_RANGES"]).version
    assert _samples(text, "labservice_ruleset_info") == {f'{{version="{version}"}}': 1.0}
    assert "labservice_shed_requests_total" in text


def test_the_job_queue_depth_is_a_gauge_and_readyz_checks_the_queue(make_app, tmp_path):
    """Issue 14 item 4, "job queue depth": uploads waiting in the (real, SQLite) queue for a worker are counted at
    scrape time, and /readyz names the job queue among the parts it checks."""
    app = make_app(
        JOB_QUEUE=f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        JOB_QUEUE_NAME=f"test-{uuid.uuid4().hex[:8]}",
        INSTANCE_PATH=str(tmp_path / "instance"),
    )
    scraper = bearer_client(app, new_key(app, "metrics"))
    assert _samples(scraper.get("/metrics").get_data(as_text=True), "labservice_batch_jobs_waiting") == {"": 0.0}
    uploader = bearer_client(app, new_key(app, "interpret", "read"))
    for n in range(2):  # two different files: two jobs, and no worker runs them
        data = f"patient_id,collected_at,PLT\nP-Q{n},2026-11-20T08:00:00Z,{100 + n}\n".encode()
        answer = uploader.post(
            "/api/v1/batches", data={"file": (io.BytesIO(data), f"cbc{n}.csv")}, content_type="multipart/form-data"
        )
        assert answer.status_code == 202, answer.get_data(as_text=True)
    assert _samples(scraper.get("/metrics").get_data(as_text=True), "labservice_batch_jobs_waiting") == {"": 2.0}
    ready = app.test_client().get("/readyz").get_json()
    assert ready["checks"] == {"database": "ok", "job_queue": "ok"}


@pytest.mark.slow
def test_under_gunicorn_a_scrape_sums_every_worker(tmp_path):
    """2 workers each count what they serve in prometheus-client's multiprocess files; a scrape (answered by
    either worker) must report every request exactly once."""
    url, token = seed_database(tmp_path)
    server, port, _, _ = start_gunicorn(tmp_path, url)
    try:

        def get(path: str) -> bytes:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.read()

        for _ in range(40):
            get("/api/v1/ruleset")
        for _ in range(3):  # whichever worker answers the scrape, the sum is the same
            text = get("/metrics").decode()
            counts = _samples(text, "labservice_http_requests_total")
            ruleset = sum(v for labels, v in counts.items() if 'route="/api/v1/ruleset"' in labels)
            assert ruleset == 40
    finally:
        server.terminate()
        server.wait(timeout=30)
