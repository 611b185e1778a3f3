"""Shared fixtures (a test app, its client, the contract's example CBC), the slow tier and the Hypothesis profiles.

The slow tier: `python3 tasks.py test` runs every test; `python3 tasks.py test -m "not slow"` is the quick
tier. A test is `slow` when it starts a server, drives a browser or fuzzes, and that is decided here, in one
rule (pytest_collection_modifyitems below), not by decorators:

1. it lives under a SLOW_DIRECTORIES folder: tests/e2e/ (a browser against gunicorn) and tests/faults/ (gunicorn
   with a private PostgreSQL cluster);
2. it, one of its fixtures, or a function or class of tests/ that they use (followed to any depth) names one of
   SERVER_STARTERS: a long-running child process (gunicorn, the MLLP listener), an HTTP server on loopback
   (the FHIR and JWKS test servers) or a browser. So a new test that uses an existing server helper or
   fixture is slow without saying so;
3. its module says `pytestmark = pytest.mark.slow`: the fuzzing suites (the Hypothesis property suites run
   hundreds of generated inputs through the readers or the app, and the hostile corpus), and a single
   Hypothesis-heavy test says `@pytest.mark.slow`.

Hypothesis profiles: `dev` by default, `ci` with HYPOTHESIS_PROFILE=ci (tests/hypothesis_profiles.py).
"""

from __future__ import annotations

import copy
import csv
import inspect
import os
import shutil
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings

from labservice.app import create_app
from labservice.config import load_settings
from labservice.examples import CONTRACT_EXAMPLE
from labservice.store.database import migrate
from tests.credentials import add_test_credentials, anonymous
from tests.databases import empty_tables, throwaway_postgresql
from tests.hypothesis_profiles import chosen_profile, register_profiles

#: Batch upload jobs run inside the upload request in the tests (huey's immediate mode), so a test and every
#: server it starts need no job worker; tests/batch/test_jobs*.py run real workers on SQLite and Redis queues.
os.environ.setdefault("LABSERVICE_JOB_QUEUE", "immediate")

register_profiles()
settings.load_profile(chosen_profile())

TESTS = Path(__file__).resolve().parent
#: tests/<folder>/ whose every test is slow: a browser (e2e), gunicorn with a private PostgreSQL cluster (faults).
SLOW_DIRECTORIES = frozenset({"e2e", "faults"})
#: Names that start a server or a browser: a long-running child process (gunicorn, `labservice mllp`, a Dask
#: LocalCluster's scheduler and worker processes), an HTTP server on loopback (the FHIR and JWKS test servers),
#: Playwright's browser.
SERVER_STARTERS = frozenset({"Popen", "HTTPServer", "ThreadingHTTPServer", "sync_playwright", "LocalCluster"})


def _names(code: types.CodeType) -> Iterator[str]:
    """Every global or attribute name a code object uses, its nested functions, lambdas and comprehensions too."""
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _names(constant)


def _ours(thing: object) -> bool:
    """A function or class defined in tests/ (the helpers worth following), not one of the package or a library."""
    defined_in = getattr(thing, "__module__", None) or ""
    return (inspect.isfunction(thing) or inspect.isclass(thing)) and defined_in.startswith("tests.")


_STARTS_A_SERVER: dict[object, bool] = {}


def starts_a_server(thing: object) -> bool:
    """Whether a test, fixture or tests/ helper names one of SERVER_STARTERS, itself or through the tests/ helpers
    it names (a class through its methods). Remembered per object; a cycle counts as no."""
    if thing in _STARTS_A_SERVER:
        return _STARTS_A_SERVER[thing]
    _STARTS_A_SERVER[thing] = False
    if inspect.isclass(thing):
        members = [inspect.unwrap(getattr(m, "__func__", m)) for m in vars(thing).values()]
        found = any(starts_a_server(m) for m in members if inspect.isfunction(m))
    else:
        function = inspect.unwrap(thing)  # type: ignore[arg-type]
        code = getattr(function, "__code__", None)
        names = set(_names(code)) if code is not None else set()
        namespace = dict(function.__globals__)
        for name in names:  # a function-local `from tests.x import helper` names the module tests.x
            if name.startswith("tests.") and name in sys.modules:
                namespace.update({key: value for key, value in vars(sys.modules[name]).items() if key in names})
        found = bool(names & SERVER_STARTERS) or any(
            starts_a_server(namespace[name]) for name in sorted(names) if _ours(namespace.get(name))
        )
    _STARTS_A_SERVER[thing] = found
    return found


def is_slow(item: pytest.Item) -> bool:
    """The slow-tier rule of this module's docstring, for one collected test."""
    if item.get_closest_marker("slow"):
        return True
    path = item.path.resolve()
    if path.is_relative_to(TESTS) and path.relative_to(TESTS).parts[0] in SLOW_DIRECTORIES:
        return True
    function = getattr(item, "function", None)
    if function is not None and starts_a_server(function):
        return True
    fixtures = getattr(item, "_fixtureinfo", None)
    definitions = fixtures.name2fixturedefs.values() if fixtures is not None else ()
    return any(starts_a_server(defs[-1].func) for defs in definitions if defs and _ours(inspect.unwrap(defs[-1].func)))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow tier before `-m "not slow"` deselects by marks."""
    for item in items:
        if is_slow(item) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


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
