"""Authentication and scopes for every request, in one `before_request` hook (so no endpoint can forget it).

Who may call what:

- **Public** (`PUBLIC_ENDPOINTS`): `/healthz`, the OpenAPI document, the Swagger UI and its assets,
  `/api/v1/ruleset` (rule tables, no patient data), the CDS Hooks discovery `GET /cds-services`, static
  files, `/` (a redirect) and the dashboard's sign-in page. Nothing else.
- **API** (`/api/...`, and any other endpoint): an API key, `Authorization: Bearer lsk_...`, with the
  scopes `ENDPOINT_SCOPES` lists for the endpoint. An endpoint missing from that table needs `admin`: a
  new endpoint is closed until someone says who may use it. GET and HEAD also accept a signed-in dashboard
  session (so the dashboard's download links work), with the scopes of the user's role; other methods
  accept only a key, so a cookie cannot be ridden across sites. No or a bad key: 401 problem+json with
  `WWW-Authenticate: Bearer`; a key without the scope: 403 naming the scope.
- **Dashboard** (`/dashboard/...`): a signed-in user (session cookie); otherwise a redirect to the sign-in
  page. Its POST forms are also CSRF-checked (labservice.dashboard.views).
- **CDS Hooks service calls** (`/cds-services/<id>` and its feedback): the CDS client's JWT from a
  configured issuer (labservice.security.cds_jwt), or an API key with `interpret`; otherwise 401.

The principal found is set with `set_principal` for the audit trail, rate limits and idempotency.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from apispec import BasePlugin
from flask import Flask, current_app, g, redirect, request, session, url_for
from flask.typing import ResponseReturnValue

from labservice.errors import problem_response
from labservice.extensions import current_database
from labservice.security.cds_jwt import CdsJwtError, TrustedIssuers, load_issuers, verify
from labservice.security.key_cache import PrincipalCache
from labservice.security.keys import KEY_PATTERN, authenticate_key
from labservice.security.principal import Principal, set_principal
from labservice.security.users import session_user, user_principal, warm_up

ISSUERS_EXTENSION = "labservice.cds_jwt_issuers"
REALM = "labservice"

#: Endpoints anyone may call: no patient data in or out.
PUBLIC_ENDPOINTS = frozenset(
    {
        "static",
        "index",
        "health.healthz",
        "health.livez",
        "health.readyz",
        "ruleset.get_ruleset",
        "api-docs.openapi_json",
        "api-docs.openapi_swagger_ui",
        "swagger_assets.static",
        "dashboard.static",
        "dashboard.sign_in",
        "cds_services.discover",
        "fhir.capability",
        "fhir.interpret_operation",
    }
)

#: The scopes each API endpoint needs (all of them). Reading stored patient data needs `read`; sending CBCs
#: to interpret (and maybe store) needs `interpret`; a referral status change shows the referral and changes
#: it, so it needs both. `admin` holds every scope. Not listed (and not public): `admin` only.
ENDPOINT_SCOPES: dict[str, tuple[str, ...]] = {
    "interpretations.create_interpretations": ("interpret",),
    "batches.create_batch": ("interpret",),
    "fhir.interpret_fhir": ("interpret",),
    "hl7v2.interpret_hl7v2": ("interpret",),
    "batches.get_batch": ("read",),
    "batches.get_batch_csv": ("read",),
    "batches.get_batch_json": ("read",),
    "referrals.list_referrals": ("read",),
    "referrals.show_referral": ("read",),
    "referrals.update_referral": ("read", "interpret"),
    "referrals.add_referral_communication": ("read", "interpret"),
    "patients.get_patient_results": ("read",),
    "metrics.metrics": ("metrics",),
}
DEFAULT_SCOPES = ("admin",)
#: CDS Hooks calls that need a CDS client JWT (or a key with `interpret`).
CDS_ENDPOINTS = frozenset({"cds_services.call_service", "cds_services.feedback", "cds_services.elsewhere"})
CDS_SCOPES = ("interpret",)
SAFE_METHODS = frozenset({"GET", "HEAD"})


def register_auth(app: Flask) -> None:
    """Session cookie settings, the trusted CDS clients, and the hook that authenticates every request."""
    app.permanent_session_lifetime = timedelta(minutes=int(app.config.get("SESSION_LIFETIME_MINUTES", 480)))
    trusted = load_issuers(app.config.get("CDS_JWT_ISSUERS"))
    check_public_base_url(app.config.get("PUBLIC_BASE_URL") or "", trusted)
    app.extensions[ISSUERS_EXTENSION] = trusted
    app.extensions[KEY_CACHE_EXTENSION] = PrincipalCache(float(app.config.get("API_KEY_CACHE_SECONDS", 5)))
    warm_up()  # the dummy password hash, so the first unknown username costs what the others do
    app.before_request(authenticate)


def check_public_base_url(base: str, trusted: TrustedIssuers) -> None:
    """PUBLIC_BASE_URL must be an absolute http(s) URL when set, and must be set when JWT issuers are trusted:
    a JWT's `aud` is checked against it, never against the Host header, which the caller writes (a JWT minted
    for another CDS service would otherwise pass here with that service's Host)."""
    if base:
        parts = urlsplit(base)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(
                f"PUBLIC_BASE_URL={base!r} must be an absolute http(s) URL such as https://labservice.example.org"
            )
    elif trusted.issuers:
        raise ValueError(
            "CDS_JWT_ISSUERS needs PUBLIC_BASE_URL (e.g. https://labservice.example.org): a CDS "
            "client JWT's aud is checked against it, not against the request's Host header"
        )


