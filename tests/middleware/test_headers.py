"""Security headers on every response; a strict CSP on the dashboard; Swagger UI's own CSP; no-store; HSTS."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from labservice.middleware.headers import DASHBOARD_CSP, DEFAULT_CSP
from tests.security.audit_support import cbc, csv_upload, wide_csv

COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@pytest.fixture
def seeded(app, client):
    """One stored patient (with a referral) and one batch: (patient, referral id, batch id)."""
    answer = client.post("/api/v1/interpretations", json=cbc("MRN-HEAD")).get_json()
    batch = client.post("/api/v1/batches", data=csv_upload(wide_csv([("MRN-HEAD-B", 40)]))).get_json()
    return "MRN-HEAD", answer["stored"]["referral_id"], batch["batch_id"]


def every_kind_of_answer(client, anonymous_client, seeded) -> dict[str, object]:
    patient, referral, batch = seeded
    return {
        "json": client.get(f"/api/v1/patients/{patient}/results"),
        "referral": client.get(f"/api/v1/referrals/{referral}"),
        "batch csv": client.get(f"/api/v1/batches/{batch}/result.csv"),
        "batch json": client.get(f"/api/v1/batches/{batch}/result.json"),
        "problem 404": client.get("/api/v1/referrals/999999"),
        "problem 401": anonymous_client.get("/api/v1/referrals"),
        "problem 405": client.delete("/healthz"),
        "no route": client.get("/nowhere"),
        "healthz": client.get("/healthz"),
        "openapi": client.get("/api/v1/openapi.json"),
        "swagger ui": client.get("/api/docs"),
        "swagger asset": client.get("/api/docs/assets/swagger-ui.css"),
        "dashboard": client.get("/dashboard/"),
        "patient page": client.get(f"/dashboard/patients/{patient}"),
        "dashboard 404": client.get("/dashboard/patients/nobody"),
        "dashboard static": client.get("/dashboard/static/dashboard.css"),
        "sign-in page": anonymous_client.get("/dashboard/sign-in"),
        "redirect": client.get("/"),
        "cds discovery": client.get("/cds-services"),
        "cds error": client.post("/cds-services/cbc-review", data="x", content_type="text/plain"),
    }


def test_every_answer_carries_the_common_headers(client, anonymous_client, seeded):
    for name, response in every_kind_of_answer(client, anonymous_client, seeded).items():
        for header, value in COMMON.items():
            assert response.headers.get(header) == value, (name, header, response.headers.get(header))
        assert response.headers.get("Content-Security-Policy"), name


def test_answers_other_than_static_files_are_never_cached(client, anonymous_client, seeded):
    for name, response in every_kind_of_answer(client, anonymous_client, seeded).items():
        if "static" in name or "asset" in name:
            assert "no-store" not in response.headers.get("Cache-Control", ""), name
        else:
            assert response.headers.get("Cache-Control") == "no-store", (name, response.headers.get("Cache-Control"))


def test_the_dashboard_has_the_strict_policy_and_everything_else_runs_nothing(client, anonymous_client, seeded):
    answers = every_kind_of_answer(client, anonymous_client, seeded)
    assert DASHBOARD_CSP == (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    for name in ("dashboard", "patient page", "dashboard 404", "sign-in page", "redirect"):
        if name == "sign-in page" and answers[name].status_code == 404:
            continue  # the dashboard's sign-in comes with its own commit
        assert answers[name].headers["Content-Security-Policy"] == DASHBOARD_CSP, name
    for name in ("json", "referral", "batch csv", "problem 404", "problem 401", "openapi", "cds discovery"):
        assert answers[name].headers["Content-Security-Policy"] == DEFAULT_CSP, name


def test_dashboard_pages_have_no_inline_script_or_style(client, seeded):
    patient, referral, batch = seeded
    for url in (
        "/dashboard/",
        f"/dashboard/patients/{patient}",
        f"/dashboard/referrals/{referral}/status",
        "/dashboard/batches",
        f"/dashboard/batches/{batch}",
    ):
        html = client.get(url).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url  # every script is a file
        assert "<style" not in html and not re.search(r"\sstyle=", html), url
        assert not re.search(r"\son[a-z]+=", html), url  # no event handler attributes
        assert "javascript:" not in html, url


def test_swagger_ui_may_run_its_one_inline_script_by_hash(client):
    response = client.get("/api/docs")
    policy = response.headers["Content-Security-Policy"]
    html = response.get_data()
    [script] = re.findall(rb"<script>(.*?)</script>", html, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_batch_downloads_are_attachments_named_after_the_uploaded_file(client, seeded):
    """Issue 14 item 5: `results.csv` (the upload's name) downloads as `results.interpreted.csv` (RFC 6266)."""
    _, _, batch = seeded
    response = client.get(f"/api/v1/batches/{batch}/result.csv")
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"results.interpreted.csv\"; filename*=UTF-8''results.interpreted.csv"
    )
    assert response.headers["Cache-Control"] == "no-store"


# --- HSTS -----------------------------------------------------------------------------------------


def test_no_hsts_by_default_even_over_https(client):
    assert "Strict-Transport-Security" not in client.get("/healthz", base_url="https://localhost").headers


def test_hsts_over_https_when_configured(make_app):
    client = make_app(HSTS_SECONDS=31536000).test_client()
    assert (
        client.get("/healthz", base_url="https://localhost").headers["Strict-Transport-Security"] == "max-age=31536000"
    )
    assert "Strict-Transport-Security" not in client.get("/healthz").headers  # plain http: browsers ignore it


def test_a_trusted_proxy_may_say_the_client_used_https(make_app):
    trusted = make_app(HSTS_SECONDS=600, TRUSTED_PROXIES="127.0.0.1").test_client()
    assert (
        trusted.get("/healthz", headers={"X-Forwarded-Proto": "https"}).headers["Strict-Transport-Security"]
        == "max-age=600"
    )
    untrusted = make_app(HSTS_SECONDS=600).test_client()
    assert "Strict-Transport-Security" not in untrusted.get("/healthz", headers={"X-Forwarded-Proto": "https"}).headers
