"""Load shedding by queue time (issue 12 item 3): a request stamped by the front or a proxy (X-Request-Start) that
waited longer than QUEUE_TIME_BUDGET_MS is answered 503 problem+json with Retry-After, before any work.

In process: the stamps are set far from the budget (10 s old against 200 ms; 1 s old against 60 s), so nothing
here depends on how fast the machine is.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from labservice.serving.queue_time import QueueTimeEdge, parse_request_start
from labservice.store.database import Database
from labservice.store.models import AuditEvent, CbcResult
from tests.security.audit_support import bearer_client, new_key

URL = "/api/v1/interpretations"
CBC = {
    "patient": {"id": "QT-1", "sex": "female", "age_years": 40},
    "collected_at": "2026-11-01T08:00:00Z",
    "results": {"platelets": 250, "hemoglobin": 13.5, "wbc": 6.0, "neutrophils": 3.0},
}


def microseconds_ago(seconds: float) -> str:
    return f"t={int((time.time() - seconds) * 1e6)}"


# -- the header's forms ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("t=1733425200123456", 1733425200.123456),  # nginx / New Relic: microseconds
        ("1733425200123", 1733425200.123),  # Heroku's router: milliseconds
        ("t=1733425200.123", 1733425200.123),  # nginx "t=${msec}": seconds with milliseconds
    ],
)
def test_the_stamp_is_read_in_microseconds_milliseconds_or_seconds(value: str, seconds: float) -> None:
    assert parse_request_start(value) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize("value", ["", "t=", "soon", "t=-5", "t=nan", "0"])
def test_an_unreadable_stamp_is_none(value: str) -> None:
    assert parse_request_start(value) is None


# -- through the app ---------------------------------------------------------------------------------------------


def test_a_request_that_waited_past_the_budget_is_refused_before_authentication(make_app) -> None:
    app = make_app(QUEUE_TIME_BUDGET_MS=200)
    response = app.test_client().post(
        URL, json=CBC, headers={"X-Request-Start": microseconds_ago(10), "Authorization": "Bearer not-a-key"}
    )
    # Without shedding a wrong key answers 401; shed first, it never reaches authentication.
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.content_type == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 503 and problem["title"] == "Service Unavailable" and problem["errors"] == {}
    assert "200 ms" in problem["detail"]


def test_a_refused_request_stores_nothing_and_writes_no_audit_row(make_app, sqlite_url: str) -> None:
    client = make_app(QUEUE_TIME_BUDGET_MS=200).test_client()  # with a valid API key (tests/credentials.py)
    database = Database.connect(sqlite_url)
    try:
        with database.session() as session:
            audits_before = session.scalar(select(func.count()).select_from(AuditEvent))
        response = client.post(URL, json=CBC, headers={"X-Request-Start": microseconds_ago(10)})
        assert response.status_code == 503
        with database.session() as session:
            assert session.scalar(select(func.count()).select_from(CbcResult)) == 0
            assert session.scalar(select(func.count()).select_from(AuditEvent)) == audits_before
    finally:
        database.engine.dispose()


def test_a_request_within_the_budget_is_served(make_app) -> None:
    client = make_app(QUEUE_TIME_BUDGET_MS=60_000).test_client()
    response = client.post(URL, json=CBC, headers={"X-Request-Start": microseconds_ago(1)})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["stored"]["duplicate"] is False


@pytest.mark.parametrize("stamp", [None, "garbage", "t=99999999999999999"])  # none, unreadable, in the future
def test_without_a_usable_stamp_the_request_is_served(make_app, stamp: str | None) -> None:
    client = make_app(QUEUE_TIME_BUDGET_MS=200).test_client()
    response = client.get("/healthz", headers={"X-Request-Start": stamp} if stamp else {})
    assert response.status_code == 200


def test_a_refusal_is_counted_in_the_metrics(make_app) -> None:
    """Issue 14 item 4 names labservice_shed_requests_total: requests refused at once by queue time."""
    app = make_app(QUEUE_TIME_BUDGET_MS=200)
    scraper = bearer_client(app, new_key(app, "metrics"))

    def shed_count() -> float:
        text = scraper.get("/metrics").get_data(as_text=True)
        return next(
            float(line.split()[1]) for line in text.splitlines() if line.startswith("labservice_shed_requests_total ")
        )

    before = shed_count()
    assert app.test_client().get("/healthz", headers={"X-Request-Start": microseconds_ago(10)}).status_code == 503
    assert shed_count() == before + 1


def test_the_liveness_probe_is_never_refused_by_queue_time(make_app) -> None:
    """/livez says the process answers: refused under load, it would get a busy, healthy process restarted."""
    client = make_app(QUEUE_TIME_BUDGET_MS=200).test_client()
    assert client.get("/livez", headers={"X-Request-Start": microseconds_ago(10)}).status_code == 200


# -- the front's peer address --------------------------------------------------------------------------------------


def seen_environ(secret_of_front: str, headers: dict[str, str]) -> dict[str, Any]:
    """The environ an app wrapped by QueueTimeEdge sees for a request from 127.0.0.1 (the front's side)."""
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        start_response("204 No Content", [])
        return []

    environ = {
        "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},
    }
    list(QueueTimeEdge(app, 200, front_secret=secret_of_front)(environ, lambda *args: None))
    return seen


def test_the_front_names_the_client_next_to_its_secret() -> None:
    seen = seen_environ("s3cret", {"X-Labservice-Front": "s3cret", "X-Labservice-Peer": "203.0.113.9"})
    assert seen["REMOTE_ADDR"] == "203.0.113.9"
    assert "HTTP_X_LABSERVICE_FRONT" not in seen and "HTTP_X_LABSERVICE_PEER" not in seen


@pytest.mark.parametrize("front_secret", ["", "another"])  # no front, or a client guessing
def test_a_peer_header_without_the_front_s_secret_is_dropped(front_secret: str) -> None:
    seen = seen_environ(front_secret, {"X-Labservice-Front": "guess", "X-Labservice-Peer": "203.0.113.9"})
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert "HTTP_X_LABSERVICE_PEER" not in seen
