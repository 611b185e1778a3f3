"""Concurrent retries with one Idempotency-Key run the request once (issue 6 §4).

Threads against the app (on SQLite and PostgreSQL), then clients against a real gunicorn with 4 worker
processes and PostgreSQL: every answer is the first request's answer (replayed) or 409 while it runs, and
the rows are stored once.
"""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy import func, select

from labservice.store.database import Database, migrate
from labservice.store.models import Batch, CbcResult, IdempotencyRecord, Interpretation, Referral
from tests.faults.servers import bearer, create_api_key, gunicorn

CLIENTS = 6
ROWS = 200
# Platelets 15 x10^9/L (< 20, critical: clinical-rules §3) on every fifth row: urgent, opens a referral.
CSV = (
    "Patient ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL),NEUT# (10^9/L)\n"
    + "".join(
        f"CC-{row % 40:02d},2026-11-{1 + row // 40:02d}T08:00:00Z,M,50,{15 if row % 5 == 0 else 240},14.5,3.0\n"
        for row in range(ROWS)
    )
).encode()
CBC = {
    "patient": {"id": "CC-JSON", "sex": "female", "age_years": 40},
    "collected_at": "2026-11-20T08:30:00Z",
    "results": {"platelets": 15, "hemoglobin": 13.5, "wbc": 6.0, "neutrophils": 3.0},
}


def at_once(send: Callable[[], Any], clients: int = CLIENTS) -> list[Any]:
    """Call `send` from `clients` threads released together; their results (or exceptions) in any order."""
    barrier = threading.Barrier(clients)
    results: list[Any] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait(timeout=30)
        try:
            outcome = send()
        except Exception as error:  # kept for the assertion
            outcome = error
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == clients, "a client did not finish"
    return results


def check_once(answers: list[Any], status: int) -> None:
    """One answer ran the request; every other is its replay (same bytes) or 409 while it ran."""
    errors = [answer for answer in answers if isinstance(answer, Exception)]
    assert not errors, errors
    ran = [a for a in answers if a.status_code == status and a.headers.get("Idempotent-Replayed") != "true"]
    replays = [a for a in answers if a.headers.get("Idempotent-Replayed") == "true"]
    busy = [a for a in answers if a.status_code == 409]
    assert len(ran) == 1, [(a.status_code, dict(a.headers)) for a in answers]
    assert len(ran) + len(replays) + len(busy) == len(answers)
    body = ran[0].content if hasattr(ran[0], "content") else ran[0].get_data()
    for replay in replays:
        assert replay.status_code == status
        assert (replay.content if hasattr(replay, "content") else replay.get_data()) == body
    for answer in busy:
        assert int(answer.headers["Retry-After"]) >= 1


def stored(url: str) -> dict[str, int]:
    database = Database.connect(url)
    try:
        with database.session() as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (Batch, CbcResult, Interpretation, Referral, IdempotencyRecord)
            }
    finally:
        database.engine.dispose()


def test_threads_retrying_one_batch_upload_store_it_once(make_app, database_url):
    app = make_app(DATABASE_URL=database_url)

    def send():
        return app.test_client().post(
            "/api/v1/batches",
            data={"file": (io.BytesIO(CSV), "cc.csv")},
            content_type="multipart/form-data",
            headers={"Idempotency-Key": "cc-batch"},
        )

    check_once(at_once(send), 202)
    counts = stored(database_url)
    assert (counts["batches"], counts["cbc_results"], counts["interpretations"], counts["idempotency_records"]) == (
        1,
        ROWS,
        ROWS,
        1,
    )


def test_threads_retrying_one_interpretation_store_it_once(make_app, database_url):
    app = make_app(DATABASE_URL=database_url)

    def send():
        return app.test_client().post("/api/v1/interpretations", json=CBC, headers={"Idempotency-Key": "cc-json"})

    check_once(at_once(send), 200)
    counts = stored(database_url)
    assert (counts["cbc_results"], counts["referrals"], counts["idempotency_records"]) == (1, 1, 1)


@pytest.fixture
def postgresql_database(postgresql_server_url: str | None) -> Iterator[str]:
    if postgresql_server_url is None:
        pytest.skip("no PostgreSQL server reachable (set LABSERVICE_TEST_POSTGRES)")
    server = postgresql_server_url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0]
    name = f"labservice_idem_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(f"{server}/{name}".replace("postgresql://", "postgresql+psycopg://"))
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_clients_retrying_against_gunicorn_workers_store_once(postgresql_database, tmp_path):
    """4 worker processes, each request on its own connection: the database's unique (owner, key) decides."""
    api_key = create_api_key(postgresql_database)
    env = {
        "LABSERVICE_DATABASE_URL": postgresql_database,
        "LABSERVICE_BATCH_DIRECTORY": str(tmp_path / "batches"),
        "LABSERVICE_AUTO_MIGRATE": "false",
    }
    auth = bearer(api_key)
    with gunicorn(env, workers=4) as server:

        def interpretation():
            return requests.post(
                f"{server.base}/api/v1/interpretations",
                json=CBC,
                timeout=60,
                headers={**auth, "Idempotency-Key": '"gunicorn-json"'},
            )

        def batch():
            return requests.post(
                f"{server.base}/api/v1/batches",
                files={"file": ("cc.csv", CSV, "text/csv")},
                timeout=60,
                headers={**auth, "Idempotency-Key": '"gunicorn-batch"'},
            )

        check_once(at_once(interpretation, 8), 200)
        check_once(at_once(batch, 8), 202)
        # Afterwards every retry is a replay.
        assert interpretation().headers.get("Idempotent-Replayed") == "true"
        assert batch().headers.get("Idempotent-Replayed") == "true"
    url = postgresql_database.replace("postgresql://", "postgresql+psycopg://")
    counts = stored(url)
    assert (counts["batches"], counts["cbc_results"], counts["interpretations"], counts["idempotency_records"]) == (
        1,
        ROWS + 1,
        ROWS + 1,
        2,
    )
