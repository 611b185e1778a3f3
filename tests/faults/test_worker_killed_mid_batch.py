"""A gunicorn worker killed (SIGKILL) in the middle of a batch upload leaves no half chunk (issue 6 §5, issue 12
item 1).

Against a real gunicorn (2 sync workers, the job run inside the upload request: JOB_QUEUE immediate, as the
tests set it) and a real PostgreSQL database: a job stores each chunk in one transaction (docs/batches.md#jobs),
and the file is one chunk, so killing the worker while it stores the rows leaves no CBC, interpretation or
referral, only the batch's row and its job; the master starts a new worker; the same upload then resumes the
job (its claimant's process is gone) and succeeds completely, every row stored once; the left-over
`.partial-*` directory is cleaned up. The upload carries an Idempotency-Key: the killed worker's claim on it is taken
over by the retry at once (the record names the process, which is gone), without waiting for the lease.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from labservice.store.database import migrate
from tests.faults.servers import bearer, create_api_key, gunicorn, wait_until

ROWS = 20_000  # stored in bulk (COPY) this still takes seconds: the kill lands inside the transaction
PATIENTS = 5_000
LEASE_SECONDS = 600
TABLES = ("batches", "patients", "cbc_results", "interpretations", "referrals", "referral_events")


def batch_csv() -> bytes:
    """ROWS CBCs of PATIENTS patients, four days each; platelets 15 x10^9/L (< 20, critical: clinical-rules §3)
    on every fourth row, so referrals are opened as the rows are stored."""
    lines = ["Patient ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL),NEUT# (10^9/L)"]
    for row in range(ROWS):
        patient, day = row % PATIENTS, 1 + row // PATIENTS
        platelets = 15 if row % 4 == 0 else 220
        lines.append(f"KILL-{patient:04d},2026-11-{day:02d}T08:00:00Z,F,40,{platelets},13.5,3.0")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def database(postgresql_server_url: str | None) -> Iterator[str]:
    """An empty, migrated database of its own on the test PostgreSQL server (dropped afterwards)."""
    if postgresql_server_url is None:
        pytest.skip("no PostgreSQL server reachable (set LABSERVICE_TEST_POSTGRES)")
    server = postgresql_server_url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0]
    name = f"labservice_kill_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = f"{server}/{name}"
    migrate(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        yield url
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def row_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, connect_timeout=5) as connection:
        return {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}


def writing_to_cbc_results(url: str) -> bool:
    """True once a transaction holds a write lock on cbc_results: the batch's rows are being stored."""
    with psycopg.connect(url, connect_timeout=5) as connection:
        return bool(
            connection.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'cbc_results' AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()"
            ).fetchone()[0]
        )


def holder_of(lock_file: Path, candidates: list[int]) -> int | None:
    """The process (among `candidates`) with `lock_file` open: the worker writing that batch."""
    for pid in candidates:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(f"/proc/{pid}/fd/{descriptor}") == str(lock_file):
                    return pid
            except OSError:
                continue
    return None


def upload(base: str, key: str | None, body: bytes, idempotency_key: str, timeout: float = 120) -> requests.Response:
    return requests.post(
        f"{base}/api/v1/batches",
        files={"file": ("kill.csv", body, "text/csv")},
        headers={**bearer(key), "Idempotency-Key": idempotency_key},
        timeout=timeout,
    )


def test_a_worker_killed_mid_batch_leaves_nothing_and_the_upload_then_succeeds(database: str, tmp_path: Path):
    batches = tmp_path / "batches"
    api_key = create_api_key(database)
    env = {
        "LABSERVICE_DATABASE_URL": database,
        "LABSERVICE_BATCH_DIRECTORY": str(batches),
        "LABSERVICE_AUTO_MIGRATE": "false",
        "LABSERVICE_IDEMPOTENCY_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    body = batch_csv()
    with gunicorn(env, workers=2) as server:
        workers_before = set(server.worker_pids())
        outcome: dict[str, object] = {}

        def send() -> None:
            try:
                outcome["response"] = upload(server.base, api_key, body, "kill-upload-1")
            except requests.RequestException as error:  # the worker dies with the connection open
                outcome["error"] = error

        client = threading.Thread(target=send, daemon=True)
        client.start()
        # The worker is inside the batch's transaction, storing rows, and has not committed.
        wait_until(lambda: writing_to_cbc_results(database), 30, "the batch's rows being stored")
        partial = wait_until(lambda: next(iter(batches.glob(".partial-*")), None), 10, "the partial directory")
        victim = wait_until(lambda: holder_of(partial / ".lock", server.worker_pids()), 10, "the uploading worker")
        assert writing_to_cbc_results(database), "the batch must still be uncommitted when the worker is killed"
        os.kill(victim, signal.SIGKILL)
        client.join(60)
        assert not client.is_alive()

        # The client got no answer (the connection was cut), and no row of the chunk is in the database: only the
        # batch's row, committed when its job started.
        assert "error" in outcome or outcome["response"].status_code >= 500, outcome  # type: ignore[union-attr]
        wait_until(lambda: not writing_to_cbc_results(database), 10, "the killed transaction to be rolled back")
        assert row_counts(database) == {**dict.fromkeys(TABLES, 0), "batches": 1}
        assert not [entry for entry in batches.iterdir() if not entry.name.startswith(".")]

        # The master replaced the worker.
        wait_until(
            lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids(),
            30,
            "the master to start a new worker",
        )
        assert victim in workers_before and set(server.worker_pids()) != workers_before

        # The killed request's claim on the key is taken over at once (the lease is 10 minutes): the same
        # upload runs again, completely.
        retried = upload(server.base, api_key, body, "kill-upload-1")
        assert retried.status_code == 202, retried.text
        summary = retried.json()["summary"]
        assert (summary["rows_in"], summary["interpreted"], summary["stored"]) == (ROWS, ROWS, ROWS)
        counts = row_counts(database)
        assert (counts["batches"], counts["patients"], counts["cbc_results"], counts["interpretations"]) == (
            1,
            PATIENTS,
            ROWS,
            ROWS,
        )
        assert counts["referrals"] >= 1
        with psycopg.connect(database, connect_timeout=5) as connection:
            stored, rows_out = connection.execute("SELECT stored, rows_out FROM batches").fetchone()
            assert (stored, rows_out) == (ROWS, ROWS)
            assert (
                connection.execute(
                    "SELECT count(*) FROM cbc_results WHERE batch_id IS DISTINCT FROM %s", (retried.json()["batch_id"],)
                ).fetchone()[0]
                == 0
            )
        # The killed upload's partial directory is gone; only the batch's own directory remains.
        assert sorted(entry.name for entry in batches.iterdir()) == [retried.json()["batch_id"]]

        # A further retry replays the answer; nothing is stored twice.
        again = upload(server.base, api_key, body, "kill-upload-1")
        assert again.status_code == 202 and again.headers.get("Idempotent-Replayed") == "true"
        assert again.content == retried.content
        assert row_counts(database) == counts
