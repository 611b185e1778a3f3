"""Dashboard users: argon2id hashes, the sign-in form, the lock against guessing, sessions, sign-out, and the
create-user command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher, extract_parameters
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from labservice.security import users
from labservice.security.users import UserError, create_user, lock_for, sign_in
from labservice.store.database import Database
from labservice.store.models import SignInLock, User
from tests.api.helpers import assert_problem
from tests.credentials import anonymous

PASSWORD = "correct horse battery staple"
ATTACKER, WORKSTATION = "203.0.113.7", "198.51.100.20"
LABSERVICE = Path(sys.executable).parent / "labservice"
#: Cheap argon2 parameters for the tests that only need *a* hash (the default costs ~64 MiB and tens of ms).
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def database(database_url: str):
    database = Database.connect(database_url)
    yield database
    database.engine.dispose()


def add_user(
    app: Flask,
    username: str = "ada",
    role: str = "clinician",
    display_name: str = "Dr Ada Lovelace",
    hasher: PasswordHasher = CHEAP,
) -> int:
    with app.extensions["labservice.database"].session() as session:
        return create_user(session, username, PASSWORD, role=role, display_name=display_name, hasher=hasher).id


def token_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in_form(client: FlaskClient, username: str, password: str, next_url: str | None = None):
    page = client.get("/dashboard/sign-in" + (f"?next={next_url}" if next_url else ""))
    assert page.status_code == 200
    data = {"username": username, "password": password, "csrf_token": token_of(page.text)}
    if next_url:
        data["next"] = next_url
    return client.post("/dashboard/sign-in", data=data)


# --- the model -------------------------------------------------------------------------------------


def test_the_password_is_kept_as_an_argon2id_hash(database):
    with database.session() as session:
        user = create_user(session, "ada", PASSWORD, display_name="  Dr   Ada ")
    with database.session() as session:
        row = session.scalar(select(User).where(User.username == "ada"))
        assert row.password_hash.startswith("$argon2id$")
        assert PASSWORD not in row.password_hash
        assert PasswordHasher().verify(row.password_hash, PASSWORD)
        assert (row.display_name, row.role, row.failed_sign_ins) == ("Dr Ada", "clinician", 0)
    assert user.id == row.id


@pytest.mark.parametrize(
    ("username", "password", "role", "message"),
    [
        ("ada", "short", "clinician", "at least 12 characters"),
        ("ada", "x" * 1025, "clinician", "at most 1024"),
        ("has space", PASSWORD, "clinician", "a username is"),
        ("", PASSWORD, "clinician", "a username is"),
        ("ada", PASSWORD, "superuser", "unknown role"),
    ],
)
def test_user_rules(database, username, password, role, message):
    with database.session() as session, pytest.raises(UserError, match=message):
        create_user(session, username, password, role=role, hasher=CHEAP)


def test_a_username_is_used_once(database):
    with database.session() as session:
        create_user(session, "ada", PASSWORD, hasher=CHEAP)
    with database.session() as session, pytest.raises(UserError, match="already exists"):
        create_user(session, "ada", PASSWORD, hasher=CHEAP)


def test_an_outdated_hash_is_replaced_at_the_next_sign_in(database):
    with database.session() as session:
        create_user(session, "ada", PASSWORD, hasher=CHEAP)
        old = session.scalar(select(User.password_hash).where(User.username == "ada"))
    current = PasswordHasher()
    assert current.check_needs_rehash(old)
    with database.session() as session:
        assert sign_in(session, "ada", PASSWORD, hasher=current).user is not None
    with database.session() as session:
        new = session.scalar(select(User.password_hash).where(User.username == "ada"))
    assert new != old and not current.check_needs_rehash(new) and current.verify(new, PASSWORD)


def test_a_wrong_password_does_not_rehash(database):
    with database.session() as session:
        create_user(session, "ada", PASSWORD, hasher=CHEAP)
        old = session.scalar(select(User.password_hash).where(User.username == "ada"))
    with database.session() as session:
        assert sign_in(session, "ada", "wrong password!!", hasher=PasswordHasher()).user is None
    with database.session() as session:
        assert session.scalar(select(User.password_hash).where(User.username == "ada")) == old


@pytest.mark.parametrize(
    ("failures", "lock"),
    [
        (0, None),
        (4, None),
        (5, timedelta(seconds=30)),
        (6, timedelta(seconds=60)),
        (7, timedelta(seconds=120)),
        (9, timedelta(seconds=480)),
        (10, timedelta(minutes=15)),
        (40, timedelta(minutes=15)),
    ],
)
def test_the_lock_grows_with_failures_up_to_15_minutes(failures, lock):
    assert lock_for(failures) == lock


def test_five_failures_lock_the_address_even_with_the_right_password(database):
    start = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    with database.session() as session:
        create_user(session, "ada", PASSWORD, hasher=CHEAP)
    for attempt in range(5):
        with database.session() as session:
            assert (
                sign_in(session, "ada", f"guess {attempt:04d}!", address=ATTACKER, hasher=CHEAP, now=start).reason
                == "wrong_password"
            )
    with database.session() as session:
        assert (
            sign_in(session, "ada", PASSWORD, address=ATTACKER, hasher=CHEAP, now=start + timedelta(seconds=29)).reason
            == "locked"
        )
    with database.session() as session:  # the lock has passed: the right password works and resets the count
        outcome = sign_in(session, "ada", PASSWORD, address=ATTACKER, hasher=CHEAP, now=start + timedelta(seconds=31))
        assert outcome.reason == "ok" and outcome.user is not None
    with database.session() as session:
        row = session.scalar(select(User).where(User.username == "ada"))
        assert (row.failed_sign_ins, row.locked_until) == (0, None)
        pair = session.scalar(select(SignInLock).where(SignInLock.address == ATTACKER))
        assert (pair.failures, pair.locked_until) == (0, None)


def test_guesses_from_one_address_do_not_lock_the_user_out_from_another(database):
    start = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    with database.session() as session:
        create_user(session, "ada", PASSWORD, hasher=CHEAP)
    for attempt in range(12):
        with database.session() as session:
            sign_in(session, "ada", f"guess {attempt:04d}!", address=ATTACKER, hasher=CHEAP, now=start)
    with database.session() as session:
        assert sign_in(session, "ada", PASSWORD, address=ATTACKER, hasher=CHEAP, now=start).reason == "locked"
    with database.session() as session:
        assert sign_in(session, "ada", PASSWORD, address=WORKSTATION, hasher=CHEAP, now=start).reason == "ok"


def test_failures_from_many_addresses_slow_the_user_down_but_do_not_lock(database):
    """An attacker rotating addresses: after USER_FREE_FAILURES, one attempt every USER_SLOW_DOWN is weighed;
    the attempts in between are refused uncounted, and the user's known address is not slowed at all."""
    start = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    with database.session() as session:
        create_user(session, "ada", PASSWORD, hasher=CHEAP)
    with database.session() as session:
        assert sign_in(session, "ada", PASSWORD, address=WORKSTATION, hasher=CHEAP, now=start).reason == "ok"
    for attempt in range(users.USER_FREE_FAILURES):
        with database.session() as session:
            assert (
                sign_in(
                    session, "ada", "a wrong guess!", address=f"203.0.113.{attempt}", hasher=CHEAP, now=start
                ).reason
                == "wrong_password"
            )
    later = start + users.USER_SLOW_DOWN / 2
    with database.session() as session:
        assert sign_in(session, "ada", PASSWORD, address="198.51.100.1", hasher=CHEAP, now=later).reason == "slowed"
        assert (
            sign_in(session, "ada", "a wrong guess!", address="198.51.100.2", hasher=CHEAP, now=later).reason
            == "slowed"
        )
    with database.session() as session:
        assert session.scalar(select(User.failed_sign_ins)) == users.USER_FREE_FAILURES  # slowed ones not counted
        assert sign_in(session, "ada", PASSWORD, address=WORKSTATION, hasher=CHEAP, now=later).reason == "ok"
    with database.session() as session:  # the success ended the slow-down for every address
        assert sign_in(session, "ada", PASSWORD, address="198.51.100.1", hasher=CHEAP, now=later).reason == "ok"


