"""Authentication and scopes: every endpoint but a short public list refuses a request without credentials,
each API endpoint needs its scope, and the OpenAPI document says so."""

from __future__ import annotations

import re

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from labservice.examples import CONTRACT_EXAMPLE
from labservice.middleware.auth import (
    DEFAULT_SCOPES,
    ENDPOINT_SCOPES,
    KEY_CACHE_EXTENSION,
    PUBLIC_ENDPOINTS,
    required_scopes,
)
from labservice.security.key_cache import PrincipalCache
from labservice.security.keys import create_key, revoke_key
from labservice.security.principal import current_principal
from tests.api.helpers import assert_problem
from tests.credentials import anonymous

#: The rules anyone may call (no patient data): path -> methods. Everything else must refuse a stranger.
PUBLIC_RULES = {
    "/healthz": {"GET"},
    "/livez": {"GET"},  # issue 14 item 4: probes carry no patient data
    "/readyz": {"GET"},
    "/api/v1/fhir/metadata": {"GET"},  # issue 14 item 1: FHIR conformance resources, no patient data
    "/api/v1/fhir/OperationDefinition/interpret": {"GET"},
    "/api/v1/openapi.json": {"GET"},
    "/api/docs": {"GET"},
    "/api/docs/assets/<path:filename>": {"GET"},
    "/api/v1/ruleset": {"GET"},
    "/cds-services": {"GET", "POST", "PUT", "PATCH", "DELETE"},  # discovery (other methods: 405)
    "/cds-services/": {"GET", "POST", "PUT", "PATCH", "DELETE"},
    "/static/<path:filename>": {"GET"},
    "/dashboard/static/<path:filename>": {"GET"},
    "/dashboard/sign-in": {"GET", "POST"},
    "/": {"GET"},
}
SAMPLE_VALUES = {"int": "1", "path": "P-1", "default": "x"}


def key_for(app: Flask, name: str, scopes: list[str]) -> str:
    with app.extensions["labservice.database"].session() as session:
        return create_key(session, name, scopes).token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def concrete(rule: Rule) -> str:
    """The rule's path with a sample value for each variable."""

    def value(match: re.Match) -> str:
        converter, arguments = match.group(1) or "default", match.group(2)
        if converter == "any":  # <any(csv, json):kind>: the first choice
            return arguments.split(",")[0].strip()
        return SAMPLE_VALUES.get(converter, "x")

    return re.sub(r"<(?:(\w+)(?:\(([^)]*)\))?:)?\w+>", value, rule.rule)


def every_rule(app: Flask) -> list[tuple[str, str, Rule]]:
    out = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((method, concrete(rule), rule))
    return out


def assert_unauthorized(response, invalid: bool = False) -> dict:
    body = assert_problem(response, 401)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="labservice"')
    assert ('error="invalid_token"' in challenge) is invalid
    return body


def test_every_endpoint_but_the_public_ones_refuses_a_request_without_credentials(app):
    client = anonymous(app)
    checked = 0
    for method, path, rule in every_rule(app):
        if method in PUBLIC_RULES.get(rule.rule, set()):
            continue
        response = client.open(path, method=method, json={} if method != "GET" else None)
        if path.startswith("/dashboard"):
            assert response.status_code in (302, 303), (method, path, response.status_code)
            assert response.location.startswith("/dashboard/sign-in"), (method, path, response.location)
        else:  # the API, CDS Hooks service calls, and anything else: 401 problem+json
            assert_unauthorized(response)
        checked += 1
    assert checked >= 15


def test_every_dashboard_form_refuses_a_signed_in_post_without_the_csrf_token(app):
    client = app.test_client()  # signed in (tests/credentials.py)
    posts = [
        (path, rule) for method, path, rule in every_rule(app) if method == "POST" and path.startswith("/dashboard")
    ]
    assert len(posts) >= 4  # status change, upload, sign-in, sign-out
    for path, _ in posts:
        for data in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
            response = client.post(path, data=data)
            assert response.status_code == 400, (path, data, response.status_code)
            assert "security token (CSRF protection)" in response.text, path


