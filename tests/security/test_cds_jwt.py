"""CDS Hooks client JWTs (CDS Hooks 2.0, "Trusting CDS Clients"): keys made here with `cryptography`, the
client's JWK Set served by a real HTTP server on loopback, every check of labservice.security.cds_jwt made
through the real endpoints."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask

from labservice.security.cds_jwt import load_issuers
from labservice.security.principal import current_principal
from labservice.store.database import migrate
from tests.adapters.cdshooks.build import hook_call, searchset, spec_example_observations
from tests.api.helpers import assert_problem
from tests.credentials import anonymous
from tests.faults.servers import gunicorn

ISSUER = "https://ehr.example.org/"
PEM_ISSUER = "https://pem-ehr.example.org/"
SERVICE = "/cds-services/cbc-review"
FEEDBACK = SERVICE + "/feedback"
#: PUBLIC_BASE_URL of the test apps: a JWT's aud names it, never the Host the request came to (localhost here).
BASE = "https://labservice.example.org"


class JwksServer:
    """The CDS client's JWK Set at http://127.0.0.1:<port>/jwks.json (and /other.json), counting requests."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                if self.path not in ("/jwks.json", "/other.json"):
                    self.send_error(404)
                    return
                body = json.dumps(owner.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @contextmanager
    def running(self) -> Iterator[JwksServer]:
        self.thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def public_jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks_server(ec_key, rsa_key) -> Iterator[JwksServer]:
    server = JwksServer({"keys": [public_jwk(ec_key, "ec-1", "ES384"), public_jwk(rsa_key, "rsa-1", "RS384")]})
    with server.running():
        yield server


@pytest.fixture
def pem_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def cds_app(make_app, jwks_server, pem_key) -> Flask:
    pem = (
        pem_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    issuers = {ISSUER: {"jwks_url": jwks_server.url}, PEM_ISSUER: {"public_key": pem, "algorithms": ["RS384"]}}
    app = make_app(CDS_JWT_ISSUERS=json.dumps(issuers), PUBLIC_BASE_URL=BASE)
    app.add_url_rule(
        "/cds-services/cbc-review/whoami",
        "cds_whoami",  # to see the principal set
        lambda: {"id": current_principal().id},
        methods=["POST"],
    )
    return app


def token(
    key: Any,
    *,
    alg: str = "ES384",
    kid: str | None = "ec-1",
    iss: str = ISSUER,
    aud: Any = BASE + SERVICE,
    lifetime: int = 120,
    iat_offset: int = 0,
    jti: str | None = "fresh",
    headers: dict | None = None,
    drop: tuple[str, ...] = (),
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": iss,
        "sub": "client-id",
        "aud": aud,
        "exp": now + lifetime,
        "iat": now + iat_offset,
        "jti": str(uuid.uuid4()) if jti == "fresh" else jti,
        "tenant": "2ddd6c3a",
    }
    for name in drop:
        claims.pop(name, None)
    header = {"typ": "JWT", **({"kid": kid} if kid else {}), **(headers or {})}
    return jwt.encode(claims, key, algorithm=alg, headers=header)


def call(app: Flask, jwt_token: str, path: str = SERVICE, host: str | None = None) -> Any:
    if path == FEEDBACK:
        body: dict[str, Any] = {
            "feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-22T08:00:00Z"}]
        }
    else:
        body = hook_call("pat2", {"patient": None, "cbcObservations": searchset(spec_example_observations())})
    headers = {"Authorization": f"Bearer {jwt_token}", **({"Host": host} if host else {})}
    return anonymous(app).post(path, json=body, headers=headers)


def assert_refused(response: Any, reason: str) -> None:
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="labservice", error="invalid_token"')
    assert reason in body["detail"], body["detail"]


def test_an_es384_jwt_from_the_jwks_is_accepted_for_the_service_and_its_feedback(cds_app, ec_key, jwks_server):
    answer = call(cds_app, token(ec_key))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["cards"]
    feedback = call(cds_app, token(ec_key, aud=BASE + FEEDBACK), FEEDBACK)
    assert feedback.status_code == 200 and feedback.get_json() == {"recorded": 1}
    # The feedback endpoint also takes its service's URL as the audience.
    assert call(cds_app, token(ec_key, aud=[BASE + SERVICE]), FEEDBACK).status_code == 200
    assert jwks_server.requests == ["/jwks.json"]  # fetched once, then cached


