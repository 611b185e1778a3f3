"""Browser tests: the real service under gunicorn, driven by Playwright in Debian's chromium.

`playwright install` cannot download here, so the browser is /usr/bin/chromium (installed by
.ci/run). Screenshots of every page visited go to .screenshots/ (not committed) for a human look.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from labservice.security.keys import create_key
from labservice.security.principal import SCOPES
from labservice.security.users import create_user
from labservice.store.database import Database, migrate

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LABSERVICE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / ".screenshots"
E2E_PASSWORD = "e2e-password-not-secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def live_database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The live server's instance folder and its SQLite database, migrated: (folder, URL)."""
    instance = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{instance / 'labservice.sqlite'}"
    migrate(url)
    return instance, url


@pytest.fixture(scope="session")
def live_api_key(live_database: tuple[Path, str]) -> str:
    """An all-scope API key of the live server, for seeding and reading through the JSON API."""
    database = Database.connect(live_database[1])
    with database.session() as session:
        token = create_key(session, "e2e", SCOPES).token
    database.engine.dispose()
    return token


@pytest.fixture(scope="session")
def live_user(live_database: tuple[Path, str]) -> tuple[str, str]:
    """A dashboard user of the live server (display name "Dr E2E"): (username, password)."""
    database = Database.connect(live_database[1])
    with database.session() as session:
        create_user(session, "e2e", E2E_PASSWORD, display_name="Dr E2E")
    database.engine.dispose()
    return "e2e", E2E_PASSWORD


@pytest.fixture(scope="session")
def live_server(live_database: tuple[Path, str]) -> Iterator[str]:
    """gunicorn (2 workers) on a free loopback port with its own SQLite database; yields the base URL."""
    instance, url = live_database
    env = {
        **os.environ,
        "LABSERVICE_DATABASE_URL": url,
        "LABSERVICE_BATCH_DIRECTORY": str(instance / "batches"),
        "LABSERVICE_AUTO_MIGRATE": "false",
    }
    with gunicorn_server(env, instance) as base:
        yield base


@contextlib.contextmanager
def gunicorn_server(env: dict[str, str], folder: Path) -> Iterator[str]:
    """gunicorn (2 workers, wsgi:app) on a free loopback port with this environment, once /healthz answers; yields
    the base URL. Its log goes to <folder>/gunicorn.log (a file, not a pipe: nobody reads a pipe, and one JSON line
    per request fills it)."""
    port = _free_port()
    gunicorn = Path(sys.executable).parent / "gunicorn"
    log = folder / "gunicorn.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(gunicorn), "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                output = log.read_text(errors="replace")
                server.kill()
                raise RuntimeError(f"gunicorn did not start:\n{output}") from None
            time.sleep(0.2)
    try:
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"), args=["--no-sandbox"]
        )
        yield browser
        browser.close()


def sign_in(page, base: str, username: str, password: str) -> None:
    """Sign in through the real form, as a person does."""
    page.goto(base + "/dashboard/sign-in")
    page.fill("#sign-in-username", username)
    page.fill("#sign-in-password", password)
    page.click("#sign-in-button")
    page.wait_for_load_state()


@pytest.fixture
def anonymous_page(browser, request: pytest.FixtureRequest):
    """A fresh laptop-sized page, not signed in; a screenshot is saved when the test ends."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    yield page
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest, live_server: str, live_user: tuple[str, str]):
    """A fresh laptop-sized page, signed in through the form as live_user; a screenshot is saved at the end."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, live_server, *live_user)
    yield page
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def shoot(page, name: str) -> None:
    """Save a named full-page screenshot under .screenshots/."""
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
