"""Shared fixtures: a test app, its client, and the contract's example CBC."""

from __future__ import annotations

import copy
import csv
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from labservice.app import create_app
from labservice.config import load_settings
from labservice.examples import CONTRACT_EXAMPLE
from labservice.store.database import migrate
from tests.credentials import add_test_credentials, anonymous
from tests.databases import empty_tables, throwaway_postgresql


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest schema once per run; tests get copies."""
    path = tmp_path_factory.mktemp("template") / "labservice.sqlite"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A fresh, migrated SQLite database for one test."""
    target = tmp_path / "database" / "labservice.sqlite"
    target.parent.mkdir()
    shutil.copyfile(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture(scope="session")
def postgresql_server_url() -> Iterator[str | None]:
    """A throw-away PostgreSQL database for this run (dropped at the end), or None when no server."""
    base = os.environ.get("LABSERVICE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    yield from throwaway_postgresql(base)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    """Each storage test runs on SQLite and on PostgreSQL (skipped only when no server is reachable)."""
    if request.param == "sqlite":
        yield sqlite_url
        return
    url = request.getfixturevalue("postgresql_server_url")
    if url is None:
        pytest.skip("no PostgreSQL server reachable (set LABSERVICE_TEST_POSTGRES)")
    yield url
    empty_tables(url)


@pytest.fixture
def make_app(sqlite_url: str, tmp_path: Path) -> Callable[..., Flask]:
    """Build a test app with config overrides, e.g. make_app(MAX_BATCH_ITEMS=3).

    Its database is a fresh SQLite copy unless DATABASE_URL is given; batches go under tmp_path.
    """

    def build(**config: Any) -> Flask:
        defaults = {"TESTING": True, "DATABASE_URL": sqlite_url, "BATCH_DIRECTORY": str(tmp_path / "batches")}
        app = create_app({**defaults, **config})
        add_test_credentials(app)  # its test_client() sends an all-scope API key, signed in (tests/credentials.py)
        return app

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def anonymous_client(app: Flask) -> FlaskClient:
    """A client of the same app with no API key and no dashboard session."""
    return anonymous(app)


@pytest.fixture
def example_cbc() -> dict[str, Any]:
    """A fresh deep copy of the contract example, safe to modify in a test."""
    return copy.deepcopy(CONTRACT_EXAMPLE)


@pytest.fixture
def broken_ranges(tmp_path) -> tuple[Path, str]:
    """A copy of reference_ranges/ with low >= high on adults.csv line 2: (dir, "file:line")."""
    source = Path(load_settings({})["REFERENCE_RANGES"])
    target = tmp_path / "reference_ranges"
    shutil.copytree(source, target)
    adults = target / "adults.csv"
    with adults.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    low, high = header.index("low"), header.index("high")
    rows[1][low], rows[1][high] = rows[1][high], rows[1][low]
    with adults.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return target, "adults.csv:2"
