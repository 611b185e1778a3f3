"""API keys: format, hashing, scopes, revocation, last use; the create-key / list-keys / revoke-key commands."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from labservice.security.keys import (
    ApiKeyError,
    authenticate_key,
    create_key,
    list_keys,
    parse_scopes,
    revoke_key,
)
from labservice.store.database import Database
from labservice.store.models import ApiKey

TOKEN = re.compile(r"^lsk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$")
LABSERVICE = Path(sys.executable).parent / "labservice"


@pytest.fixture
def database(database_url: str):
    database = Database.connect(database_url)
    yield database
    database.engine.dispose()


def test_a_new_key_is_shown_once_and_only_its_hash_is_stored(database):
    with database.session() as session:
        key = create_key(session, "lis-interface", ["interpret", "read"])
    assert TOKEN.match(key.token), key.token
    _, prefix, secret = key.token.split("_", 2)
    with database.session() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.name == "lis-interface"))
        assert row.prefix == prefix
        assert row.secret_hash == "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in row.secret_hash and key.token not in repr(row.__dict__)
        assert row.scopes == ["interpret", "read"] and row.revoked_at is None


def test_the_secret_is_32_random_bytes_and_keys_differ(database):
    with database.session() as session:
        tokens = [create_key(session, f"k{i}", ["read"]).token for i in range(20)]
    secrets_ = [token.split("_", 2)[2] for token in tokens]
    assert len(set(secrets_)) == 20 and len({token.split("_")[1] for token in tokens}) == 20
    assert all(len(secret) == 43 for secret in secrets_)  # base64url of 32 bytes, no padding


def test_authenticate_accepts_the_key_and_refuses_any_change_of_it(database):
    with database.session() as session:
        token = create_key(session, "reader", ["read"]).token
    with database.session() as session:
        principal = authenticate_key(session, token)
    assert principal is not None and principal.id == "api_key:reader" and principal.scopes == {"read"}
    last = token[-1]
    wrong_secret = token[:-1] + ("A" if last != "A" else "B")
    prefix = token.split("_")[1]
    wrong_prefix = token.replace(prefix, "0" * 12 if prefix != "0" * 12 else "1" * 12)
    for bad in (wrong_secret, wrong_prefix, token + "x", token[:-5], "lsk_", "", "Bearer " + token, token.upper()):
        with database.session() as session:
            assert authenticate_key(session, bad) is None, bad


def test_a_revoked_key_is_refused_at_once(database):
    with database.session() as session:
        token = create_key(session, "old", ["interpret"]).token
    with database.session() as session:
        revoke_key(session, "old")
    with database.session() as session:
        assert authenticate_key(session, token) is None
        first = session.scalar(select(ApiKey.revoked_at).where(ApiKey.name == "old"))
    with database.session() as session:
        revoke_key(session, "old")  # again: the first time is kept
        assert session.scalar(select(ApiKey.revoked_at).where(ApiKey.name == "old")) == first


def test_last_used_is_written_at_most_once_a_minute(database):
    start = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    with database.session() as session:
        token = create_key(session, "busy", ["read"], now=start).token

    def last_used():
        with database.session() as session:
            value = session.scalar(select(ApiKey.last_used_at).where(ApiKey.name == "busy"))
            return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    for offset, expected in (
        (0, start),
        (30, start),
        (59, start),
        (60, start + timedelta(seconds=60)),
        (90, start + timedelta(seconds=60)),
        (125, start + timedelta(seconds=125)),
    ):
        with database.session() as session:
            assert authenticate_key(session, token, now=start + timedelta(seconds=offset)) is not None
        assert last_used() == expected, offset


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("interpret", ("interpret",)),
        ("interpret,read", ("interpret", "read")),
        (" read , admin ", ("read", "admin")),
        ("read,read", ("read",)),
    ],
)
def test_scopes_are_parsed(text, expected):
    assert parse_scopes(text) == expected


@pytest.mark.parametrize("text", ["", ",", "write", "read,delete", "READ"])
def test_unknown_or_no_scopes_are_refused(text):
    with pytest.raises(ApiKeyError):
        parse_scopes(text)


@pytest.mark.parametrize("name", ["", "-starts-with-dash", "has space", "x" * 101, "semi;colon", "ünïcode"])
def test_key_names_are_checked(database, name):
    with database.session() as session, pytest.raises(ApiKeyError):
        create_key(session, name, ["read"])


def test_a_name_is_used_once(database):
    with database.session() as session:
        create_key(session, "twice", ["read"])
    with database.session() as session, pytest.raises(ApiKeyError, match="already exists"):
        create_key(session, "twice", ["read"])
    with database.session() as session:
        assert [key.name for key in list_keys(session)] == ["twice"]


# --- the commands, as processes on the configured database --------------------------------------------


def run(args: list[str], url: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "LABSERVICE_DATABASE_URL": url}
    return subprocess.run(
        [str(LABSERVICE), *args], input=stdin, capture_output=True, text=True, env=env, cwd=cwd, check=False, timeout=60
    )


def test_create_list_and_revoke_keys_from_the_command_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh' / 'labservice.sqlite'}"  # not created yet: the command migrates first
    created = run(["create-key", "--name", "lis-interface", "--scopes", "interpret,read"], url, tmp_path)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert TOKEN.match(token)
    assert "shown only now" in created.stderr and token not in created.stderr
    database = Database.connect(url)
    with database.session() as session:
        assert authenticate_key(session, token).scopes == {"interpret", "read"}

    listed = run(["list-keys"], url, tmp_path)
    assert listed.returncode == 0
    assert "lis-interface" in listed.stdout and "interpret,read" in listed.stdout
    assert token.split("_", 2)[2] not in listed.stdout  # never the secret

    duplicate = run(["create-key", "--name", "lis-interface"], url, tmp_path)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr and duplicate.stdout == ""
    bad_scope = run(["create-key", "--name", "other", "--scopes", "write"], url, tmp_path)
    assert bad_scope.returncode == 1 and "unknown scope 'write'" in bad_scope.stderr

    revoked = run(["revoke-key", "lis-interface"], url, tmp_path)
    assert revoked.returncode == 0
    with database.session() as session:
        assert authenticate_key(session, token) is None
    assert run(["revoke-key", "nobody"], url, tmp_path).returncode == 1
    assert re.search(
        r"lis-interface .* \d{4}-\d\d-\d\d \d\d:\d\d\s*$", run(["list-keys"], url, tmp_path).stdout, re.MULTILINE
    )
    database.engine.dispose()


def test_the_first_run_hint_names_the_commands_until_a_key_and_a_user_exist(tmp_path):
    from labservice.cli import credentials_hint
    from labservice.security.users import create_user

    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    hint = credentials_hint(url)
    assert "labservice create-key --name" in hint and "labservice create-user" in hint
    database = Database.connect(url)
    with database.session() as session:
        create_key(session, "first", ["interpret"])
    assert "create-key" not in credentials_hint(url) and "create-user" in credentials_hint(url)
    with database.session() as session:
        create_user(session, "admin", "a long enough password", role="admin")
    assert credentials_hint(url) is None
    with database.session() as session:
        revoke_key(session, "first")
    assert "create-key" in credentials_hint(url)  # a revoked key does not count
    database.engine.dispose()