def test_an_rs384_jwt_and_a_pem_configured_issuer_are_accepted(cds_app, rsa_key, pem_key):
    assert call(cds_app, token(rsa_key, alg="RS384", kid="rsa-1")).status_code == 200
    assert call(cds_app, token(pem_key, alg="RS384", kid="any", iss=PEM_ISSUER)).status_code == 200


def test_the_principal_is_the_cds_client(cds_app, ec_key):
    response = anonymous(cds_app).post(
        "/cds-services/cbc-review/whoami",
        headers={"Authorization": f"Bearer {token(ec_key, aud=BASE + '/cds-services/cbc-review/whoami')}"},
    )
    assert response.get_json() == {"id": f"cds_client:{ISSUER}"}


def test_a_replayed_jwt_is_refused(cds_app, ec_key):
    once = token(ec_key, jti="the-same-jti")
    assert call(cds_app, once).status_code == 200
    assert_refused(call(cds_app, once), "already used")
    assert_refused(call(cds_app, token(ec_key, jti="the-same-jti")), "already used")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": BASE + "/cds-services/other"}, f"audience (aud) must be this endpoint: {BASE}/cds-services/"),
        ({"aud": "https://evil.example/cds-services/cbc-review"}, "audience (aud)"),
        ({"lifetime": -120}, "has expired"),
        ({"lifetime": 3600}, "expires more than 300 seconds from now"),
        ({"iat_offset": 600}, "not valid yet"),
        ({"drop": ("jti",)}, "no jti claim"),
        ({"drop": ("iat",)}, "no iat claim"),
        ({"drop": ("exp",)}, "no exp claim"),
        ({"drop": ("aud",)}, "no aud claim"),
        ({"iss": "https://unknown.example/"}, "issuer (iss) is not a trusted CDS client"),
        ({"kid": None}, "no key id (kid)"),
        ({"kid": "unknown-kid"}, "no key with the JWT's kid"),
        ({"headers": {"jku": "https://evil.example/jwks.json"}}, "jku is not an allowlisted"),
    ],
)
def test_jwts_that_break_a_rule_are_refused(cds_app, ec_key, changes, reason):
    assert_refused(call(cds_app, token(ec_key, **changes)), reason)


def test_a_jwt_signed_by_another_key_is_refused(cds_app):
    stranger = ec.generate_private_key(ec.SECP384R1())
    assert_refused(call(cds_app, token(stranger)), "signature does not verify")


def test_a_jwt_signed_with_a_weaker_algorithm_than_allowed_is_refused(cds_app):
    es256 = ec.generate_private_key(ec.SECP256R1())
    assert_refused(call(cds_app, token(es256, alg="ES256")), "algorithm must be one of ES384, RS384")


def test_unsigned_and_hmac_jwts_are_refused(cds_app):
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": BASE + SERVICE, "exp": now + 60, "iat": now, "jti": str(uuid.uuid4())}
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "ec-1"})
    assert_refused(call(cds_app, unsigned), "algorithm must be one of")
    # HMAC needs a secret shared with the service: the specification forbids it, and so do we.
    hs = jwt.encode(
        claims, "a-shared-secret-of-at-least-48-bytes-for-hs384!!", algorithm="HS384", headers={"kid": "rsa-1"}
    )
    assert_refused(call(cds_app, hs), "algorithm must be one of")


def test_a_jku_is_only_followed_when_allowlisted(make_app, ec_key, jwks_server):
    other = jwks_server.url.replace("/jwks.json", "/other.json")
    app = make_app(
        CDS_JWT_ISSUERS=json.dumps({ISSUER: {"jwks_url": jwks_server.url, "jku": [other]}}), PUBLIC_BASE_URL=BASE
    )
    assert call(app, token(ec_key, headers={"jku": other})).status_code == 200
    assert jwks_server.requests == ["/other.json"]
    not_listed = jwks_server.url.replace("/jwks.json", "/elsewhere.json")
    assert_refused(call(app, token(ec_key, headers={"jku": not_listed})), "jku is not an allowlisted")
    assert "/elsewhere.json" not in jwks_server.requests  # never fetched


def test_an_unreachable_jwks_is_a_refusal_not_an_error(make_app, ec_key):
    with JwksServer({"keys": []}).running() as server:
        url = server.url
    app = make_app(CDS_JWT_ISSUERS=json.dumps({ISSUER: {"jwks_url": url}}), PUBLIC_BASE_URL=BASE)  # server gone
    assert_refused(call(app, token(ec_key)), "JWK Set could not be fetched")


