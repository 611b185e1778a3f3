"""The database goes away and comes back: the service answers 503 meanwhile and recovers by itself (issue 6 §5).

A private PostgreSQL cluster (its own directory and port: the shared server on 5432 is never stopped) and a
real gunicorn with 2 workers. The cluster is stopped (`pg_ctl stop -m fast`, later `-m immediate`): every
request that needs the database answers 503 problem+json with Retry-After within a bounded time (not 500,
no hang) and /healthz says the database does not answer. The cluster is started again: the same gunicorn,
not restarted, answers 200 and stores again. A worker killed during the outage is replaced by one that
starts without the database.
"""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest
import requests

from labservice.store.database import migrate
from tests.faults.servers import bearer, create_api_key, gunicorn, private_postgres, wait_until

#: A request during the outage must be answered within this many seconds (the connect timeout is 5 s).
BOUND = 15.0
#: Seconds a new worker takes, at most, to load the app on this machine (about 1 s).
WORKER_BOOT = 4.0


def urgent_cbc(patient: str) -> dict:
    """Platelets 15 x10^9/L (< 20, critical: clinical-rules §3): urgent, stored with a referral."""
    return {
        "patient": {"id": patient, "sex": "female", "age_years": 40},
        "collected_at": "2026-11-20T08:30:00Z",
        "results": {"platelets": 15, "hemoglobin": 13.5, "wbc": 6.0, "neutrophils": 3.0},
    }


def stored_patients(url: str) -> list[str]:
    with psycopg.connect(url, connect_timeout=5) as connection:
        return [
            row[0]
            for row in connection.execute(
                "SELECT p.external_id FROM cbc_results c JOIN patients p ON p.id = c.patient_id ORDER BY c.id"
            )
        ]


def timed(call, *args, **kwargs):
    started = time.monotonic()
    response = call(*args, **kwargs)
    return response, time.monotonic() - started


def assert_unavailable(response: requests.Response, elapsed: float, *, problem: bool = True) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert int(response.headers["Retry-After"]) >= 1
    assert elapsed < BOUND, f"answered after {elapsed:.1f} s"
    if problem:
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert response.json()["status"] == 503 and response.json()["title"] == "Service Unavailable"


@pytest.fixture
def cluster():
    with private_postgres() as cluster:
        yield cluster


