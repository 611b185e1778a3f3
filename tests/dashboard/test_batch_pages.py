"""The dashboard's batch pages (labservice.dashboard.batch_pages), issue 14 items 6 and 11: a batch's page named
after its file, every row (paged, each stored patient linked) and every rejected row (paged), the job's progress
while it runs, and the list of uploads with the jobs not done. The Flask test client, on SQLite and PostgreSQL.

Which rows are rejected is decided by the file written here (platelets `abc` is not a number); platelets 45 is
below 150 (thrombocytopenia, clinical-rules §4).
"""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.batch.encoded_files import ID_ONLY_BYTES, UTF16_BYTES
from tests.dashboard.test_pages import elements, form, text

ROWS = 120  # rows 1..120 on lines 2..121: three pages of rows (50, 50, 20)


def batch_file(rows: int = ROWS) -> tuple[bytes, list[int]]:
    """`rows` CBCs of their own patients; every 4th holds platelets `abc` (rejected): the file and those lines."""
    lines = ["MRN,Sample ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL)"]
    rejected = []
    for i in range(rows):
        bad = i % 4 == 1
        lines.append(f"BP-{i:03d},S-{i:03d},2026-11-{1 + i % 28:02d}T08:00:00Z,F,40,{'abc' if bad else 45},13.5")
        if bad:
            rejected.append(i + 2)
    return ("\n".join(lines) + "\n").encode(), rejected


@pytest.fixture
def client(make_app, database_url: str) -> FlaskClient:
    return make_app(DATABASE_URL=database_url, SECRET_KEY="test-secret").test_client()


def upload(client: FlaskClient, data: bytes, name: str = "ward-7 results.csv", mapping: str = "", query: str = ""):
    return client.post(
        f"/dashboard/batches{query}",
        data=form(client, file=(io.BytesIO(data), name), mapping=mapping),
        content_type="multipart/form-data",
    )


def uploaded(client: FlaskClient, data: bytes, **kwargs: Any) -> str:
    response = upload(client, data, **kwargs)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert re.fullmatch(r"/dashboard/batches/[0-9a-f]{32}", response.location)
    return response.location