def test_without_configured_issuers_no_jwt_is_accepted(make_app, ec_key):
    app = make_app()
    assert_refused(call(app, token(ec_key)), "not a trusted CDS client")
    assert_refused(call(app, "not-a-jwt"), "not a JWT")


def test_the_audience_is_the_public_base_url_whatever_the_host_header_says(cds_app, ec_key):
    """A JWT minted for another CDS service (another host) is refused here even when the request's Host header
    names that host: aud is checked against PUBLIC_BASE_URL only."""
    elsewhere = "other-cds.example.net"
    assert_refused(
        call(cds_app, token(ec_key, aud=f"https://{elsewhere}{SERVICE}"), host=elsewhere),
        f"must be this endpoint: {BASE}{SERVICE}",
    )
    assert_refused(call(cds_app, token(ec_key, aud=f"http://localhost{SERVICE}")), "audience (aud)")
    assert call(cds_app, token(ec_key), host=elsewhere).status_code == 200


def test_trusting_jwt_issuers_without_a_public_base_url_stops_the_app(make_app, jwks_server):
    """Without PUBLIC_BASE_URL the only base left would be the Host header, which the caller writes."""
    with pytest.raises(ValueError, match="PUBLIC_BASE_URL"):
        make_app(CDS_JWT_ISSUERS=json.dumps({ISSUER: {"jwks_url": jwks_server.url}}))


@pytest.mark.parametrize("base", ["labservice.example.org", "ftp://labservice.example.org", "https://x.org/?a=1"])
def test_a_public_base_url_that_is_not_an_http_url_stops_the_app(make_app, jwks_server, base):
    with pytest.raises(ValueError, match="PUBLIC_BASE_URL"):
        make_app(CDS_JWT_ISSUERS=json.dumps({ISSUER: {"jwks_url": jwks_server.url}}), PUBLIC_BASE_URL=base)


def test_the_discovery_endpoint_stays_public(cds_app):
    assert anonymous(cds_app).get("/cds-services").status_code == 200


@pytest.mark.parametrize(
    "config",
    [
        "[]",
        json.dumps({ISSUER: {}}),
        json.dumps({ISSUER: {"jwks_url": "https://x", "algorithms": ["HS256"]}}),
        json.dumps({ISSUER: {"jwks_url": "https://x", "algorithms": ["none"]}}),
    ],
)
def test_a_bad_issuer_configuration_stops_the_app(config):
    with pytest.raises(ValueError):
        load_issuers(config)


# --- served by gunicorn: the Host header is the caller's to write -----------------------------------------


def served_env(tmp_path, pem_key, **extra: str) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'labservice.sqlite'}"
    migrate(url)
    pem = (
        pem_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return {
        "LABSERVICE_DATABASE_URL": url,
        "LABSERVICE_INSTANCE_PATH": str(tmp_path / "instance"),
        "LABSERVICE_CDS_JWT_ISSUERS": json.dumps({PEM_ISSUER: {"public_key": pem, "algorithms": ["RS384"]}}),
        **extra,
    }


def test_served_a_jwt_for_the_host_header_is_refused_and_one_for_the_public_base_url_accepted(tmp_path, pem_key):
    body = hook_call("pat2", {"patient": None, "cbcObservations": searchset(spec_example_observations())})
    elsewhere = "other-cds.example.net"

    def post(aud: str) -> requests.Response:
        jwt_token = token(pem_key, alg="RS384", kid="pem-1", iss=PEM_ISSUER, aud=aud)
        return requests.post(
            server.base + SERVICE,
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {jwt_token}", "Host": elsewhere},
        )

    with gunicorn(served_env(tmp_path, pem_key, LABSERVICE_PUBLIC_BASE_URL=BASE), workers=1) as server:
        refused = post(f"http://{elsewhere}{SERVICE}")
        assert refused.status_code == 401, refused.text
        assert f"must be this endpoint: {BASE}{SERVICE}" in refused.json()["detail"]
        accepted = post(BASE + SERVICE)
        assert accepted.status_code == 200, accepted.text


def test_served_without_a_public_base_url_trusted_issuers_do_not_start(tmp_path, pem_key):
    with pytest.raises(AssertionError, match="gunicorn exited"), gunicorn(served_env(tmp_path, pem_key), workers=1):
        pass
