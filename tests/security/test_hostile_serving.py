"""Hostile requests against a real gunicorn (issue 10, items 7 and 11): the serving side of the parser and
input fixes, with the repository's gunicorn.conf.py.

- Two uploads of the issue's CSV header (a cell of 45,000 spaces between two words) at once: before, each
  took 15 s and together they held both sync workers. Both are answered, and /healthz answers after them,
  within a generous client timeout (a guard against quadratic work, not a speed assertion).
- On PostgreSQL, whose text cannot hold NUL: `?patient=%00`, a path with `%00`, a sign-in username with a
  NUL and `audit?from=0001-01-01T00:00:00+14:00` were 500s. Each is a 4xx problem naming what is wrong.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from labservice.security.keys import create_key
from labservice.store.database import Database
from tests.databases import empty_tables
from tests.guards import GENEROUS_SECONDS
from tests.security.audit_support import seed_database, start_gunicorn

PROBLEM = "application/problem+json"
HOSTILE_HEADER = "note" + " " * 45_000 + "text"


def stop(server: subprocess.Popen) -> None:
    """SIGTERM, and SIGKILL when workers still busy with a request do not let the master stop in time."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


@pytest.fixture
def postgresql_url(postgresql_server_url: str | None) -> Iterator[str]:
    if postgresql_server_url is None:
        pytest.skip("no PostgreSQL server reachable (set LABSERVICE_TEST_POSTGRES)")
    yield postgresql_server_url
    empty_tables(postgresql_server_url)


def admin_key(url: str) -> str:
    db = Database.connect(url)
    try:
        with db.session() as session:
            return create_key(session, "hostile-serving", ("interpret", "read", "admin")).token
    finally:
        db.engine.dispose()


@pytest.fixture
def postgresql_gunicorn(tmp_path: Path, postgresql_url: str) -> Iterator[tuple[str, str]]:
    """(base URL, admin key) of gunicorn serving the throw-away PostgreSQL database."""
    token = admin_key(postgresql_url)
    server, port, _out, err = start_gunicorn(tmp_path, postgresql_url)
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        stop(server)
    assert "Traceback" not in err.read_text()


def assert_problem(response: requests.Response, status: int, named: str) -> None:
    """A problem+json naming `named` under /api; the dashboard's error page naming it elsewhere."""
    assert response.status_code == status, response.text[:300]
    if response.url.split("/", 3)[3].startswith("api/"):
        assert response.headers["Content-Type"].startswith(PROBLEM)
        assert named in response.json()["errors"], response.json()
    else:
        assert response.headers["Content-Type"].startswith("text/html") and named in response.text


def test_nul_in_a_query_parameter_or_the_path_is_a_400_on_postgresql(postgresql_gunicorn):
    base, token = postgresql_gunicorn
    auth = {"Authorization": f"Bearer {token}"}
    assert_problem(requests.get(f"{base}/api/v1/referrals?patient=%00", headers=auth, timeout=10), 400, "patient")
    assert_problem(requests.get(f"{base}/api/v1/audit?actor=x%00y", headers=auth, timeout=10), 400, "actor")
    assert_problem(requests.get(f"{base}/api/v1/patients/%00/results", headers=auth, timeout=10), 400, "path")
    # The dashboard has no session here: like any request without credentials it is sent to the sign-in page
    # first (the NUL check runs after authentication), which refuses the NUL its `next` carries: a 400, not a 500.
    assert_problem(requests.get(f"{base}/dashboard/patients/MRN%00-1", headers=auth, timeout=10), 400, "next")
    worklist = requests.get(f"{base}/dashboard/?finding=%00", headers=auth, timeout=10)  # `next` keeps no query
    assert worklist.status_code == 200 and "Sign in" in worklist.text and worklist.history[0].status_code in (302, 303)
    # The same requests without the NUL are answered as usual.
    assert requests.get(f"{base}/api/v1/referrals?patient=x", headers=auth, timeout=10).status_code == 200
    assert requests.get(f"{base}/api/v1/patients/x/results", headers=auth, timeout=10).status_code == 404


def test_a_sign_in_username_with_nul_is_a_400_on_postgresql(postgresql_gunicorn):
    base, _ = postgresql_gunicorn
    browser = requests.Session()
    form = browser.get(f"{base}/dashboard/sign-in", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    response = browser.post(
        f"{base}/dashboard/sign-in",
        timeout=10,
        allow_redirects=False,
        data={"csrf_token": token, "username": "admin\x00", "password": "whatever"},
    )
    assert_problem(response, 400, "username")
    # A username without NUL is an ordinary failed sign-in.
    response = browser.post(
        f"{base}/dashboard/sign-in",
        timeout=10,
        allow_redirects=False,
        data={"csrf_token": token, "username": "admin", "password": "whatever"},
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("from=0001-01-01T00:00:00%2B14:00", 422),  # before year 1 in UTC
        ("to=0001-01-01T00:00:00%2B14:00", 422),
        ("from=9999-12-31T23:59:59-14:00", 422),  # after year 9999 in UTC
        ("to=9999-12-31", 200),  # the whole last day there is
        ("from=0001-01-01&to=9999-12-31", 200),
    ],
)
def test_extreme_audit_dates_are_a_422_or_read_on_postgresql(postgresql_gunicorn, query: str, status: int):
    base, token = postgresql_gunicorn
    response = requests.get(f"{base}/api/v1/audit?{query}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    if status == 422:
        assert_problem(response, 422, query.split("=", 1)[0])
    else:
        assert response.status_code == 200, response.text[:300]


def test_two_uploads_of_the_issues_hostile_header_at_once_leave_the_workers_answering(tmp_path: Path):
    url, token = seed_database(tmp_path)
    server, port, _out, _err = start_gunicorn(tmp_path, url, env={"LABSERVICE_RATE_LIMIT_UPLOADS": "off"})
    base = f"http://127.0.0.1:{port}"
    answers: list[int | str] = []

    def upload(name: str) -> None:
        data = f"sample_id,platelets,{HOSTILE_HEADER}\n{name},45,x\n".encode()  # two different files
        try:
            response = requests.post(
                f"{base}/api/v1/batches?store=false",
                timeout=GENEROUS_SECONDS,
                headers={"Authorization": f"Bearer {token}"},
                files={"file": (f"{name}.csv", data, "text/csv")},
            )
            answers.append(response.status_code)
        except requests.RequestException as error:
            answers.append(type(error).__name__)

    try:
        uploads = [threading.Thread(target=upload, args=(f"S{i}",)) for i in range(2)]
        for thread in uploads:
            thread.start()
        for thread in uploads:
            thread.join(timeout=GENEROUS_SECONDS + 5)
        health = requests.get(f"{base}/healthz", timeout=GENEROUS_SECONDS).status_code
    finally:
        stop(server)
    assert sorted(map(str, answers)) == ["202", "202"]
    assert health == 200
