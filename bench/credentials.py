"""Credentials for the benchmarks: an API key (Authorization: Bearer) and, for dashboard pages, a signed-in
session cookie, made in the benchmark's own throw-away database."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.parse
import urllib.request
import uuid

BENCH_PASSWORD = "bench-password-not-secret"


def create_api_key(database_url: str, scopes: tuple[str, ...] = ("interpret", "read")) -> str:
    """A new key in the database at `database_url` (migrated first), as `labservice create-key` makes it."""
    from labservice.security.keys import create_key
    from labservice.store.database import Database, migrate

    migrate(database_url)
    database = Database.connect(database_url)
    try:
        with database.session() as session:
            return create_key(session, f"bench-{uuid.uuid4().hex[:8]}", scopes).token
    finally:
        database.engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_user(database_url: str) -> str:
    """A dashboard user (clinician) in the database; returns the username (password BENCH_PASSWORD)."""
    from labservice.security.users import create_user as make_user
    from labservice.store.database import Database, migrate

    migrate(database_url)
    database = Database.connect(database_url)
    username = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        with database.session() as session:
            make_user(session, username, BENCH_PASSWORD, display_name="Bench Clinician")
    finally:
        database.engine.dispose()
    return username


def sign_in(base_url: str, username: str) -> dict[str, str]:
    """Sign in through the real form (GET for the CSRF token, POST); the Cookie header of the session."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(base_url + "/dashboard/sign-in", timeout=30) as response:
        page = response.read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if token is None:
        raise RuntimeError("the sign-in page has no CSRF token")
    form = urllib.parse.urlencode(
        {"username": username, "password": BENCH_PASSWORD, "csrf_token": token.group(1)}
    ).encode()
    with opener.open(base_url + "/dashboard/sign-in", data=form, timeout=30) as response:
        if "/dashboard/sign-in" in response.url:
            raise RuntimeError("signing in failed")
    return {"Cookie": "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)}
