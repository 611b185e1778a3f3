"""Test credentials: every app made by `make_app` gets an all-scope API key and a signed-in dashboard user, and
its `test_client()` sends both (the key as Authorization: Bearer, the user as a session cookie). Tests of
authentication itself use `anonymous_client` or a plain FlaskClient."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from labservice.middleware.csrf import SESSION_KEY as CSRF_SESSION_KEY
from labservice.security.keys import create_key
from labservice.security.principal import SCOPES
from labservice.security.users import start_session
from labservice.store.models import User

CREDENTIALS = "tests.credentials"
TEST_PASSWORD = "test-password-not-secret"
TEST_DISPLAY_NAME = "Test Clinician"


@dataclass(frozen=True)
class Credentials:
    api_key: str
    key_name: str
    user_id: int
    username: str


@functools.cache
def test_password_hash() -> str:
    """One argon2 hash of TEST_PASSWORD per run (hashing costs tens of milliseconds)."""
    return PasswordHasher().hash(TEST_PASSWORD)


def add_test_credentials(app: Flask) -> Credentials:
    """An all-scope key and an admin user in the app's database; the app's test clients use them."""
    suffix = uuid.uuid4().hex[:8]
    with app.extensions["labservice.database"].session() as db:
        key = create_key(db, f"tests-{suffix}", SCOPES)
        user = User(
            username=f"tests-{suffix}",
            display_name=TEST_DISPLAY_NAME,
            password_hash=test_password_hash(),
            role="admin",
            created_at=datetime.now(UTC),
            failed_sign_ins=0,
        )
        db.add(user)
        db.flush()
        credentials = Credentials(key.token, key.name, user.id, user.username)
    app.extensions[CREDENTIALS] = credentials
    app.test_client_class = CredentialedClient
    return credentials


class CredentialedClient(FlaskClient):
    """A test client that sends the app's test API key and is signed in to the dashboard as its test user."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        credentials: Credentials | None = self.application.extensions.get(CREDENTIALS)
        if credentials is None:
            return
        self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {credentials.api_key}"
        if self._cookies is not None:
            with self.session_transaction() as session:
                start_session(session, _UserId(credentials.user_id))  # type: ignore[arg-type]


@dataclass(frozen=True)
class _UserId:
    id: int


def anonymous(app: Flask) -> FlaskClient:
    """A client with no key and no session."""
    return FlaskClient(app, app.response_class, use_cookies=True)


def csrf_token(client: FlaskClient) -> str:
    """The CSRF token of this client's dashboard session (what the hidden form field carries)."""
    with client.session_transaction() as session:
        return session[CSRF_SESSION_KEY]


def set_display_name(client: FlaskClient, display_name: str) -> None:
    """Rename the signed-in test user (the name status changes are recorded under)."""
    credentials: Credentials = client.application.extensions[CREDENTIALS]
    with client.application.extensions["labservice.database"].session() as db:
        db.get(User, credentials.user_id).display_name = display_name
