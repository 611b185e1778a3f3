"""Sign-in against a real gunicorn (2 sync workers, counts shared in Redis) behind a trusted proxy.

The proxy is played by the test itself: requests come from 127.0.0.1, which TRUSTED_PROXIES names, with an
`X-Forwarded-For` header saying who the client is. What must hold:

- a user locked out by an attacker's guesses from one address still signs in from another;
- the attacker's own address stays locked, even with the right password;
- sign-in attempts are limited by the first untrusted address of the chain, however the part of the
  header the client wrote rotates, and all addresses together by a global limit, so rotating the
  client's address itself cannot buy unlimited argon2 verifications.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
from argon2 import PasswordHasher

from labservice.security.users import create_user
from labservice.store.database import Database, migrate
from tests.faults.servers import Gunicorn, gunicorn
from tests.redis_support import unique_prefix

REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "correct horse battery staple"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix unique to this test in the real Redis (skipped when none answers); keys removed after."""
    yield from unique_prefix(REDIS_URL)


@pytest.fixture
def database_file(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'labservice.sqlite'}"
    migrate(url)
    database = Database.connect(url)
    with database.session() as session:
        create_user(session, "ada", PASSWORD, display_name="Dr Ada Lovelace", hasher=CHEAP)
    database.engine.dispose()
    return url


def serve(url: str, prefix: str, tmp_path, **settings: str):
    env = {
        "LABSERVICE_DATABASE_URL": url,
        "LABSERVICE_BATCH_DIRECTORY": str(tmp_path / "batches"),
        "LABSERVICE_TRUSTED_PROXIES": "127.0.0.1",
        "LABSERVICE_REDIS_URL": REDIS_URL,
        "LABSERVICE_RATE_LIMIT_PREFIX": prefix,
        "LABSERVICE_INSTANCE_PATH": str(tmp_path / "instance"),
        **{f"LABSERVICE_{name}": value for name, value in settings.items()},
    }
    return gunicorn(env, workers=2)


def sign_in(server: Gunicorn, forwarded_for: str, username: str, password: str) -> int:
    """One sign-in through the form, from the client `forwarded_for` names; the answer's status."""
    return sign_in_answer(server, forwarded_for, username, password).status_code


def sign_in_answer(server: Gunicorn, forwarded_for: str, username: str, password: str) -> requests.Response:
    with requests.Session() as browser:
        headers = {"X-Forwarded-For": forwarded_for}
        page = browser.get(server.base + "/dashboard/sign-in", headers=headers, timeout=10)
        if page.status_code != 200:
            return page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        answer = browser.post(
            server.base + "/dashboard/sign-in",
            headers=headers,
            allow_redirects=False,
            timeout=10,
            data={"username": username, "password": password, "csrf_token": token},
        )
        return answer


def test_guesses_from_one_address_do_not_lock_the_user_out_elsewhere(database_file, redis_prefix, tmp_path):
    with serve(database_file, redis_prefix, tmp_path, RATE_LIMIT_SIGN_IN="50/minute") as server:
        attacker, user = "203.0.113.7", "198.51.100.20"
        assert [sign_in(server, attacker, "ada", f"guess number {i}") for i in range(6)] == [401] * 6
        locked = sign_in_answer(server, attacker, "ada", PASSWORD)  # the attacker's address is locked
        unknown = sign_in_answer(server, attacker, "nobody", PASSWORD)
        assert locked.status_code == unknown.status_code == 401
        assert page_text(locked, "ada") == page_text(unknown, "nobody")  # a lock says what an unknown user does
        assert sign_in(server, user, "ada", PASSWORD) == 303  # the user's address is not locked


def page_text(answer: requests.Response, username: str) -> str:
    """The answer page without what differs by design: the CSRF token and the username echoed."""
    return re.sub(r'value="[^"]*"', 'value=""', answer.text.replace(username, "USERNAME"))


def test_a_rotating_forged_prefix_does_not_escape_the_limit_of_the_first_untrusted_address(
    database_file, redis_prefix, tmp_path
):
    with serve(database_file, redis_prefix, tmp_path, RATE_LIMIT_SIGN_IN="3/minute") as server:
        # The client wrote the first hop; the proxy appended the address it saw (the first untrusted one).
        statuses = [sign_in(server, f"10.9.{i}.1, 203.0.113.7", f"user{i}", "not the password") for i in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        assert sign_in(server, "10.9.0.1, 198.51.100.20", "ada", PASSWORD) == 303  # another client is not limited


def test_rotating_client_addresses_meet_the_global_sign_in_limit(database_file, redis_prefix, tmp_path):
    with serve(
        database_file, redis_prefix, tmp_path, RATE_LIMIT_SIGN_IN="3/minute", RATE_LIMIT_SIGN_IN_GLOBAL="5/minute"
    ) as server:
        statuses = [sign_in(server, f"203.0.113.{i}", f"user{i}", "not the password") for i in range(1, 8)]
        assert statuses == [401] * 5 + [429] * 2