def test_the_slow_down_passes_by_itself(database):
    start = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    with database.session() as session:
        create_user(session, "ada", PASSWORD, hasher=CHEAP)
    for attempt in range(users.USER_FREE_FAILURES):
        with database.session() as session:
            sign_in(session, "ada", "a wrong guess!", address=f"203.0.113.{attempt}", hasher=CHEAP, now=start)
    after = start + users.USER_SLOW_DOWN + timedelta(seconds=1)
    with database.session() as session:
        assert sign_in(session, "ada", PASSWORD, address="198.51.100.1", hasher=CHEAP, now=after).reason == "ok"


class CountingHasher(PasswordHasher):
    """A PasswordHasher (default parameters) that counts its verifications."""

    def __init__(self) -> None:
        super().__init__()
        self.verifications = 0

    def verify(self, hash, password):  # argon2-cffi's own parameter names
        self.verifications += 1
        return super().verify(hash, password)


def test_every_failed_sign_in_costs_one_argon2_verification_with_the_same_parameters(database):
    """Unknown user, wrong password, locked address, slowed user, disabled user and success: one verification
    each, and the unknown user's is against a hash with the real users' parameters, so the time is the same."""
    hasher = CountingHasher()
    start = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    with database.session() as session:
        for name in ("ada", "locked", "slowed", "gone"):
            create_user(session, name, PASSWORD, hasher=hasher)
        session.scalar(select(User).where(User.username == "gone")).disabled_at = start
        slowed = session.scalar(select(User).where(User.username == "slowed"))
        slowed.locked_until = start + timedelta(minutes=1)
        locked = session.scalar(select(User).where(User.username == "locked"))
        session.add(
            SignInLock(
                user_id=locked.id,
                address=ATTACKER,
                failures=7,
                locked_until=start + timedelta(minutes=2),
                updated_at=start,
            )
        )
    cases = {
        "unknown": ("nobody", "whatever it is!"),
        "wrong_password": ("ada", "not the password"),
        "locked": ("locked", PASSWORD),
        "slowed": ("slowed", PASSWORD),
        "disabled": ("gone", PASSWORD),
        "ok": ("ada", PASSWORD),
    }
    counted = {}
    for reason, (username, password) in cases.items():
        before = hasher.verifications
        with database.session() as session:
            outcome = sign_in(session, username, password, address=ATTACKER, hasher=hasher, now=start)
        assert outcome.reason == reason
        counted[reason] = hasher.verifications - before
    assert counted == dict.fromkeys(cases, 1)
    with database.session() as session:
        real = session.scalar(select(User.password_hash).where(User.username == "ada"))
    assert extract_parameters(users.dummy_hash(hasher)) == extract_parameters(real)