def test_the_public_allowlist_is_the_one_the_app_enforces(app):
    public = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint in PUBLIC_ENDPOINTS}
    assert public <= set(PUBLIC_RULES), public - set(PUBLIC_RULES)


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/livez",
        "/readyz",
        "/api/v1/openapi.json",
        "/api/docs",
        "/api/v1/ruleset",
        "/cds-services",
        "/api/docs/assets/swagger-ui.css",
        "/dashboard/static/dashboard.css",
    ],
)
def test_public_endpoints_answer_without_credentials(app, path):
    response = anonymous(app).get(path)
    assert response.status_code == 200, path
    assert "WWW-Authenticate" not in response.headers


def test_an_endpoint_nobody_declared_needs_admin(make_app):
    app = make_app()
    app.add_url_rule("/api/v1/new-thing", "new_thing", lambda: jsonify(who=current_principal().id))
    assert "new_thing" not in ENDPOINT_SCOPES and DEFAULT_SCOPES == ("admin",)
    assert_unauthorized(anonymous(app).get("/api/v1/new-thing"))
    both = key_for(app, "both", ["interpret", "read"])
    body = assert_problem(anonymous(app).get("/api/v1/new-thing", headers=bearer(both)), 403)
    assert "'admin'" in body["detail"]
    admin = key_for(app, "root", ["admin"])
    answer = anonymous(app).get("/api/v1/new-thing", headers=bearer(admin))
    assert answer.status_code == 200 and answer.get_json() == {"who": "api_key:root"}


@pytest.mark.parametrize(
    "header",
    [
        "Bearer lsk_000000000000_" + "A" * 43,  # well-formed, unknown
        "Bearer not-a-key",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "lsk_000000000000_" + "A" * 43,  # no scheme
    ],
)
def test_bad_credentials_are_401_with_a_bearer_challenge(app, header):
    response = anonymous(app).post("/api/v1/interpretations", json=CONTRACT_EXAMPLE, headers={"Authorization": header})
    body = assert_unauthorized(response, invalid=True)
    assert "not valid" in body["detail"]
    assert header.split()[-1] not in response.get_data(as_text=True) or header.strip() == "Bearer"


def test_a_missing_key_says_how_to_send_one(app):
    body = assert_unauthorized(anonymous(app).get("/api/v1/referrals"))
    assert "Authorization: Bearer" in body["detail"]


