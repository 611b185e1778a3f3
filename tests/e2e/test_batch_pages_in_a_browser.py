"""A batch's page and the list of uploads in a real browser (issue 14 items 6 and 11): Debian's chromium driven
by Playwright against gunicorn, with real files on disk (a Windows-1252 file, a UTF-16 file, a file whose only
id column is `id`). Screenshots go to .screenshots/ for review.

Which rows are rejected is decided by the file written here (platelets `abc` is not a number); platelets 45 is
below 150 (thrombocytopenia, clinical-rules §4).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from labservice.security.users import create_user
from labservice.store.database import Database, migrate
from tests.batch.encoded_files import id_only_file, utf16_file, windows_1252_file
from tests.batch.job_workers import DEADLINE_SECONDS
from tests.e2e.conftest import gunicorn_server, shoot, sign_in
from tests.e2e.test_batch_progress_in_a_browser import PASSWORD as JOBS_PASSWORD
from tests.e2e.test_batch_progress_in_a_browser import ROWS as JOB_ROWS
from tests.e2e.test_batch_progress_in_a_browser import _job, _pause_mid_job, queued_server  # noqa: F401

pytestmark = pytest.mark.slow

PASSWORD = "e2e-batch-pages-password-not-secret"
ROWS = 240  # five pages of rows; every 4th is rejected: 60 rejected rows, two pages


def batch_csv(rows: int, prefix: str) -> tuple[str, list[int]]:
    lines = ["MRN,Sample ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL)"]
    rejected = []
    for i in range(rows):
        bad = i % 4 == 1
        lines.append(f"{prefix}-{i:03d},S-{i:03d},2026-11-{1 + i % 28:02d}T08:00:00Z,F,40,{'abc' if bad else 45},13.5")
        if bad:
            rejected.append(i + 2)
    return "\n".join(lines) + "\n", rejected


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gunicorn with a database of its own (the batches here stay out of the other browser tests' worklist);
    uploads run inside their request (JOB_QUEUE=immediate)."""
    instance = tmp_path_factory.mktemp("e2e-batch-pages")
    url = f"sqlite:///{instance / 'labservice.sqlite'}"
    migrate(url)
    database = Database.connect(url)
    with database.session() as session:
        create_user(session, "batches", PASSWORD, display_name="Dr Batch")
    database.engine.dispose()
    env = {
        **os.environ,
        "LABSERVICE_DATABASE_URL": url,
        "LABSERVICE_INSTANCE_PATH": str(instance),
        "LABSERVICE_BATCH_DIRECTORY": str(instance / "batches"),
        "LABSERVICE_AUTO_MIGRATE": "false",
        "LABSERVICE_JOB_QUEUE": "immediate",
    }
    with gunicorn_server(env, instance) as base:
        yield base


@pytest.fixture
def batch_page(browser, batch_server):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, batch_server, "batches", PASSWORD)
    yield page
    context.close()


def upload(page, base: str, path: Path) -> None:
    page.goto(base + "/dashboard/batches")
    page.set_input_files("#upload-file", str(path))
    page.click("#upload-button")
    page.wait_for_load_state()


def test_the_batch_page_is_named_after_the_file_and_opens_each_patient(batch_page, batch_server, tmp_path):
    page = batch_page
    source = tmp_path / "ward-7 results.csv"
    text, rejected = batch_csv(ROWS, "BPG")
    source.write_text(text, encoding="utf-8")
    upload(page, batch_server, source)
    page.wait_for_url(re.compile(r".*/dashboard/batches/[0-9a-f]{32}$"))
    batch_id = page.url.rsplit("/", 1)[1]
    assert page.title() == "ward-7 results.csv · labservice"
    expect(page.locator("h1")).to_have_text("ward-7 results.csv")
    expect(page.locator("#batch-id")).to_have_text(batch_id)
    expect(page.locator("#job")).to_have_attribute("data-status", "done")
    rows = page.locator("#batch-rows tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-line", "2")
    shoot(page, "batch-page-named-after-its-file")
    # The first row's patient opens the patient's page.
    page.locator("#batch-rows tbody tr").first.locator("a.patient-link").click()
    page.wait_for_url("**/dashboard/patients/BPG-000")
    expect(page.locator("h1")).to_contain_text("BPG-000")
    shoot(page, "batch-page-patient-link-opened")
    page.go_back()
    # A rejected row's patient is not stored: no link.
    expect(page.locator('#batch-rows tr[data-line="3"] a')).to_have_count(0)
    # Every rejected row, two pages: line, id columns and error.
    expect(page.locator("#rejected-heading")).to_have_text("Rejected rows (60)")
    first = page.locator("#rejected-rows tbody tr")
    expect(first).to_have_count(50)
    expect(first.first.locator('td[data-field="error"]')).to_have_text(
        "line 3, column PLT (10^9/L): 'abc' is not a number"
    )
    page.locator('nav[data-pager="rejected_page"] a[rel="next"]').click()
    page.wait_for_url(re.compile(r".*rejected_page=2#rejected$"))
    lines = page.locator("#rejected-rows tbody tr").evaluate_all("rows => rows.map(r => r.dataset.line)")
    assert [int(line) for line in lines] == rejected[50:]
    expect(page.locator('nav[data-pager="rejected_page"] [data-field="page"]')).to_have_text("Page 2 of 2")
    shoot(page, "batch-page-rejected-rows-page-2")
    # The rows' pager keeps the rejected rows' page.
    page.locator('nav[data-pager="page"] a[rel="next"]').click()
    page.wait_for_url(re.compile(r".*\?page=2&rejected_page=2#results$"))
    expect(page.locator("#batch-rows tbody tr").first).to_have_attribute("data-line", "52")


