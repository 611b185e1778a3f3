"""Dashboard users: argon2id password hashes (argon2-cffi), sign-in with a lock against guessing, sessions.

- Passwords are hashed with argon2-cffi's `PasswordHasher` (argon2id, its RFC 9106 default parameters). A
  hash made with older parameters is replaced by a new one at the next successful sign-in.
- Every failed sign-in of a known user counts. After `FREE_ATTEMPTS` failures in a row, the user is locked
  for 30 s, doubling with each further failure up to 15 minutes; while locked, sign-in is refused without
  checking the password. The message is the same for an unknown user, a wrong password and a lock, and an
  unknown user costs the same argon2 verification, so the form does not tell which usernames exist.
- The session (Flask's signed cookie) holds the user id and when the user signed in. Signing out sets
  `sessions_valid_after`, which voids every session started before it, including a copy of the cookie.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from labservice.security.principal import Principal
from labservice.store.models import USER_ROLES, User
from labservice.store.repository import as_utc

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
DISPLAY_NAME_MAX_LENGTH = 200
#: Failures allowed before the lock starts; then 30 s, 60 s, 120 s … up to 15 minutes.
FREE_ATTEMPTS = 5
FIRST_LOCK = timedelta(seconds=30)
LONGEST_LOCK = timedelta(minutes=15)
#: What each role may do, as API scopes (the dashboard reads and changes referrals, and uploads batches).
ROLE_SCOPES = {"clinician": frozenset({"read", "interpret"}), "admin": frozenset({"read", "interpret", "admin"})}
#: Session keys.
SESSION_USER = "user_id"
SESSION_STARTED = "signed_in_at"

PASSWORD_HASHER = PasswordHasher()
_dummy_hash: str | None = None


class UserError(ValueError):
    """A user cannot be created as asked (bad username, role, display name or password; duplicate)."""


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: the user when it succeeded, else None (the reason stays inside)."""

    user: User | None
    reason: str  # "ok", "unknown", "wrong_password", "locked", "disabled": for the audit trail, never the page


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


def create_user(session: Session, username: str, password: str, *, role: str = "clinician",
                display_name: str | None = None, hasher: PasswordHasher = PASSWORD_HASHER,
                now: datetime | None = None) -> User:
    """Add a dashboard user; the password is kept only as an argon2id hash."""
    if not USERNAME_PATTERN.match(username or ""):
        raise UserError("a username is 1 to 100 letters, digits, '.', '_', '@' or '-', starting with a letter or "
                        "digit")
    if role not in USER_ROLES:
        raise UserError(f"unknown role {role!r}; roles are {', '.join(USER_ROLES)}")
    display = " ".join((display_name or username).split())
    if not display or len(display) > DISPLAY_NAME_MAX_LENGTH:
        raise UserError(f"a display name has 1 to {DISPLAY_NAME_MAX_LENGTH} characters")
    check_password_rules(password)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserError(f"a user named {username!r} already exists")
    user = User(username=username, display_name=display, password_hash=hasher.hash(password), role=role,
                created_at=now or datetime.now(UTC), failed_sign_ins=0)
    session.add(user)
    session.flush()
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def _dummy(hasher: PasswordHasher) -> str:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hasher.hash(secrets.token_urlsafe(16))
    return _dummy_hash


def lock_for(failures: int) -> timedelta | None:
    """How long the user is locked after this many failures in a row (None: not locked yet)."""
    if failures < FREE_ATTEMPTS:
        return None
    return min(LONGEST_LOCK, FIRST_LOCK * (2 ** (failures - FREE_ATTEMPTS)))


def sign_in(session: Session, username: str, password: str, *, hasher: PasswordHasher = PASSWORD_HASHER,
            now: datetime | None = None) -> SignIn:
    """Check a username and password; count failures, lock after too many, rehash on outdated parameters."""
    now = now or datetime.now(UTC)
    user = session.scalar(select(User).where(User.username == username)) if username else None
    if user is None:
        _verify(hasher, _dummy(hasher), password)  # the same work as for a real user
        return SignIn(None, "unknown")
    locked_until = as_utc(user.locked_until)
    if locked_until is not None and now < locked_until:
        return SignIn(None, "locked")
    if not _verify(hasher, user.password_hash, password):
        user.failed_sign_ins = (user.failed_sign_ins or 0) + 1
        lock = lock_for(user.failed_sign_ins)
        user.locked_until = now + lock if lock else None
        return SignIn(None, "wrong_password")
    if user.disabled_at is not None:
        return SignIn(None, "disabled")
    user.failed_sign_ins = 0
    user.locked_until = None
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    return SignIn(user, "ok")


def _verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def start_session(flask_session: MutableMapping[str, Any], user: User, *, now: datetime | None = None) -> None:
    """A new session for `user`: everything from before (including the CSRF token) is dropped."""
    from labservice.security.csrf import new_token

    flask_session.clear()
    flask_session[SESSION_USER] = user.id
    flask_session[SESSION_STARTED] = (now or datetime.now(UTC)).timestamp()
    new_token(flask_session)
    if hasattr(flask_session, "permanent"):
        flask_session.permanent = True  # expires after SESSION_LIFETIME_MINUTES


def end_sessions(session: Session, user_id: int, *, now: datetime | None = None) -> None:
    """Void every session of this user started until now (sign-out)."""
    user = session.get(User, user_id)
    if user is not None:
        user.sessions_valid_after = now or datetime.now(UTC)


def session_user(session: Session, flask_session: MutableMapping[str, Any]) -> User | None:
    """The signed-in user of this session, or None: no session, unknown or disabled user, or a voided session."""
    user_id, started = flask_session.get(SESSION_USER), flask_session.get(SESSION_STARTED)
    if not isinstance(user_id, int) or not isinstance(started, int | float):
        return None
    user = session.get(User, user_id)
    if user is None or user.disabled_at is not None:
        return None
    cut_off = as_utc(user.sessions_valid_after)
    if cut_off is not None and started <= cut_off.timestamp():
        return None
    return user


def user_principal(user: User) -> Principal:
    return Principal("user", user.username, ROLE_SCOPES.get(user.role, frozenset()))
