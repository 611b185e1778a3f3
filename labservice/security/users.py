"""Dashboard users: argon2id password hashes (argon2-cffi), sign-in guarded against guessing, sessions.

- Passwords are hashed with argon2-cffi's `PasswordHasher` (argon2id, its RFC 9106 default parameters). A
  hash made with older parameters is replaced by a new one at the next successful sign-in.
- **Every sign-in costs one argon2 verification**, whatever happens: an unknown username is checked against a
  dummy hash made with the same parameters, and a locked or slowed attempt is still verified (and its result
  ignored). The page says the same for all. So neither the answer nor its time tells which usernames exist.
- **Locks are per (user, address).** After `FREE_ATTEMPTS` failures in a row of one user from one address,
  that address is locked out for that user for 30 s, doubling with each further failure up to 15 minutes;
  the right password does not open the lock early. Guesses from one address therefore never lock the user
  out elsewhere (table `sign_in_locks`).
- **A per-user cap slows, it does not lock.** After `USER_FREE_FAILURES` failures in a row from any
  addresses (an attacker rotating addresses), one attempt for that user is weighed at most every
  `USER_SLOW_DOWN`; attempts in between fail without being weighed and are not counted. Addresses the user
  has signed in from before are exempt, so the user's own workstation keeps working during such an attack.
- The address is the client's (TRUSTED_PROXIES applied, labservice.security.remote); the rate limits
  (labservice.middleware.ratelimit) bound the attempts per address and in all.
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
from sqlalchemy import and_, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labservice.security.principal import Principal
from labservice.store.models import USER_ROLES, SignInLock, User
from labservice.store.repository import as_utc

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
DISPLAY_NAME_MAX_LENGTH = 200
#: Failures of one user from one address allowed before that pair is locked; then 30 s, 60 s … up to 15 minutes.
FREE_ATTEMPTS = 5
FIRST_LOCK = timedelta(seconds=30)
LONGEST_LOCK = timedelta(minutes=15)
#: Failures of one user in a row, from any addresses, before the slow-down; then one attempt every USER_SLOW_DOWN.
USER_FREE_FAILURES = 20
USER_SLOW_DOWN = timedelta(seconds=10)
#: A (user, address) record without a success is forgotten after this long without a failure.
FORGET_FAILURES_AFTER = 2 * LONGEST_LOCK
#: An address the user signed in from stays known (exempt from the slow-down) this long.
KNOWN_ADDRESS_DAYS = 90
UNKNOWN_ADDRESS = "unknown"
#: What each role may do, as API scopes (the dashboard reads and changes referrals, and uploads batches).
ROLE_SCOPES = {"clinician": frozenset({"read", "interpret"}), "admin": frozenset({"read", "interpret", "admin"})}
#: Session keys.
SESSION_USER = "user_id"
SESSION_STARTED = "signed_in_at"

PASSWORD_HASHER = PasswordHasher()
_dummy_hashes: dict[tuple[Any, ...], str] = {}


class UserError(ValueError):
    """A user cannot be created as asked (bad username, role, display name or password; duplicate)."""


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: the user when it succeeded, else None (the reason stays inside)."""

    user: User | None
    #: "ok", "unknown", "wrong_password", "locked", "slowed", "disabled": for the audit trail, never the page.
    reason: str


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


