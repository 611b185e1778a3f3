"""A batch upload's live progress in a real browser (issue 12 item 1): gunicorn with the default kind of queue
(SQLite) and a real `labservice worker`. The page of a queued batch shows a progress bar and reloads itself
(a meta refresh: no script, so the CSP of labservice/middleware/headers.py is untouched) until the batch is
done, when it shows the finished batch's summary."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from labservice.security.users import create_user
from labservice.store.database import Database, migrate
from labservice.store.models import BatchJob
from tests.batch.job_workers import DEADLINE_SECONDS
from tests.e2e.conftest import gunicorn_server, shoot, sign_in

pytestmark = pytest.mark.slow

ROWS = 600
PASSWORD = "e2e-jobs-password-not-secret"


@pytest.fixture(scope="module")
def queued_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Path]]:
    """gunicorn whose uploads wait in a SQLite queue (no worker yet): (base URL, the environment, its folder)."""
    instance = tmp_path_factory.mktemp("e2e-jobs")
    url = f"sqlite:///{instance / 'labservice.sqlite'}"
    migrate(url)
    database = Database.connect(url)
    with database.session() as session:
        create_user(session, "jobs", PASSWORD, display_name="Dr Jobs")
    database.engine.dispose()
    env = {
        **os.environ,
        "LABSERVICE_DATABASE_URL": url,
        "LABSERVICE_INSTANCE_PATH": str(instance),
        "LABSERVICE_BATCH_DIRECTORY": str(instance / "batches"),
        "LABSERVICE_AUTO_MIGRATE": "false",
        "LABSERVICE_JOB_QUEUE": f"sqlite:///{instance / 'jobs.sqlite3'}",
        "LABSERVICE_BATCH_CHUNK_ROWS": "5",
    }
    with gunicorn_server(env, instance) as base:
        yield base, env, instance


def _job(url: str) -> BatchJob | None:
    """The one batch job in this server's database, as the worker last committed it."""
    database = Database.connect(url)
    try:
        with database.session() as session:
            return session.scalars(select(BatchJob)).first()
    finally:
        database.engine.dispose()


def _readable(url: str) -> bool:
    """Whether a page can be served now: a worker stopped inside a transaction holds the database's write lock,
    and every page writes its audit row, so the test checks it can take that lock (and gives it back at once)."""
    path = url.removeprefix("sqlite:///")
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=0.5, isolation_level=None)) as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False


def _pause_mid_job(worker: subprocess.Popen, url: str) -> None:
    """Stop the worker (SIGSTOP) once it has committed progress on the job and before it finishes it. The job
    has ROWS / BATCH_CHUNK_ROWS chunks, each its own commit, so there is a long window; the database is polled,
    the test never sleeps a fixed time."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        job = _job(url)
        if job is not None and job.status == "running" and 0 < job.rows_read < ROWS:
            os.kill(worker.pid, signal.SIGSTOP)
            if _readable(url):
                return
            os.kill(worker.pid, signal.SIGCONT)  # stopped inside a transaction: pages would wait for its lock
        if job is not None and job.status not in ("queued", "running"):
            pytest.fail(f"the job ended ({job.status}) before it could be seen mid-way")
        time.sleep(0.005)
    pytest.fail("the worker did not start the job")


def test_a_batch_upload_shows_its_progress_then_the_finished_batch(browser, queued_server, tmp_path):
    base, env, instance = queued_server
    lines = ["Patient ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL),NEUT# (10^9/L)"]
    lines += [f"E2E-JOB-{i:04d},2026-11-{1 + i % 28:02d}T08:00:00Z,F,50,{40 + i % 300},12.5,3.0" for i in range(ROWS)]
    source = tmp_path / "cbc.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    worker = None
    try:
        sign_in(page, base, "jobs", PASSWORD)
        page.goto(base + "/dashboard/batches")
        page.set_input_files("#upload-file", str(source))
        page.click("#upload-button")
        page.wait_for_url("**/dashboard/batches/*")
        # No worker yet: the batch waits, its page shows a progress bar at 0 and reloads itself.
        assert page.locator("#job").get_attribute("data-status") == "queued"
        assert page.locator("#job-progress").get_attribute("value") == "0.0"
        assert page.locator('meta[http-equiv="refresh"]').count() == 1
        shoot(page, "batch-job-queued")
        with (instance / "worker.log").open("ab") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "labservice.cli", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        _pause_mid_job(worker, env["LABSERVICE_DATABASE_URL"])
        paused = _job(env["LABSERVICE_DATABASE_URL"])
        assert paused is not None
        # The page reloads itself (no click or reload from the test) and shows the job running, part-way.
        running = page.locator('#job[data-status="running"] #job-progress')
        expect(running).to_have_attribute("value", re.compile(r"^0\.\d*[1-9]"), timeout=30_000)
        expect(page.locator('dd[data-field="rows_read"]')).to_have_text(str(paused.rows_read), timeout=30_000)
        shoot(page, "batch-job-running")
        middle = float(running.get_attribute("value") or "nan")
        assert 0 < middle < 1
        os.kill(worker.pid, signal.SIGCONT)
        # ... and comes, by itself, to the finished batch.
        page.wait_for_selector('dd[data-field="rows_out"]', timeout=DEADLINE_SECONDS * 1000)
        shoot(page, "batch-job-done")
        assert page.locator('dd[data-field="rows_out"]').inner_text().strip() == str(ROWS)
        assert page.locator('dd[data-field="stored"]').inner_text().strip() == str(ROWS)
        assert page.locator("#download-csv").count() == 1
        assert page.locator('meta[http-equiv="refresh"]').count() == 0  # done: it stops reloading
    finally:
        if worker is not None:
            os.kill(worker.pid, signal.SIGCONT)
            worker.terminate()
            worker.wait(timeout=30)
        context.close()