def table(page: str, table_id: str) -> list[dict[str, Any]]:
    """Rows of a table: their data-line and their cells' text and links."""
    body = page.split(f'<table id="{table_id}"', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    out = []
    for row in re.findall(r"<tr(.*?)>(.*?)</tr>", body, re.S):
        line = re.search(r'data-line="(\d+)"', row[0])
        cells = [text(cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)]
        links = re.findall(r'<a class="patient-link" href="([^"]+)"', row[1])
        out.append({"line": int(line.group(1)) if line else None, "cells": cells, "links": links})
    return out


def pager(page: str, name: str) -> dict[str, str]:
    block = page.split(f'data-pager="{name}"', 1)[1].split("</nav>", 1)[0]
    return {rel: link.replace("&amp;", "&") for link, rel in re.findall(r'<a href="([^"]+)" rel="(\w+)"', block)}


def test_the_batch_page_is_named_after_the_uploaded_file(client):
    location = uploaded(client, batch_file()[0])
    batch_id = location.rsplit("/", 1)[1]
    page = client.get(location).text
    assert "<title>ward-7 results.csv · labservice</title>" in page
    assert '<h1 id="batch-name">ward-7 results.csv</h1>' in page
    assert f'<p class="batch-subtitle">Batch <code class="batch-id" id="batch-id">{batch_id}</code></p>' in page
    assert sum(1 for tag, _ in elements(page).tags if tag == "h1") == 1
    # Done: the same progress section as while it ran, at 100 %, and no reloading.
    assert '<section id="job" aria-labelledby="job-heading" data-status="done">' in page
    assert '<progress id="job-progress" max="1" value="1.0">' in page
    assert 'http-equiv="refresh"' not in page


def test_a_hostile_file_name_is_text(client):
    location = uploaded(client, batch_file(3)[0], name='<img src=x onerror="alert(1)">.csv')
    page = client.get(location).text
    assert "<img src=x" not in page and "&lt;img src=x onerror=" in page


def test_every_row_is_listed_a_page_at_a_time_with_each_stored_patient_linked(client):
    data, rejected = batch_file()
    location = uploaded(client, data)
    page = client.get(location).text
    assert "Every row of the file in input order: rows 1 to 50 of 120." in text(page)
    first = table(page, "batch-rows")
    assert [row["line"] for row in first] == list(range(2, 52))
    row = first[0]  # line 2: BP-000, platelets 45
    assert row["cells"][:4] == ["2", "BP-000", "S-000", "2026-11-01T08:00:00Z"]
    assert row["links"] == ["/dashboard/patients/BP-000"]
    assert "thrombocytopenia" in row["cells"][-1]
    bad = next(row for row in first if row["line"] == 3)  # platelets "abc": rejected, its patient not stored
    assert bad["links"] == [] and bad["cells"][1] == "BP-001"
    assert bad["cells"][-1].startswith("rejected: line 3, column PLT (10^9/L): 'abc' is not a number")
    # The link opens the patient's record.
    assert "BP-000" in client.get(row["links"][0]).text
    # Page 3 of the rows: lines 102 to 121 (a rejected page beyond the one there is shows that one).
    links = pager(page, "page")
    assert set(links) == {"next"} and links["next"] == f"{location}?page=2#results"
    third = client.get(location + "?page=3&rejected_page=2").text
    assert [row["line"] for row in table(third, "batch-rows")] == list(range(102, 122))
    assert pager(third, "page") == {"prev": f"{location}?page=2#results"}
    assert "Page 3 of 3" in third
    assert len(rejected) == 30 and 'data-pager="rejected_page"' not in third  # 30 rejected rows: one page


def test_every_rejected_row_is_listed_a_page_at_a_time_with_its_line_ids_and_error(client):
    data, rejected = batch_file(ROWS * 2)  # 60 rejected rows: two pages
    location = uploaded(client, data)
    page = client.get(location).text
    assert "Rejected rows (60)" in page
    first = table(page, "rejected-rows")
    assert [row["line"] for row in first] == rejected[:50]
    line, mrn, sample, collected, error = first[0]["cells"]
    assert (line, mrn, sample, collected) == ("3", "BP-001", "S-001", "2026-11-02T08:00:00Z")
    assert error == "line 3, column PLT (10^9/L): 'abc' is not a number"
    second = client.get(pager(page, "rejected_page")["next"]).text
    assert [row["line"] for row in table(second, "rejected-rows")] == rejected[50:]
    assert "Rows not interpreted, in line order: 51 to 60 of 60." in text(second)
    # Each pager keeps the other table's page.
    both = client.get(location + "?page=4&rejected_page=2").text
    assert pager(both, "rejected_page") == {"prev": f"{location}?page=4#rejected"}
    assert pager(both, "page") == {
        "prev": f"{location}?page=3&rejected_page=2#results",
        "next": f"{location}?page=5&rejected_page=2#results",
    }


def test_a_batch_whose_rows_were_not_stored_links_no_patient(client):
    location = uploaded(client, batch_file(6)[0], query="?store=false")
    rows = table(client.get(location).text, "batch-rows")
    assert len(rows) == 6 and all(row["links"] == [] for row in rows)


def test_a_file_without_a_patient_id_is_said_loudly_on_its_page_and_in_the_list(client):
    location = uploaded(client, ID_ONLY_BYTES, name="by-sample.csv")
    page = client.get(location).text
    warning = re.search(r'<p id="patient-id-warning" class="[^"]*" role="alert">(.*?)</p>', page, re.S)
    assert warning
    said = text(warning.group(1))
    assert "the column `id` was read as a sample id" in said
    assert "these rows have no patient id and will not appear in the worklist; map a patient column" in said
    assert re.search(r'<dd data-field="stored">0</dd>', page)
    listed = client.get("/dashboard/batches").text
    row = listed.split("by-sample.csv</a>", 1)[1].split("</tr>", 1)[0]
    assert "will not appear in the worklist" in text(row)


def test_a_utf16_upload_is_refused_on_the_page_saying_save_it_as_csv_utf8(client):
    response = upload(client, UTF16_BYTES, name="unicode.txt")
    assert response.status_code == 422 and response.mimetype == "text/html"
    said = text(response.text)
    assert "The file was not read:" in said and "UTF-16" in said and "save it as CSV UTF-8" in said
    assert 'role="alert"' in response.text


def test_the_windows_1252_encoding_is_named_on_the_page(client):
    from tests.batch.encoded_files import WINDOWS_1252_BYTES

    page = client.get(uploaded(client, WINDOWS_1252_BYTES)).text
    assert '<span data-field="encoding">Windows-1252</span>' in page
    assert "it was read as Windows-1252" in text(page)
    assert "PLT (x10³/µL)" in page


# --- jobs not done: their page and the list ----------------------------------------------------------


@pytest.fixture
def queued_client(make_app, tmp_path: Path) -> FlaskClient:
    """Uploads wait in a SQLite queue file for a worker that is not started: their jobs stay queued."""
    app = make_app(
        SECRET_KEY="test-secret",
        JOB_QUEUE=f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        JOB_QUEUE_NAME=f"test-{uuid.uuid4().hex[:8]}",
        INSTANCE_PATH=str(tmp_path / "instance"),
    )
    return app.test_client()


def test_a_queued_batch_has_the_same_page_showing_its_progress(queued_client):
    location = uploaded(queued_client, ID_ONLY_BYTES, name="waiting.csv")
    page = queued_client.get(location).text
    assert '<h1 id="batch-name">waiting.csv</h1>' in page
    assert '<section id="job" aria-labelledby="job-heading" data-status="queued">' in page
    assert '<progress id="job-progress" max="1" value="0.0">' in page
    assert '<meta http-equiv="refresh" content="2">' in page
    assert 'id="batch-rows"' not in page  # no rows before the job is done
    # The header's problem is said while it waits, before any summary.
    assert "the column `id` was read as a sample id" in text(page)


def test_the_list_of_uploads_shows_jobs_not_done_with_their_progress(queued_client):
    location = uploaded(queued_client, batch_file(5)[0], name="still-waiting.csv")
    batch_id = location.rsplit("/", 1)[1]
    listed = queued_client.get("/dashboard/batches").text
    row = re.search(rf'<tr data-status="queued" data-batch-id="{batch_id}">(.*?)</tr>', listed, re.S)
    assert row, listed
    assert f'<a href="{location}">still-waiting.csv</a>' in row.group(1)
    assert f'<progress id="progress-{batch_id}" max="1" value="0.0">' in row.group(1)
    assert "1 upload is still being interpreted" in text(listed)
    assert '<form id="refresh-form" class="refresh-recent" method="get" action="/dashboard/batches#recent">' in listed


def test_a_failed_job_is_listed_with_its_error(queued_client):
    """A job that failed (as a worker ends it: labservice.store.batch_jobs) is in the list with its problem."""
    from labservice.extensions import current_database
    from labservice.store import batch_jobs as jobs
    from labservice.store.repository import now_utc

    location = uploaded(queued_client, batch_file(3)[0], name="over-quota.csv")
    batch_id = location.rsplit("/", 1)[1]
    app = queued_client.application
    with app.app_context(), current_database().session() as session:
        assert jobs.claim_job(session, batch_id, "test-worker", None, now_utc())
    with app.app_context(), current_database().session() as session:
        error = {"status": 507, "title": "Batch Storage Quota Exceeded", "detail": "The quota is used up."}
        assert jobs.end_job(session, batch_id, "test-worker", jobs.FAILED, now_utc(), [error])
    listed = queued_client.get("/dashboard/batches").text
    row = re.search(rf'<tr data-status="failed" data-batch-id="{batch_id}">(.*?)</tr>', listed, re.S)
    assert row and "The quota is used up." in text(row.group(1))
    assert 'id="refresh-form"' not in listed  # nothing is being interpreted
    page = queued_client.get(location).text
    assert '<h1 id="batch-name">over-quota.csv</h1>' in page
    assert "The batch could not be made" in page and "The quota is used up." in page
    assert 'http-equiv="refresh"' not in page


def test_the_job_makes_the_index_of_the_batch_pages(client, tmp_path):
    """The first view of a large batch's page need not read all of result.json: the job made its index."""
    from labservice.batch.result_pages import INDEX_NAME

    location = uploaded(client, batch_file(7)[0])
    folder = Path(client.application.config["BATCH_DIRECTORY"]) / location.rsplit("/", 1)[1]
    assert (folder / INDEX_NAME).is_file()
