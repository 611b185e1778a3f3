"""CDS Hooks 2.0 "Trusting CDS Clients": verify the JWT a CDS client sends as `Authorization: Bearer`.

The specification asks for a JWT signed with the client's private key (asymmetric only: never `none`,
never HMAC; ES384 and RS384 recommended) whose header has `alg`, `kid` and `typ` (optionally `jku`) and
whose payload has `iss`, `aud` (the URL of the CDS Service endpoint called), `exp`, `iat` and `jti`.
Services "SHOULD maintain an allowlist of the iss and jku fields".

Configuration (`CDS_JWT_ISSUERS`, JSON): one entry per trusted issuer, with its keys either as a JWK Set URL
or as a PEM public key:

    {"https://ehr.example.org": {"jwks_url": "https://ehr.example.org/.well-known/jwks.json"},
     "https://other.example.org": {"public_key": "-----BEGIN PUBLIC KEY-----\\n...", "algorithms": ["RS384"]}}

A `jku` in the header must be the issuer's `jwks_url` or listed in its `jku` (a list of URLs); any other is
refused, and keys are only ever fetched from allowlisted URLs. Checks, in order: issuer known; algorithm
allowed (`algorithms`, default ES384 and RS384); `kid` present; signature; `aud` is this endpoint's URL
under PUBLIC_BASE_URL (the caller of `verify` passes it; never the request's Host header);
`exp` in the future and at most `CDS_JWT_MAX_LIFETIME` seconds ahead; `iat` not in the future; `jti`
present and not seen before from this issuer (kept in the database until the JWT expires, so a replay is
refused by every worker). `CDS_JWT_LEEWAY` seconds of clock skew are allowed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labservice.store.models import CdsJwtId

DEFAULT_ALGORITHMS = ("ES384", "RS384")
#: Asymmetric algorithms an issuer may be configured with (HMAC and `none` are refused by the specification).
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
JWKS_TIMEOUT_SECONDS = 3
JWKS_CACHE_SECONDS = 300


class CdsJwtError(Exception):
    """The JWT is not acceptable; the message says why (no secret in it) and goes into the 401 detail."""


@dataclass(frozen=True)
class Issuer:
    iss: str
    jwks_url: str | None = None
    public_key: Any = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    jku: tuple[str, ...] = ()


@dataclass
class TrustedIssuers:
    """The configured issuers, with one cached JWK Set client per URL (the keys are fetched at most every
    JWKS_CACHE_SECONDS, or again when an unknown `kid` arrives)."""

    issuers: dict[str, Issuer] = field(default_factory=dict)
    _clients: dict[str, jwt.PyJWKClient] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def jwks_client(self, url: str) -> jwt.PyJWKClient:
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = jwt.PyJWKClient(
                    url, cache_jwk_set=True, lifespan=JWKS_CACHE_SECONDS, timeout=JWKS_TIMEOUT_SECONDS
                )
                self._clients[url] = client
            return client


def load_issuers(config: str | Mapping[str, Any] | None) -> TrustedIssuers:
    """Parse CDS_JWT_ISSUERS (JSON text or a mapping); a mistake raises ValueError naming the issuer."""
    if not config:
        return TrustedIssuers()
    raw = json.loads(config) if isinstance(config, str) else config
    if not isinstance(raw, Mapping):
        raise ValueError("CDS_JWT_ISSUERS must be a JSON object: {issuer: {jwks_url | public_key: ...}}")
    issuers: dict[str, Issuer] = {}
    for iss, entry in raw.items():
        if not isinstance(entry, Mapping) or not (entry.get("jwks_url") or entry.get("public_key")):
            raise ValueError(f"CDS_JWT_ISSUERS[{iss!r}] needs a jwks_url or a public_key")
        algorithms = tuple(entry.get("algorithms") or DEFAULT_ALGORITHMS)
        bad = [name for name in algorithms if name not in ASYMMETRIC_ALGORITHMS]
        if bad:
            raise ValueError(f"CDS_JWT_ISSUERS[{iss!r}]: {bad[0]} is not an asymmetric signing algorithm")
        public_key = None
        if entry.get("public_key"):
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            public_key = load_pem_public_key(str(entry["public_key"]).encode())
        jku = entry.get("jku") or ()
        issuers[str(iss)] = Issuer(
            str(iss), entry.get("jwks_url"), public_key, algorithms, tuple([jku] if isinstance(jku, str) else jku)
        )
    return TrustedIssuers(issuers)


@dataclass(frozen=True)
class VerifiedClient:
    issuer: str
    subject: str | None
    jti: str
    tenant: str | None


def verify(
    token: str,
    trusted: TrustedIssuers,
    audiences: Sequence[str],
    session: Session,
    *,
    leeway: int = 60,
    max_lifetime: int = 300,
    now: datetime | None = None,
) -> VerifiedClient:
    """Check the CDS client's JWT for a call to one of `audiences`; raises CdsJwtError with the reason."""
    now = now or datetime.now(UTC)
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise CdsJwtError("the bearer token is not a JWT") from None
    iss = unverified.get("iss")
    if not isinstance(iss, str) or iss not in trusted.issuers:
        raise CdsJwtError("the JWT's issuer (iss) is not a trusted CDS client")
    issuer = trusted.issuers[iss]
    alg = header.get("alg")
    if alg not in issuer.algorithms:
        raise CdsJwtError(f"the JWT's algorithm must be one of {', '.join(issuer.algorithms)}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise CdsJwtError("the JWT header has no key id (kid)")
    key = _signing_key(trusted, issuer, header, kid)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=list(issuer.algorithms),
            audience=list(audiences),
            issuer=iss,
            leeway=leeway,
            options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_iat": True},
        )
    except jwt.ExpiredSignatureError:
        raise CdsJwtError("the JWT has expired") from None
    except jwt.InvalidAudienceError:
        raise CdsJwtError(f"the JWT's audience (aud) must be this endpoint: {audiences[0]}") from None
    except jwt.ImmatureSignatureError:
        raise CdsJwtError("the JWT is not valid yet (iat or nbf in the future)") from None
    except jwt.MissingRequiredClaimError as error:
        raise CdsJwtError(f"the JWT has no {error.claim} claim") from None
    except jwt.InvalidSignatureError:
        raise CdsJwtError("the JWT's signature does not verify with the issuer's key") from None
    except jwt.PyJWTError as error:
        raise CdsJwtError(f"the JWT is not valid: {error}") from None
    exp = float(claims["exp"])
    if exp - now.timestamp() > max_lifetime + leeway:
        raise CdsJwtError(f"the JWT expires more than {max_lifetime} seconds from now")
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise CdsJwtError("the JWT's jti must be a string of 1 to 255 characters")
    _remember_jti(session, iss, jti, datetime.fromtimestamp(exp + leeway, UTC), now)
    subject = claims.get("sub")
    tenant = claims.get("tenant")
    return VerifiedClient(
        iss, subject if isinstance(subject, str) else None, jti, tenant if isinstance(tenant, str) else None
    )