def test_the_service_answers_503_while_postgresql_is_down_and_recovers_by_itself(cluster, tmp_path):
    with psycopg.connect(cluster.url, autocommit=True, connect_timeout=5) as connection:
        connection.execute("CREATE DATABASE labservice")
    url = cluster.url.rsplit("/", 1)[0] + "/labservice"
    migrate(url.replace("postgresql://", "postgresql+psycopg://"))
    api_key = create_api_key(url)
    auth = bearer(api_key)
    # AUTO_MIGRATE as by default: each worker migrates when it starts (a no-op here), if it can.
    env = {
        "LABSERVICE_DATABASE_URL": url,
        "LABSERVICE_BATCH_DIRECTORY": str(tmp_path / "batches"),
        "LABSERVICE_AUTO_MIGRATE": "true",
    }
    with gunicorn(env, workers=2) as server:
        api = server.base + "/api/v1"

        def interpret(patient: str, key: str | None = None) -> requests.Response:
            headers = {**auth, **({"Idempotency-Key": key} if key else {})}
            return requests.post(f"{api}/interpretations", json=urgent_cbc(patient), headers=headers, timeout=BOUND + 5)

        # Up: stored, healthy.
        assert interpret("OUT-1").status_code == 200
        health = requests.get(server.base + "/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["database"] == "ok"

        for cycle, mode in enumerate(("fast", "immediate"), start=1):
            cluster.stop(mode)
            # Several requests of each kind, so both workers (each with pooled connections) meet the outage.
            for attempt in range(4):
                response, elapsed = timed(interpret, f"DOWN-{cycle}-{attempt}", key=f"down-{cycle}")
                assert_unavailable(response, elapsed)
                response, elapsed = timed(requests.get, f"{api}/referrals", headers=auth, timeout=BOUND + 5)
                assert_unavailable(response, elapsed)
                response, elapsed = timed(requests.get, server.base + "/healthz", timeout=BOUND + 5)
                assert_unavailable(response, elapsed, problem=False)
                assert response.json()["status"] == "unavailable" and response.json()["database"] == "unavailable"
            response, elapsed = timed(
                requests.get, server.base + "/dashboard/", timeout=BOUND + 5, allow_redirects=False
            )
            assert response.status_code in (503, 302, 303), response.status_code  # sign-in needs the database too
            assert elapsed < BOUND
            if cycle == 1:
                # A worker that dies meanwhile is replaced, and the new one starts without the database.
                victim = server.worker_pids()[0]
                os.kill(victim, signal.SIGKILL)
                wait_until(
                    lambda dead=victim: len(server.worker_pids()) == 2 and dead not in server.worker_pids(),
                    30,
                    "a new worker",
                )
                replacement = (set(server.worker_pids()) - {victim}).pop()
                time.sleep(WORKER_BOOT)  # it has loaded the app (and met the database's absence) by then
                assert server.process.poll() is None, "gunicorn stopped: " + server.output()[-3000:]
                assert replacement in server.worker_pids()
                for _ in range(4):
                    response, elapsed = timed(requests.get, server.base + "/healthz", timeout=BOUND + 5)
                    assert_unavailable(response, elapsed, problem=False)

            cluster.start()
            # The same gunicorn, not restarted, answers again and stores again.
            wait_until(
                lambda: requests.get(server.base + "/healthz", timeout=5).status_code == 200,
                30,
                "/healthz to answer 200 again",
            )
            for attempt in range(4):
                answer = interpret(f"UP-{cycle}-{attempt}")
                assert answer.status_code == 200, answer.text
                assert answer.json()["stored"]["duplicate"] is False
            # The key used during the outage kept no 503: it runs now, once.
            keyed = interpret(f"DOWN-{cycle}-0", key=f"down-{cycle}")
            assert keyed.status_code == 200 and "Idempotent-Replayed" not in keyed.headers
            assert keyed.json()["stored"]["duplicate"] is False
            assert requests.get(f"{api}/referrals", headers=auth, timeout=5).status_code == 200

        assert stored_patients(url) == [
            "OUT-1",
            "UP-1-0",
            "UP-1-1",
            "UP-1-2",
            "UP-1-3",
            "DOWN-1-0",
            "UP-2-0",
            "UP-2-1",
            "UP-2-2",
            "UP-2-3",
            "DOWN-2-0",
        ]
        assert "Traceback" not in server.output()


def test_the_app_starts_without_its_database_and_answers_503(tmp_path):
    """Nothing listens on the port: the app still starts (not migrated, with a warning), answers 503 at once
    rather than failing to start, which would stop gunicorn altogether."""
    from labservice.app import create_app
    from labservice.security.keys import KEY_PREFIX, PREFIX_HEX_CHARS
    from labservice.store.database import migrate_if_it_answers
    from tests.faults.servers import free_port

    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/labservice"
    started = time.monotonic()
    assert migrate_if_it_answers(url, connect_timeout=2) is False
    app = create_app({"TESTING": True, "DATABASE_URL": url, "BATCH_DIRECTORY": str(tmp_path / "batches")})
    client = app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json["database"] == "unavailable"
    # A well-formed key, which only the database can say is unknown.
    token = f"{KEY_PREFIX}_{'0' * PREFIX_HEX_CHARS}_{'x' * 43}"
    answer = client.post(
        "/api/v1/interpretations", json=urgent_cbc("NOWHERE"), headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 503 and answer.mimetype == "application/problem+json"
    assert answer.headers["Retry-After"] == "5"
    assert time.monotonic() - started < BOUND