def test_a_guess_racing_another_for_the_same_address_is_counted_not_an_error(database):
    """Two workers see no (user, address) row and both insert one: the second insert must fall back to the
    first worker's row (here: the row exists, and the failure is counted as if it had not been seen)."""
    start = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    with database.session() as session:
        user_id = create_user(session, "ada", PASSWORD, hasher=CHEAP).id
        session.add(SignInLock(user_id=user_id, address=ATTACKER, failures=2, updated_at=start))
    with database.session() as session:
        users._count_failure(session, session.get(User, user_id), None, ATTACKER, start)
    with database.session() as session:
        assert session.scalars(select(SignInLock.failures)).all() == [3]


def test_a_username_with_nul_is_an_unknown_user(database):
    with database.session() as session:
        assert sign_in(session, "ada\x00", PASSWORD, hasher=CHEAP).reason == "unknown"


def test_unknown_and_disabled_users_cannot_sign_in(database):
    with database.session() as session:
        assert sign_in(session, "nobody", PASSWORD, hasher=CHEAP).reason == "unknown"
        user = create_user(session, "gone", PASSWORD, hasher=CHEAP)
        user.disabled_at = datetime.now(UTC)
    with database.session() as session:
        assert sign_in(session, "gone", PASSWORD, hasher=CHEAP).reason == "disabled"


# --- the sign-in form ------------------------------------------------------------------------------


def test_the_dashboard_sends_strangers_to_the_sign_in_page(app):
    response = anonymous(app).get("/dashboard/patients/P-1?x=1")
    assert response.status_code == 303
    assert response.location == "/dashboard/sign-in?next=/dashboard/patients/P-1?x%3D1"
    page = anonymous(app).get(response.location).text
    assert 'name="next" value="/dashboard/patients/P-1?x=1"' in page
    assert 'id="sign-out-form"' not in page and "Worklist</a>" not in page  # no navigation before signing in


