"""API keys: `lsk_<prefix>_<secret>`, shown once; the database keeps the prefix and a SHA-256 of the secret.

- The prefix (12 hex characters) finds the row; the secret (32 random bytes, URL-safe base64) proves the
  holder. Keys are high-entropy, so a fast hash is enough (a slow password hash would add nothing but
  latency to every request) and the comparison is constant-time.
- Scopes: `interpret` (send CBCs), `read` (read stored results), `admin` (everything, see Principal.has).
- A revoked key stops working at once here; a worker that cached it refuses it within API_KEY_CACHE_SECONDS
  (labservice.security.key_cache). `last_used_at` is written at most once a minute per key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labservice.security.principal import SCOPES, Principal
from labservice.store.models import ApiKey
from labservice.store.repository import as_utc

KEY_PREFIX = "lsk"
PREFIX_HEX_CHARS = 12
SECRET_BYTES = 32
HASH_SCHEME = "sha256"
#: `last_used_at` is refreshed at most this often (a write per request would cost more than it tells).
LAST_USED_RESOLUTION = timedelta(minutes=1)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
KEY_PATTERN = re.compile(rf"^{KEY_PREFIX}_([0-9a-f]{{{PREFIX_HEX_CHARS}}})_([A-Za-z0-9_-]{{20,200}})$")


class ApiKeyError(ValueError):
    """A key cannot be created or changed as asked (bad name, unknown scope, duplicate, not found)."""


@dataclass(frozen=True)
class NewKey:
    """A key just created: `token` is the whole key, shown once and never stored."""

    name: str
    token: str
    scopes: tuple[str, ...]


def hash_secret(secret: str) -> str:
    return f"{HASH_SCHEME}:{hashlib.sha256(secret.encode('ascii')).hexdigest()}"


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    """'interpret,read' -> ('interpret', 'read'); unknown or no scope raises ApiKeyError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown:
        raise ApiKeyError(f"unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
    if not scopes:
        raise ApiKeyError(f"give at least one scope ({', '.join(SCOPES)})")
    return scopes


def create_key(session: Session, name: str, scopes: Iterable[str], *, now: datetime | None = None) -> NewKey:
    """Add a key named `name` (letters, digits, . _ @ -) with these scopes; the token is in the answer only."""
    if not NAME_PATTERN.match(name or ""):
        raise ApiKeyError(
            "a key name is 1 to 100 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    scope_list = parse_scopes(scopes)
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise ApiKeyError(f"a key named {name!r} already exists (revoke-key it, or choose another name)")
    while True:
        prefix = secrets.token_hex(PREFIX_HEX_CHARS // 2)
        if session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            break
    secret = secrets.token_urlsafe(SECRET_BYTES)
    session.add(
        ApiKey(
            name=name,
            prefix=prefix,
            secret_hash=hash_secret(secret),
            scopes=list(scope_list),
            created_at=now or datetime.now(UTC),
        )
    )
    session.flush()
    return NewKey(name, f"{KEY_PREFIX}_{prefix}_{secret}", scope_list)


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def revoke_key(session: Session, name: str, *, now: datetime | None = None) -> ApiKey:
    """Revoke the key named `name` (at once; revoking twice keeps the first time)."""
    key = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if key is None:
        raise ApiKeyError(f"no key named {name!r}")
    if key.revoked_at is None:
        key.revoked_at = now or datetime.now(UTC)
    return key


def authenticate_key(session: Session, token: str, *, now: datetime | None = None) -> Principal | None:
    """The principal of a valid, unrevoked key, or None (malformed, unknown, wrong secret or revoked)."""
    match = KEY_PATTERN.match(token)
    if match is None:
        return None
    prefix, secret = match.groups()
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    # Hash even when no row matched, so that an unknown prefix costs the same time as a wrong secret.
    offered = hash_secret(secret)
    stored = key.secret_hash if key is not None else hash_secret("")
    if not hmac.compare_digest(offered.encode(), stored.encode()) or key is None or key.revoked_at is not None:
        return None
    now = now or datetime.now(UTC)
    last = as_utc(key.last_used_at)  # SQLite gives naive datetimes back
    if last is None or now - last >= LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return Principal("api_key", key.name, frozenset(key.scopes or ()))