def test_a_file_without_a_patient_id_is_said_loudly(batch_page, batch_server, tmp_path):
    page = batch_page
    upload(page, batch_server, id_only_file(tmp_path))
    warning = page.locator("#patient-id-warning")
    expect(warning).to_be_visible()
    expect(warning).to_have_attribute("role", "alert")
    expect(warning).to_contain_text(
        "these rows have no patient id and will not appear in the worklist; map a patient column"
    )
    expect(warning).to_contain_text("the column `id` was read as a sample id")
    expect(page.locator('dd[data-field="stored"]')).to_have_text("0")
    shoot(page, "batch-page-no-patient-id-warning")
    page.goto(batch_server + "/dashboard/batches")
    row = page.locator("#recent-batches tbody tr", has_text="cbc-with-id-column.csv")
    expect(row.locator(".row-problem")).to_contain_text("will not appear in the worklist")
    shoot(page, "batches-list-no-patient-id-warning")


def test_a_windows_1252_file_is_read_and_a_utf16_file_refused(batch_page, batch_server, tmp_path):
    page = batch_page
    upload(page, batch_server, windows_1252_file(tmp_path))
    expect(page.locator('[data-field="encoding"]')).to_have_text("Windows-1252")
    expect(page.locator('dd[data-field="interpreted"]')).to_have_text("2")
    expect(page.locator("#summary details")).to_contain_text("PLT (x10³/µL) → platelets")
    shoot(page, "batch-page-windows-1252")
    upload(page, batch_server, utf16_file(tmp_path))
    error = page.locator("#upload-error")
    expect(error).to_contain_text("UTF-16")
    expect(error).to_contain_text("save it as CSV UTF-8")
    shoot(page, "batches-utf16-refused")


def test_the_batch_list_shows_a_running_job_with_its_progress(browser, queued_server, tmp_path):  # noqa: F811
    """The real worker is paused (SIGSTOP) once it has committed progress, so the job is seen running."""
    base, env, instance = queued_server
    lines = ["Patient ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL)"]
    lines += [f"E2E-LIST-{i:04d},2026-11-{1 + i % 28:02d}T08:00:00Z,F,50,{40 + i % 300},12.5" for i in range(JOB_ROWS)]
    source = tmp_path / "night-run.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    worker = None
    try:
        sign_in(page, base, "jobs", JOBS_PASSWORD)
        upload(page, base, source)
        page.wait_for_url(re.compile(r".*/dashboard/batches/[0-9a-f]{32}$"))
        batch_id = page.url.rsplit("/", 1)[1]
        expect(page.locator("h1")).to_have_text("night-run.csv")
        page.goto(base + "/dashboard/batches")
        queued = page.locator(f'#recent-batches tr[data-batch-id="{batch_id}"]')
        expect(queued).to_have_attribute("data-status", "queued")
        with (instance / "worker-list.log").open("ab") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "labservice.cli", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        _pause_mid_job(worker, env["LABSERVICE_DATABASE_URL"])
        paused = _job(env["LABSERVICE_DATABASE_URL"])
        assert paused is not None and paused.status == "running"
        page.locator("#refresh-recent").click()  # the list's own link: no reload from the test
        running = page.locator(f'#recent-batches tr[data-batch-id="{batch_id}"]')
        expect(running).to_have_attribute("data-status", "running")
        progress = float(running.locator("progress").get_attribute("value") or "nan")
        # The part of the file done: the header and the rows read, of its 1 + JOB_ROWS lines (all of one length
        # but a few bytes), not the bytes the reader has read ahead (the whole small file: 99 %).
        assert progress == pytest.approx((1 + paused.rows_read) / (1 + JOB_ROWS), abs=0.02)
        assert 0 < progress < 1
        expect(running.locator('[data-field="status"]')).to_contain_text("running")
        expect(running.locator("td").nth(2)).to_have_text(str(paused.rows_read))
        shoot(page, "batches-list-running-job")
        # Its page: the same page as a finished batch, reloading itself while the job runs.
        running.locator("a").click()
        expect(page.locator("#job")).to_have_attribute("data-status", "running")
        expect(page.locator("h1")).to_have_text("night-run.csv")
        os.kill(worker.pid, signal.SIGCONT)
        expect(page.locator("#job")).to_have_attribute("data-status", "done", timeout=DEADLINE_SECONDS * 1000)
        expect(page.locator("#batch-rows tbody tr")).to_have_count(50)
        page.goto(base + "/dashboard/batches")
        expect(page.locator(f'#recent-batches tr[data-batch-id="{batch_id}"]')).to_have_attribute("data-status", "done")
        shoot(page, "batches-list-job-done")
    finally:
        if worker is not None:
            os.kill(worker.pid, signal.SIGCONT)
            worker.terminate()
            worker.wait(timeout=30)
        context.close()