def test_signing_in_with_the_form_opens_the_dashboard_at_the_page_asked_for(app):
    add_user(app)
    client = anonymous(app)
    response = sign_in_form(client, "ada", PASSWORD, next_url="/dashboard/batches")
    assert response.status_code == 303 and response.location == "/dashboard/batches"
    page = client.get("/dashboard/batches")
    assert page.status_code == 200
    assert "Signed in as <strong>Dr Ada Lovelace</strong>" in page.text
    # Signed in already: the sign-in page sends you on.
    assert client.get("/dashboard/sign-in").status_code == 303


def test_the_session_cookie_is_httponly_samesite_lax_and_expires(app):
    add_user(app)
    response = sign_in_form(anonymous(app), "ada", PASSWORD)
    cookie = next(
        value for name, value in response.headers.items() if name == "Set-Cookie" and value.startswith("session=")
    )
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "expires", "path"} <= attributes and "secure" not in attributes
    assert "SameSite=Lax" in cookie
    expires = datetime.strptime(re.search(r"Expires=([^;]+)", cookie).group(1), "%a, %d %b %Y %H:%M:%S GMT")
    minutes = (expires.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds() / 60
    assert 478 < minutes <= 480  # SESSION_LIFETIME_MINUTES


def test_the_session_cookie_is_secure_when_configured(make_app):
    app = make_app(SESSION_COOKIE_SECURE=True, SESSION_LIFETIME_MINUTES=30)
    add_user(app)
    client = anonymous(app)
    page = client.get("/dashboard/sign-in", base_url="https://localhost")
    response = client.post(
        "/dashboard/sign-in",
        base_url="https://localhost",
        data={"username": "ada", "password": PASSWORD, "csrf_token": token_of(page.text)},
    )
    cookie = response.headers["Set-Cookie"]
    assert "; Secure" in cookie and "HttpOnly" in cookie
    assert app.permanent_session_lifetime == timedelta(minutes=30)


def test_signing_in_starts_a_new_session_with_a_new_csrf_token(app):
    add_user(app)
    client = anonymous(app)
    before = token_of(client.get("/dashboard/sign-in").text)
    with client.session_transaction() as session:
        session["planted"] = "by an attacker who fixed the session"
    client.post("/dashboard/sign-in", data={"username": "ada", "password": PASSWORD, "csrf_token": before})
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["csrf_token"] != before
        assert isinstance(session["user_id"], int)


def test_a_failed_sign_in_says_the_same_whatever_went_wrong(app):
    add_user(app)
    locked_id = add_user(app, "locked", display_name="Locked User")
    slowed_id = add_user(app, "slowed", display_name="Slowed User")
    with app.extensions["labservice.database"].session() as session:
        soon = datetime.now(UTC) + timedelta(minutes=5)
        session.add(
            SignInLock(
                user_id=locked_id, address="127.0.0.1", failures=9, locked_until=soon, updated_at=datetime.now(UTC)
            )
        )
        session.get(User, slowed_id).locked_until = soon
    answers = {}
    for username, password in (
        ("ada", "wrong password!!"),
        ("nobody", PASSWORD),
        ("locked", PASSWORD),
        ("slowed", PASSWORD),
    ):
        response = sign_in_form(anonymous(app), username, password)
        assert response.status_code == 401
        page = re.sub(r'value="[^"]*"', 'value=""', response.text)  # the username and token echoed
        answers[username] = page
        assert "The username or password is not right, or there were too many attempts" in page
    assert answers["ada"] == answers["nobody"] == answers["locked"] == answers["slowed"]


def test_the_form_locks_a_user_after_five_wrong_passwords_from_one_address(app):
    user_id = add_user(app)
    client = anonymous(app)
    for attempt in range(5):
        assert sign_in_form(client, "ada", f"wrong password {attempt}").status_code == 401
    assert sign_in_form(client, "ada", PASSWORD).status_code == 401  # locked for 30 s
    with app.extensions["labservice.database"].session() as session:
        pair = session.scalar(select(SignInLock).where(SignInLock.user_id == user_id))
        assert (pair.address, pair.failures) == ("127.0.0.1", 5) and pair.locked_until is not None
        assert session.get(User, user_id).locked_until is None  # the user is not locked: only this address
    elsewhere = anonymous(app)
    elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.44"
    assert sign_in_form(elsewhere, "ada", PASSWORD).status_code == 303


def test_a_next_target_off_the_dashboard_is_ignored(app):
    add_user(app)
    response = sign_in_form(anonymous(app), "ada", PASSWORD, next_url="https://evil.example/")
    assert response.location == "/dashboard/"


# --- signing out, voided sessions ----------------------------------------------------------------


def test_signing_out_ends_the_session_and_every_copy_of_its_cookie(app):
    add_user(app)
    client = anonymous(app)
    sign_in_form(client, "ada", PASSWORD)
    stolen = client.get_cookie("session").value
    token = token_of(client.get("/dashboard/").text)
    response = client.post("/dashboard/sign-out", data={"csrf_token": token})
    assert response.status_code == 303 and response.location == "/dashboard/sign-in"
    assert "You are signed out." in client.get(response.location).text
    assert client.get("/dashboard/").status_code == 303
    replay = anonymous(app)
    replay.set_cookie("session", stolen)
    assert replay.get("/dashboard/").status_code == 303  # the copied cookie is void too
    # Signing in again works.
    assert sign_in_form(client, "ada", PASSWORD).status_code == 303
    assert client.get("/dashboard/").status_code == 200


def test_signing_out_needs_the_csrf_token(app):
    add_user(app)
    client = anonymous(app)
    sign_in_form(client, "ada", PASSWORD)
    assert client.post("/dashboard/sign-out").status_code == 400
    assert client.get("/dashboard/").status_code == 200  # still signed in


def test_a_disabled_user_loses_the_dashboard_at_once(app):
    add_user(app)
    client = anonymous(app)
    sign_in_form(client, "ada", PASSWORD)
    with app.extensions["labservice.database"].session() as session:
        session.scalar(select(User).where(User.username == "ada")).disabled_at = datetime.now(UTC)
    assert client.get("/dashboard/").status_code == 303


def test_a_session_with_a_bad_signature_is_ignored(app):
    client = anonymous(app)
    client.set_cookie("session", "eyJ1c2VyX2lkIjoxfQ.forged.signature")
    assert client.get("/dashboard/").status_code == 303


# --- what a signed-in user may do in the API -------------------------------------------------------


def test_a_signed_in_user_may_read_the_api_but_not_change_it_with_the_cookie_alone(app):
    add_user(app)
    client = anonymous(app)
    sign_in_form(client, "ada", PASSWORD)
    assert client.get("/api/v1/referrals").status_code == 200  # the dashboard's links to the API work
    assert_problem(client.patch("/api/v1/referrals/1", json={"status": "acknowledged"}), 401)
    assert_problem(client.post("/api/v1/interpretations", json={"results": {"platelets": 250}}), 401)


def test_roles_give_scopes():
    assert users.ROLE_SCOPES["clinician"] == {"read", "interpret"}
    assert users.ROLE_SCOPES["admin"] >= {"read", "interpret", "admin"}


# --- the command -----------------------------------------------------------------------------------


def run(args: list[str], url: str, cwd: Path, stdin: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "LABSERVICE_DATABASE_URL": url}
    return subprocess.run(
        [str(LABSERVICE), *args], input=stdin, capture_output=True, text=True, env=env, cwd=cwd, check=False, timeout=60
    )


def test_create_user_from_the_command_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh' / 'labservice.sqlite'}"
    done = run(
        ["create-user", "ada", "--role", "admin", "--display-name", "Dr Ada Lovelace", "--password-stdin"],
        url,
        tmp_path,
        PASSWORD + "\n",
    )
    assert done.returncode == 0, done.stderr
    assert "User 'ada' (admin, shown as 'Dr Ada Lovelace') created." in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    database = Database.connect(url)
    with database.session() as session:
        outcome = sign_in(session, "ada", PASSWORD)
        assert outcome.user is not None and outcome.user.role == "admin"
    database.engine.dispose()
    short = run(["create-user", "bob", "--password-stdin"], url, tmp_path, "short\n")
    assert short.returncode == 1 and "at least 12 characters" in short.stderr
    again = run(["create-user", "ada", "--password-stdin"], url, tmp_path, PASSWORD + "\n")
    assert again.returncode == 1 and "already exists" in again.stderr