def create_user(
    session: Session,
    username: str,
    password: str,
    *,
    role: str = "clinician",
    display_name: str | None = None,
    hasher: PasswordHasher = PASSWORD_HASHER,
    now: datetime | None = None,
) -> User:
    """Add a dashboard user; the password is kept only as an argon2id hash."""
    if not USERNAME_PATTERN.match(username or ""):
        raise UserError("a username is 1 to 100 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
    if role not in USER_ROLES:
        raise UserError(f"unknown role {role!r}; roles are {', '.join(USER_ROLES)}")
    display = " ".join((display_name or username).split())
    if not display or len(display) > DISPLAY_NAME_MAX_LENGTH:
        raise UserError(f"a display name has 1 to {DISPLAY_NAME_MAX_LENGTH} characters")
    check_password_rules(password)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserError(f"a user named {username!r} already exists")
    user = User(
        username=username,
        display_name=display,
        password_hash=hasher.hash(password),
        role=role,
        created_at=now or datetime.now(UTC),
        failed_sign_ins=0,
    )
    session.add(user)
    session.flush()
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def dummy_hash(hasher: PasswordHasher = PASSWORD_HASHER) -> str:
    """A hash of a random, forgotten password with `hasher`'s parameters, to verify unknown usernames against
    at the same cost as a real user's. Made once per process and parameters (`warm_up` makes it at start)."""
    key = (hasher.time_cost, hasher.memory_cost, hasher.parallelism, hasher.hash_len, hasher.salt_len, hasher.type)
    if key not in _dummy_hashes:
        _dummy_hashes[key] = hasher.hash(secrets.token_urlsafe(16))
    return _dummy_hashes[key]


def warm_up() -> None:
    """Make the dummy hash now, so the first unknown username costs no extra hashing."""
    dummy_hash(PASSWORD_HASHER)


def lock_for(failures: int) -> timedelta | None:
    """How long a (user, address) is locked after this many failures in a row (None: not locked yet)."""
    if failures < FREE_ATTEMPTS:
        return None
    return min(LONGEST_LOCK, FIRST_LOCK * (2 ** (failures - FREE_ATTEMPTS)))


def sign_in(
    session: Session,
    username: str,
    password: str,
    *,
    address: str | None = None,
    hasher: PasswordHasher = PASSWORD_HASHER,
    now: datetime | None = None,
) -> SignIn:
    """Check a username and password from `address`; one argon2 verification whatever the outcome; count
    failures per (user, address) and per user; rehash on outdated parameters (see the module docstring)."""
    now = now or datetime.now(UTC)
    where = (address or UNKNOWN_ADDRESS)[:64]
    valid_name = bool(username) and "\x00" not in username  # NUL: no such user, and PostgreSQL refuses it
    user = session.scalar(select(User).where(User.username == username)) if valid_name else None
    right = _verify(hasher, user.password_hash if user is not None else dummy_hash(hasher), password)
    if user is None:
        return SignIn(None, "unknown")
    pair = session.scalar(select(SignInLock).where(SignInLock.user_id == user.id, SignInLock.address == where))
    locked_until = as_utc(pair.locked_until) if pair is not None else None
    if locked_until is not None and now < locked_until:
        return SignIn(None, "locked")
    known_address = pair is not None and pair.succeeded_at is not None
    slowed_until = as_utc(user.locked_until)
    if not known_address and slowed_until is not None and now < slowed_until:
        return SignIn(None, "slowed")
    if not right:
        _count_failure(session, user, pair, where, now)
        return SignIn(None, "wrong_password")
    if user.disabled_at is not None:
        return SignIn(None, "disabled")
    _count_success(session, user, pair, where, now)
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    return SignIn(user, "ok")


def _pair_row(session: Session, user: User, pair: SignInLock | None, where: str, now: datetime) -> SignInLock:
    """The (user, address) row, made if there is none. Another worker may make it between our look and our
    insert (two guesses at once): the insert is then undone alone, and that worker's row used."""
    if pair is not None:
        return pair
    _forget_stale(session, user.id, now)
    try:
        with session.begin_nested():
            pair = SignInLock(user_id=user.id, address=where, failures=0, updated_at=now)
            session.add(pair)
    except IntegrityError:
        pair = session.scalar(select(SignInLock).where(SignInLock.user_id == user.id, SignInLock.address == where))
        if pair is None:  # made and gone again (forgotten): start afresh
            return _pair_row(session, user, None, where, now)
    return pair


def _count_failure(session: Session, user: User, pair: SignInLock | None, where: str, now: datetime) -> None:
    pair = _pair_row(session, user, pair, where, now)
    pair.failures = (pair.failures or 0) + 1
    lock = lock_for(pair.failures)
    pair.locked_until = now + lock if lock else None
    pair.updated_at = now
    user.failed_sign_ins = (user.failed_sign_ins or 0) + 1
    if user.failed_sign_ins >= USER_FREE_FAILURES:
        user.locked_until = now + USER_SLOW_DOWN  # the next attempt for this user is weighed from then on
    session.flush()


def _count_success(session: Session, user: User, pair: SignInLock | None, where: str, now: datetime) -> None:
    pair = _pair_row(session, user, pair, where, now)
    pair.failures, pair.locked_until, pair.updated_at, pair.succeeded_at = 0, None, now, now
    user.failed_sign_ins = 0
    user.locked_until = None
    session.flush()


def _forget_stale(session: Session, user_id: int, now: datetime) -> None:
    """Drop this user's (user, address) records that no longer matter: failures long past, old known addresses."""
    session.execute(
        delete(SignInLock).where(
            SignInLock.user_id == user_id,
            and_(SignInLock.updated_at < now - FORGET_FAILURES_AFTER, SignInLock.succeeded_at.is_(None))
            | (SignInLock.succeeded_at < now - timedelta(days=KNOWN_ADDRESS_DAYS)),
        )
    )


def _verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def start_session(flask_session: MutableMapping[str, Any], user: User, *, now: datetime | None = None) -> None:
    """A new session for `user`: everything from before (including the CSRF token) is dropped."""
    from labservice.middleware.csrf import new_token

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