class FakeClock:
    """A monotonic clock the test moves by hand (no sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revoked_key_is_refused_once_its_cached_principal_expires(app):
    # Issue 12 item 2: a key's principal is cached a few seconds (API_KEY_CACHE_SECONDS, 5 by default);
    # revocation still takes effect within that time (docs/operations-and-security.md).
    clock = FakeClock()
    app.extensions[KEY_CACHE_EXTENSION] = PrincipalCache(app.config["API_KEY_CACHE_SECONDS"], clock=clock)
    assert app.config["API_KEY_CACHE_SECONDS"] == 5
    token = key_for(app, "soon-revoked", ["read"])
    client = anonymous(app)
    assert client.get("/api/v1/referrals", headers=bearer(token)).status_code == 200
    with app.extensions["labservice.database"].session() as session:
        revoke_key(session, "soon-revoked")
    clock.now += 4.9  # within the cache time: the worker still knows the key as valid
    assert client.get("/api/v1/referrals", headers=bearer(token)).status_code == 200
    clock.now += 0.1  # 5 s after it was looked up: asked again, and refused
    assert_unauthorized(client.get("/api/v1/referrals", headers=bearer(token)), invalid=True)
    clock.now += 60
    assert_unauthorized(client.get("/api/v1/referrals", headers=bearer(token)), invalid=True)


def test_a_wrong_secret_never_matches_a_cached_key(app):
    token = key_for(app, "cached", ["read"])
    client = anonymous(app)
    assert client.get("/api/v1/referrals", headers=bearer(token)).status_code == 200  # now cached
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert_unauthorized(client.get("/api/v1/referrals", headers=bearer(forged)), invalid=True)


def test_without_the_cache_a_revoked_key_is_refused_from_the_next_request(make_app):
    app = make_app(API_KEY_CACHE_SECONDS=0)
    token = key_for(app, "soon-revoked", ["read"])
    client = anonymous(app)
    assert client.get("/api/v1/referrals", headers=bearer(token)).status_code == 200
    with app.extensions["labservice.database"].session() as session:
        revoke_key(session, "soon-revoked")
    assert_unauthorized(client.get("/api/v1/referrals", headers=bearer(token)), invalid=True)


def _interpret_requests():
    return [
        ("POST", "/api/v1/interpretations", {"json": CONTRACT_EXAMPLE}),
        ("POST", "/api/v1/fhir/interpret", {"json": {"resourceType": "Bundle"}}),
        ("POST", "/api/v1/hl7v2/interpret", {"data": b"MSH|", "content_type": "x-application/hl7-v2+er7"}),
        ("POST", "/api/v1/batches", {"data": {}, "content_type": "multipart/form-data"}),
    ]


def _read_requests():
    return [
        ("GET", "/api/v1/referrals", {}),
        ("GET", "/api/v1/referrals/1", {}),
        ("GET", "/api/v1/patients/P-1/results", {}),
        ("GET", "/api/v1/batches/" + "0" * 32, {}),
        ("GET", "/api/v1/batches/" + "0" * 32 + "/result.csv", {}),
        ("GET", "/api/v1/batches/" + "0" * 32 + "/result.json", {}),
    ]


def test_a_read_key_cannot_interpret_and_an_interpret_key_cannot_read(app):
    client = anonymous(app)
    reader, writer = key_for(app, "reader", ["read"]), key_for(app, "writer", ["interpret"])
    for method, path, kwargs in _interpret_requests():
        body = assert_problem(client.open(path, method=method, headers=bearer(reader), **kwargs), 403)
        assert "'interpret'" in body["detail"] and body["errors"] == {"scope": ["Missing: interpret."]}
        allowed = client.open(path, method=method, headers=bearer(writer), **kwargs)
        assert allowed.status_code not in (401, 403), (path, allowed.status_code)
    for method, path, kwargs in _read_requests():
        response = client.open(path, method=method, headers=bearer(writer), **kwargs)
        body = assert_problem(response, 403)
        assert "'read'" in body["detail"]
        assert 'error="insufficient_scope", scope="read"' in response.headers["WWW-Authenticate"]
        allowed = client.open(path, method=method, headers=bearer(reader), **kwargs)
        assert allowed.status_code not in (401, 403), (path, allowed.status_code)


def test_a_referral_status_change_needs_read_and_interpret(app):
    client = anonymous(app)
    change = {"status": "acknowledged"}
    for scopes, status in ((["read"], 403), (["interpret"], 403)):
        token = key_for(app, "-".join(scopes), scopes)
        body = assert_problem(client.patch("/api/v1/referrals/1", json=change, headers=bearer(token)), status)
        missing = ({"read", "interpret"} - set(scopes)).pop()
        assert f"'{missing}'" in body["detail"]
    for name, scopes in (("both", ["read", "interpret"]), ("admin", ["admin"])):
        token = key_for(app, name, scopes)
        assert_problem(client.patch("/api/v1/referrals/1", json=change, headers=bearer(token)), 404)  # no referral 1


def test_admin_holds_every_scope(app):
    client = anonymous(app)
    token = key_for(app, "root", ["admin"])
    for method, path, kwargs in _interpret_requests() + _read_requests():
        response = client.open(path, method=method, headers=bearer(token), **kwargs)
        assert response.status_code not in (401, 403), (path, response.status_code)


def test_the_principal_is_the_key(make_app):
    app = make_app()
    app.add_url_rule(
        "/api/v1/whoami",
        "whoami",
        lambda: jsonify(id=current_principal().id, scopes=sorted(current_principal().scopes)),
    )
    ENDPOINT_SCOPES.setdefault("whoami", ("read",))
    try:
        token = key_for(app, "lis-interface", ["read", "interpret"])
        answer = anonymous(app).get("/api/v1/whoami", headers=bearer(token)).get_json()
    finally:
        ENDPOINT_SCOPES.pop("whoami")
    assert answer == {"id": "api_key:lis-interface", "scopes": ["interpret", "read"]}


def test_an_interpretation_with_a_key_works_end_to_end(app):
    token = key_for(app, "lis", ["interpret"])
    response = anonymous(app).post("/api/v1/interpretations?store=false", json=CONTRACT_EXAMPLE, headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["urgency"]


# --- CDS Hooks service calls ----------------------------------------------------------------------


def test_cds_service_calls_need_credentials_and_say_so_to_browsers(app):
    client = anonymous(app)
    for path in ("/cds-services/cbc-review", "/cds-services/cbc-review/feedback"):
        response = client.post(path, json={})
        assert_unauthorized(response)
        assert response.headers["Access-Control-Allow-Origin"] == "*"  # a browser client can read the 401
    preflight = client.options(
        "/cds-services/cbc-review",
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


def test_a_cds_call_accepts_an_interpret_key_and_refuses_a_read_key(app):
    client = anonymous(app)
    reader = key_for(app, "reader", ["read"])
    body = assert_problem(
        client.post("/cds-services/cbc-review/feedback", json={"feedback": []}, headers=bearer(reader)), 403
    )
    assert "'interpret'" in body["detail"]
    writer = key_for(app, "ehr", ["interpret"])
    response = client.post(
        "/cds-services/cbc-review/feedback",
        headers=bearer(writer),
        json={
            "feedback": [
                {
                    "card": "c1",
                    "outcome": "accepted",
                    "outcomeTimestamp": "2026-11-22T08:00:00Z",
                    "acceptedSuggestions": [{"id": "s1"}],
                }
            ]
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)


# --- the OpenAPI document -------------------------------------------------------------------------


@pytest.fixture
def spec(app) -> dict:
    return anonymous(app).get("/api/v1/openapi.json").get_json()


def test_the_document_declares_the_bearer_scheme(spec):
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"


def test_every_operation_states_its_security_and_scopes(app, spec):
    seen = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            seen += 1
            endpoint = next(
                rule.endpoint
                for rule in app.url_map.iter_rules()
                if re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule) == path and method.upper() in (rule.methods or ())
            )
            if endpoint in PUBLIC_ENDPOINTS:
                assert operation["security"] == [], (method, path)
                continue
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert operation["x-required-scopes"] == list(required_scopes(endpoint)), (method, path)
            for status in ("401", "403"):
                content = operation["responses"][status]["content"]
                assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert seen >= 12


def test_a_protected_operation_names_its_scope_in_its_description(spec):
    operation = spec["paths"]["/api/v1/patients/{patient_id}/results"]["get"]
    assert "Needs an API key with the scope `read`" in operation["description"]
    patch = spec["paths"]["/api/v1/referrals/{referral_id}"]["patch"]
    assert "`read` and `interpret`" in patch["description"]


def test_a_credentialed_client_is_what_the_other_tests_use(client: FlaskClient):
    # conftest's make_app gives every test client an all-scope key: the other tests run authenticated.
    assert client.environ_base["HTTP_AUTHORIZATION"].startswith("Bearer lsk_")
    assert client.get("/api/v1/referrals").status_code == 200


@pytest.mark.parametrize(
    "path", ["/api/v1/audit?patient=%00", "/api/v1/referrals?patient=a%00b", "/api/v1/patients/a%00b/results"]
)
def test_a_nul_from_a_caller_without_credentials_is_401_not_a_validation_answer(app, path):
    """The NUL check runs after authentication: an anonymous caller learns nothing of how a request is validated
    (schemathesis' unauthenticated pass found GET /api/v1/audit?patient=%00 answering 400)."""
    response = anonymous(app).get(path)
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("path", "named"), [("/dashboard/patients/MRN%00-1", "path"), ("/dashboard/?finding=%00", "finding")]
)
def test_a_nul_on_the_dashboard_of_a_signed_in_user_is_a_400_naming_it(client, path, named):
    """Signed in, the dashboard's requests reach the NUL check (PostgreSQL cannot store NUL: it was a 500 there)."""
    response = client.get(path)
    assert response.status_code == 400 and named in response.get_data(as_text=True), response.get_data(as_text=True)


@pytest.mark.parametrize(("raw", "seconds"), [("0", 0.0), ("2.5", 2.5), ("30", 30.0)])
def test_the_key_cache_time_comes_from_the_environment(raw: str, seconds: float) -> None:
    from labservice.config import load_settings

    assert load_settings({"LABSERVICE_API_KEY_CACHE_SECONDS": raw})["API_KEY_CACHE_SECONDS"] == seconds


@pytest.mark.parametrize("raw", ["-1", "soon", "nan"])
def test_a_key_cache_time_that_is_not_zero_or_more_is_refused(raw: str) -> None:
    from labservice.config import load_settings

    with pytest.raises(ValueError, match="API_KEY_CACHE_SECONDS"):
        load_settings({"LABSERVICE_API_KEY_CACHE_SECONDS": raw})
