"""Batch uploads as jobs run by a real `labservice worker` (issue 12 item 1; docs/batches.md, "Jobs"): 202 with a
Location, polling the batch's status and progress, downloading when done, on the default SQLite queue and on
the real Redis; and a job surviving its worker's SIGKILL with every row stored exactly once."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labservice.extensions import current_database
from labservice.services.job_queue import current_queue
from labservice.store.models import Batch, BatchJob, BatchJobChunk, CbcResult, Interpretation
from tests.batch.job_workers import job_state, kill_worker, poll, start_worker, stop_worker

BATCHES = "/api/v1/batches"
REDIS_URL = "redis://127.0.0.1:6379/0"


def patients_csv(rows: int, tag: str = "") -> bytes:
    """A wide CSV of `rows` CBCs, each of its own patient, and one line that is not a number (a rejected row)."""
    lines = ["patient_id,collected_at,sex,age,PLT,HGB (g/dL),WBC"]
    for i in range(rows):
        lines.append(f"P{tag}{i:06d},2026-11-{1 + i % 28:02d}T08:00:00Z,F,40,{100 + i % 300},13.5,5.0")
    lines.append(f"X{tag},2026-11-02T08:00:00Z,F,40,abc,13.5,5.0")
    return ("\n".join(lines) + "\n").encode()


def upload(client, data: bytes):
    return client.post(BATCHES, data={"file": (io.BytesIO(data), "cbc.csv")}, content_type="multipart/form-data")


def count(app, what, *where) -> int:
    with app.app_context(), current_database().session() as session:
        return int(session.scalar(select(func.count()).select_from(what).where(*where)) or 0)


@pytest.fixture
def queued_app(make_app, tmp_path):
    """An app whose uploads wait in a SQLite queue file for a real worker (the default kind of queue)."""

    def build(**config):
        settings = {
            "JOB_QUEUE": f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
            "JOB_QUEUE_NAME": f"test-{uuid.uuid4().hex[:8]}",
            "INSTANCE_PATH": str(tmp_path / "instance"),
            **config,
        }
        return make_app(**settings)

    return build


def run_one_job(app, tmp_path: Path, rows: int) -> None:
    client = app.test_client()
    data = patients_csv(rows)
    response = upload(client, data)
    # The job resource (docs/batches.md): 202 Accepted, Location, queued until a worker takes it.
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    batch_id = body["batch_id"]
    assert response.headers["Location"] == f"{BATCHES}/{batch_id}" == body["links"]["self"]
    assert body["status"] == "queued" and body["progress"] == 0.0 and body["summary"] is None
    assert body["bytes_total"] == len(data) and body["already_uploaded"] is False
    assert "csv" not in body["links"]
    early = client.get(f"{BATCHES}/{batch_id}/result.csv")
    assert early.status_code == 409 and early.mimetype == "application/problem+json"
    assert "queued" in early.get_json()["detail"]
    again = upload(client, data)  # the same file while its job waits: that job, not a second one
    assert again.status_code == 202 and again.get_json()["already_uploaded"] is True
    log = tmp_path / "worker.log"
    worker = start_worker(app, log)
    try:
        done = poll(lambda: job_state(client, batch_id), lambda s: s["status"] in ("done", "failed"), "the job", log)
    finally:
        stop_worker(worker)
    assert done["status"] == "done", done
    # Every row interpreted or rejected: `rows` CBCs with an id are stored, the line with `abc` is rejected.
    assert (done["rows_read"], done["interpreted"], done["rejected"], done["stored"]) == (rows + 1, rows, 1, rows)
    assert done["progress"] == 1.0 and done["started_at"] and done["finished_at"] and done["errors"] == []
    assert done["summary"]["stored"] == rows and done["summary"]["rejected"] == 1
    result = client.get(done["links"]["csv"])
    assert result.status_code == 200
    assert len(list(csv.DictReader(io.StringIO(result.get_data(as_text=True))))) == rows + 1
    assert count(app, CbcResult, CbcResult.batch_id == batch_id) == rows


def test_an_upload_is_a_job_run_by_the_worker_on_the_sqlite_queue(queued_app, tmp_path):
    run_one_job(queued_app(BATCH_CHUNK_ROWS=20), tmp_path, rows=50)


def test_an_upload_is_a_job_run_by_the_worker_on_redis(queued_app, tmp_path):
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis server at {REDIS_URL}")
    app = queued_app(JOB_QUEUE=REDIS_URL, BATCH_CHUNK_ROWS=20)
    try:
        run_one_job(app, tmp_path, rows=30)
    finally:
        current_queue(app).huey.storage.flush_all()  # this test's queue name only (JOB_QUEUE_NAME is unique)


def test_a_job_whose_worker_is_killed_resumes_and_stores_every_row_once(queued_app, database_url, tmp_path):
    rows, chunk = 400, 20  # 21 chunks: the worker is killed after a few of them committed
    app = queued_app(DATABASE_URL=database_url, BATCH_CHUNK_ROWS=chunk)
    client = app.test_client()
    response = upload(client, patients_csv(rows))
    assert response.status_code == 202, response.get_data(as_text=True)
    batch_id = response.get_json()["batch_id"]
    log = tmp_path / "worker.log"
    first = start_worker(app, log)
    try:
        poll(lambda: count(app, BatchJobChunk, BatchJobChunk.job_id == batch_id), lambda n: n >= 3, "3 chunks", log)
    finally:
        kill_worker(first)  # SIGKILL: no clean-up of any kind
    killed = job_state(client, batch_id)
    assert killed["status"] == "running", "the worker finished before it was killed: the test proved nothing"
    committed = count(app, BatchJobChunk, BatchJobChunk.job_id == batch_id)
    assert 0 < committed < rows // chunk + 1
    # What was committed is whole chunks: no chunk's rows without its marker, nor the reverse.
    assert count(app, CbcResult, CbcResult.batch_id == batch_id) == killed["stored"]
    assert killed["stored"] % chunk == 0 and killed["stored"] >= 3 * chunk
    second = start_worker(app, log)  # takes over at start-up: the first one's process is gone
    try:
        done = poll(lambda: job_state(client, batch_id), lambda s: s["status"] in ("done", "failed"), "resume", log)
    finally:
        stop_worker(second)
    assert done["status"] == "done", done
    # Every row stored exactly once: one result and one interpretation per CBC, counted once in the summary.
    assert count(app, CbcResult, CbcResult.batch_id == batch_id) == rows
    assert count(app, CbcResult) == rows
    assert count(app, Interpretation) == rows
    assert done["stored"] == done["summary"]["stored"] == rows
    assert (done["interpreted"], done["rejected"]) == (rows, 1)
    with app.app_context(), current_database().session() as session:
        job = session.get(BatchJob, batch_id)
        assert job is not None and job.attempts == 2
        assert session.get(Batch, batch_id).stored == rows
    result = client.get(done["links"]["csv"])
    assert len(list(csv.DictReader(io.StringIO(result.get_data(as_text=True))))) == rows + 1