def required_scopes(endpoint: str | None) -> tuple[str, ...]:
    return ENDPOINT_SCOPES.get(endpoint or "", DEFAULT_SCOPES)


def area(path: str) -> str:
    if path == "/dashboard" or path.startswith("/dashboard/"):
        return "dashboard"
    if path == "/cds-services" or path.startswith("/cds-services/"):
        return "cds"
    return "api"


def authenticate() -> ResponseReturnValue | None:
    """Find who is calling and refuse the request if they may not; None lets it through to the view."""
    if request.url_rule is None:  # 404 and 405 answer as usual (nothing is read)
        return None
    if request.method == "OPTIONS" and getattr(request.url_rule, "provide_automatic_options", False):
        return None  # CORS preflight: Flask answers it without running any view
    endpoint = request.endpoint
    where = area(request.path)
    if endpoint in PUBLIC_ENDPOINTS:
        if endpoint == "dashboard.sign_in":
            _dashboard_user()  # the sign-in page knows who is already signed in
        return None
    if where == "dashboard":
        if _dashboard_user() is None:
            target = request.full_path.rstrip("?") if request.method in SAFE_METHODS else None
            return redirect(url_for("dashboard.sign_in", next=target), 303)
        return None
    if where == "cds":
        return _cds_call()
    return _api_call(endpoint)


def _bearer() -> tuple[bool, str | None]:
    """(an Authorization header was sent, its bearer token or None when it is not a bearer token)."""
    header = request.headers.get("Authorization")
    if header is None:
        return False, None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return True, None
    return True, token


def _database():
    return current_database()


#: app.extensions key of the app's PrincipalCache (labservice.security.key_cache).
KEY_CACHE_EXTENSION = "labservice.key_cache"


def _key_principal(token: str) -> Principal | None:
    """The key's principal: from the cache when it was found valid less than API_KEY_CACHE_SECONDS ago."""
    cache: PrincipalCache | None = current_app.extensions.get(KEY_CACHE_EXTENSION)
    if cache is not None:
        principal = cache.get(token)
        if principal is not None:
            return principal
    with _database().session() as db:
        principal = authenticate_key(db, token)
    if cache is not None and principal is not None:
        cache.put(token, principal)
    return principal


def _dashboard_user() -> Any:
    """The signed-in user (also set as the principal and as g.user), or None."""
    if "user" in g:
        return g.user
    user = None
    if session.get("user_id") is not None:
        with _database().session() as db:
            user = session_user(db, session)
        if user is None:
            session.clear()  # a voided or stale session is dropped
    g.user = user
    if user is not None:
        set_principal(user_principal(user))
    return user


def _api_call(endpoint: str | None) -> ResponseReturnValue | None:
    sent, token = _bearer()
    principal: Principal | None = None
    if token is not None:
        principal = _key_principal(token)
    elif not sent and request.method in SAFE_METHODS and session.get("user_id") is not None:
        user = _dashboard_user()
        principal = user_principal(user) if user is not None else None
    if principal is None:
        return unauthorized(sent)
    set_principal(principal)
    missing = [scope for scope in required_scopes(endpoint) if not principal.has(scope)]
    if missing:
        return forbidden(missing)
    return None


