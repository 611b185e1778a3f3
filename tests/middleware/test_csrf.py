"""CSRF: every POST form of the dashboard carries the session's token, and every dashboard POST without it is
refused with 400 before anything changes."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from labservice.middleware import csrf
from tests.credentials import anonymous, csrf_token

TEMPLATES = Path(__file__).resolve().parents[2] / "labservice" / "dashboard" / "templates" / "dashboard"
SEED = [
    {
        "patient": {"id": "P-CSRF", "sex": "female", "age_years": 40},
        "collected_at": "2026-03-01T08:00:00Z",
        "results": {"platelets": 12, "hemoglobin": 13.0, "neutrophils": 3.0},
    }
]
CSV = b"Patient ID,Collected,Sex,Age,PLT (10^9/L)\nC1,2026-03-01T08:00:00Z,F,40,250\n"


class Forms(HTMLParser):
    """Each POST form of a page: its action and its hidden csrf_token values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._current: dict | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form" and (values.get("method") or "get").lower() == "post":
            self._current = {"action": values.get("action"), "tokens": []}
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and values.get("name") == csrf.FIELD_NAME:
            assert values.get("type") == "hidden"
            self._current["tokens"].append(values.get("value"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def post_forms(page: str) -> list[dict]:
    parser = Forms()
    parser.feed(page)
    return parser.forms


@pytest.fixture
def seeded(client: FlaskClient) -> FlaskClient:
    assert client.post("/api/v1/interpretations", json=SEED).status_code == 200
    return client


def referral(client: FlaskClient) -> dict:
    return client.get("/api/v1/referrals").get_json()["items"][0]


def test_every_post_form_in_the_templates_includes_the_token_field():
    for template in TEMPLATES.glob("*.html"):
        source = template.read_text(encoding="utf-8")
        for form in re.findall(r"<form\b[^>]*>.*?</form>", source, re.S):
            if re.search(r'method="post"', form, re.I):
                assert "{{ csrf_field() }}" in form, template.name


def test_every_post_form_on_every_page_carries_this_sessions_token(seeded):
    rid = referral(seeded)["id"]
    token = csrf_token(seeded)
    seen = set()
    pages = ("/dashboard/", "/dashboard/patients/P-CSRF", "/dashboard/batches", f"/dashboard/referrals/{rid}/status")
    for url in pages:
        for form in post_forms(seeded.get(url).text):
            assert form["tokens"] == [token], (url, form)
            seen.add(re.sub(r"\d+", "N", form["action"]))
    # .../communications: the critical-result communication form (issue 14 item 9), also token-protected
    assert seen == {
        "/dashboard/sign-out",
        "/dashboard/referrals/N/status",
        "/dashboard/batches",
        "/dashboard/referrals/N/communications",
    }
    sign_in_page = anonymous(seeded.application).get("/dashboard/sign-in").text
    [form] = post_forms(sign_in_page)
    assert form["action"] == "/dashboard/sign-in" and len(form["tokens"]) == 1 and form["tokens"][0]


@pytest.mark.parametrize("token", [None, "", "forged-token", "A" * 43])
def test_a_status_change_without_the_right_token_changes_nothing(seeded, token):
    rid = referral(seeded)["id"]
    data = {"status": "dismissed", "reason": "already_managed", "next": "/dashboard/"}
    if token is not None:
        data["csrf_token"] = token
    response = seeded.post(f"/dashboard/referrals/{rid}/status", data=data)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "did not carry this session's security token (CSRF protection)" in response.text
    assert referral(seeded)["status"] == "new"
    assert (
        seeded.post(f"/dashboard/referrals/{rid}/status", data={**data, "csrf_token": csrf_token(seeded)}).status_code
        == 303
    )
    assert seeded.get(f"/api/v1/referrals/{rid}").get_json()["status"] == "dismissed"


def test_another_sessions_token_is_refused(seeded, make_app):
    rid = referral(seeded)["id"]
    other = seeded.application.test_client()  # the same user, another browser: another session and token
    assert csrf_token(other) != csrf_token(seeded)
    response = seeded.post(
        f"/dashboard/referrals/{rid}/status",
        data={"status": "dismissed", "reason": "already_managed", "csrf_token": csrf_token(other)},
    )
    assert response.status_code == 400
    assert referral(seeded)["status"] == "new"


def test_an_upload_without_the_token_is_not_interpreted(client):
    response = client.post(
        "/dashboard/batches", data={"file": (io.BytesIO(CSV), "cbc.csv")}, content_type="multipart/form-data"
    )
    assert response.status_code == 400
    assert "No batch has been uploaded yet." in client.get("/dashboard/batches").text
    assert client.get("/api/v1/patients/C1/results").status_code == 404


def test_an_oversized_upload_is_refused_before_the_token_is_read(make_app):
    client = make_app(MAX_UPLOAD_BYTES=1000).test_client()
    response = client.post(
        "/dashboard/batches",
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(b"x" * 5000), "big.csv"), "csrf_token": csrf_token(client)},
    )
    assert response.status_code == 413
    assert "The upload is larger than 1000 bytes (MAX_UPLOAD_BYTES)." in response.text


def test_the_sign_in_form_needs_the_token_too(app):
    client = anonymous(app)
    response = client.post("/dashboard/sign-in", data={"username": "x", "password": "y" * 12})
    assert response.status_code == 400  # login CSRF: a site cannot sign you in as someone else


def test_get_requests_need_no_token(client):
    assert client.get("/dashboard/?urgency=urgent").status_code == 200


def test_tokens_are_compared_whole():
    session = {}
    token = csrf.session_token(session)
    assert csrf.is_valid(session, token)
    assert not csrf.is_valid(session, token[:-1]) and not csrf.is_valid(session, token + "x")
    assert not csrf.is_valid({}, token) and not csrf.is_valid(session, None) and not csrf.is_valid(session, ["x"])
    assert len(token) >= 43 and csrf.session_token(session) == token
