"""Security headers on every response.

- `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` and
  `Cross-Origin-Opener-Policy: same-origin` everywhere.
- `Cache-Control: no-store` on every answer but static files (JavaScript, CSS, Swagger UI's assets):
  answers that hold patient data (results, referrals, pages, batch downloads) must not stay in a browser
  or proxy cache, and telling them apart by route would be one more thing to get wrong.
- `Strict-Transport-Security: max-age=HSTS_SECONDS` on https requests (a trusted proxy's
  X-Forwarded-Proto counts) when HSTS_SECONDS is set.
- Content-Security-Policy:
  - the dashboard: `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;
    form-action 'self'; base-uri 'none'; frame-ancestors 'none'`. Its pages have no inline script or
    style and its charts are inline SVG with presentation attributes, so nothing needs more.
  - Swagger UI (`/api/docs`): its page has one inline script (flask-smorest's template), allowed by its
    SHA-256 hash, computed from the page as served; Swagger UI sets inline styles and fetches the OpenAPI
    document, so it also gets `style-src 'self' 'unsafe-inline'` and `connect-src 'self'`.
  - everything else (JSON, problem+json, CSV): `default-src 'none'; frame-ancestors 'none'; base-uri 'none'`,
    so an answer opened in a browser can run nothing.
"""

from __future__ import annotations

import base64
import hashlib
import re

from flask import Flask, Response, current_app, request

from labservice.security.remote import is_https

DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SWAGGER_UI_CSP = (
    "default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
DASHBOARD_ENDPOINTS = frozenset({"index"})
SWAGGER_UI_ENDPOINT = "api-docs.openapi_swagger_ui"
INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)

COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def inline_script_hashes(html: bytes) -> list[str]:
    """'sha256-…' sources for each inline <script> of a page, as CSP Level 2 hashes them."""
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'" for body in INLINE_SCRIPT.findall(html)
    ]


def _is_static(endpoint: str) -> bool:
    return endpoint == "static" or endpoint.endswith(".static")


def content_security_policy(response: Response) -> str:
    endpoint = request.endpoint or ""
    if request.blueprint == "dashboard" or endpoint in DASHBOARD_ENDPOINTS:
        return DASHBOARD_CSP
    if endpoint == SWAGGER_UI_ENDPOINT and response.mimetype == "text/html" and not response.is_streamed:
        hashes = " ".join(inline_script_hashes(response.get_data())) or "'none'"
        return SWAGGER_UI_CSP.format(hashes=hashes)
    return DEFAULT_CSP


def add_security_headers(response: Response) -> Response:
    for name, value in COMMON.items():
        response.headers[name] = value
    response.headers["Content-Security-Policy"] = content_security_policy(response)
    if not _is_static(request.endpoint or ""):
        response.headers["Cache-Control"] = "no-store"
        response.headers.pop("Expires", None)
    seconds = current_app.config.get("HSTS_SECONDS") or 0
    if seconds and is_https():
        response.headers["Strict-Transport-Security"] = f"max-age={int(seconds)}"
    return response


def register_security_headers(app: Flask) -> None:
    app.after_request(add_security_headers)