def _cds_call() -> ResponseReturnValue | None:
    sent, token = _bearer()
    if token is None:
        return unauthorized(sent, cds=True)
    if KEY_PATTERN.match(token):
        principal = _key_principal(token)
        if principal is None:
            return unauthorized(True, cds=True)
        set_principal(principal)
        missing = [scope for scope in CDS_SCOPES if not principal.has(scope)]
        return forbidden(missing) if missing else None
    trusted: TrustedIssuers = current_app.extensions[ISSUERS_EXTENSION]
    try:
        with _database().session() as db:
            client = verify(
                token,
                trusted,
                _cds_audiences(),
                db,
                leeway=int(current_app.config.get("CDS_JWT_LEEWAY", 60)),
                max_lifetime=int(current_app.config.get("CDS_JWT_MAX_LIFETIME", 300)),
            )
    except CdsJwtError as error:
        return unauthorized(True, cds=True, detail=f"The CDS client's JWT is refused: {error}.")
    set_principal(Principal("cds_client", client.issuer, frozenset(CDS_SCOPES)))
    return None


def _cds_audiences() -> list[str]:
    """The URLs a CDS client may name as `aud` for this call: the endpoint called (the feedback endpoint may
    also name its service's URL), under PUBLIC_BASE_URL (required with CDS_JWT_ISSUERS), never the Host header."""
    base = str(current_app.config.get("PUBLIC_BASE_URL") or "").rstrip("/")
    path = request.path.rstrip("/")
    audiences = [base + path]
    if path.endswith("/feedback"):
        audiences.append(base + path[: -len("/feedback")])
    return audiences


def unauthorized(sent: bool, *, cds: bool = False, detail: str | None = None) -> ResponseReturnValue:
    """401: no credentials, or credentials that are not valid (unknown, wrong, revoked or expired)."""
    if detail is None:
        what = "a CDS client JWT (or an API key)" if cds else "an API key"
        detail = (
            f"The credentials sent are not valid: send {what} as Authorization: Bearer <token>."
            if sent
            else f"This endpoint needs {what}, sent as Authorization: Bearer <token>."
        )
    challenge = f'Bearer realm="{REALM}"' + (', error="invalid_token"' if sent else "")
    return problem_response(401, detail, {"Authorization": [detail]}, headers={"WWW-Authenticate": challenge})


def forbidden(missing: list[str]) -> ResponseReturnValue:
    """403: valid credentials without a scope this endpoint needs; the detail names it."""
    names = " and ".join(f"'{scope}'" for scope in missing)
    detail = f"This API key or user lacks the scope {names} that this endpoint needs."
    challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{" ".join(missing)}"'
    return problem_response(
        403, detail, {"scope": [f"Missing: {', '.join(missing)}."]}, headers={"WWW-Authenticate": challenge}
    )


# --- the OpenAPI document: security schemes and each operation's requirement -------------------------


class SecurityDocPlugin(BasePlugin):
    """apispec plugin: each operation says whether it needs a key (`security`), which scopes
    (`x-required-scopes` and its description), and documents 401 and 403."""

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        rule = kwargs.get("rule")
        if rule is None or not operations:
            return
        for method, operation in operations.items():
            if not isinstance(operation, dict) or method.lower() not in ("get", "post", "put", "patch", "delete"):
                continue
            if rule.endpoint in PUBLIC_ENDPOINTS:
                operation["security"] = []
                continue
            scopes = list(required_scopes(rule.endpoint))
            operation["security"] = [{"bearerAuth": []}]
            operation["x-required-scopes"] = scopes
            needs = " and ".join(f"`{scope}`" for scope in scopes)
            note = f"Needs an API key with the scope {needs} (`admin` holds every scope)."
            operation["description"] = f"{operation.get('description', '').rstrip()}\n\n{note}".strip()
            responses = operation.setdefault("responses", {})
            problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
            responses.setdefault(
                "401", {"description": "No API key, or a key that is unknown or revoked.", "content": problem}
            )
            responses.setdefault("403", {"description": f"The key lacks the scope {needs}.", "content": problem})


def document_security(api: Any) -> None:
    """Add the bearer scheme and the per-operation plugin to a flask-smorest Api (before its blueprints)."""
    plugin = SecurityDocPlugin()
    plugin.init_spec(api.spec)
    api.spec.plugins.append(plugin)
    api.spec.components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "lsk_<prefix>_<secret>",
            "description": "An API key made with `labservice create-key --name NAME --scopes interpret,read`. "
            "Scopes: `interpret` (send CBCs), `read` (read stored results), `admin` (all).",
        },
    )