def _signing_key(trusted: TrustedIssuers, issuer: Issuer, header: Mapping[str, Any], kid: str) -> Any:
    jku = header.get("jku")
    if jku is not None and jku != issuer.jwks_url and jku not in issuer.jku:
        raise CdsJwtError("the JWT's jku is not an allowlisted JWK Set URL for its issuer")
    url = jku or issuer.jwks_url
    if url is None:
        return issuer.public_key
    try:
        return trusted.jwks_client(url).get_signing_key(kid).key
    except jwt.PyJWKClientConnectionError:
        raise CdsJwtError("the issuer's JWK Set could not be fetched") from None
    except jwt.PyJWKClientError:
        raise CdsJwtError("no key with the JWT's kid in the issuer's JWK Set") from None
    except jwt.PyJWTError:
        raise CdsJwtError("the issuer's JWK Set is not usable") from None


def _remember_jti(session: Session, iss: str, jti: str, expires_at: datetime, now: datetime) -> None:
    """Record the jti (unique per issuer); a second use is a replay. Expired ids are swept as we go."""
    session.execute(delete(CdsJwtId).where(CdsJwtId.expires_at < now))
    try:
        with session.begin_nested():
            session.add(CdsJwtId(issuer=iss[:500], jti=jti, expires_at=expires_at))
    except IntegrityError:
        raise CdsJwtError("this JWT (jti) was already used: a CDS client signs a new JWT for every call") from None
