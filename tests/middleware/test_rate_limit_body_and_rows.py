"""Size limits: the body (MAX_CONTENT_LENGTH) and the rows of a CSV upload (MAX_BATCH_ROWS): 413, nothing stored."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from labservice.batch.limits import rows_over_limit
from labservice.store.models import Batch, CbcResult, Patient
from tests.api.helpers import assert_problem
from tests.security.audit_support import cbc, csv_upload, database, wide_csv


def rows(count: int, patient: str = "MRN-ROWS") -> str:
    return wide_csv([(f"{patient}-{i}", 40 + i) for i in range(count)])


def stored_counts(app) -> tuple[int, int, int]:
    with database(app).session() as session:
        return tuple(
            int(session.scalar(select(func.count()).select_from(model)) or 0) for model in (Patient, CbcResult, Batch)
        )


# --- counting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "over"),
    [
        ("a,b\n1,2\n3,4\n", 2, False),
        ("a,b\n1,2\n3,4\n5,6\n", 2, True),
        ("a,b\n1,2\n3,4", 2, False),  # no newline at the end
        ("a,b\n1,2\n3,4\n5,6", 2, True),
        ("a,b\r\n1,2\r\n\r\n\r\n3,4\r\n", 2, False),  # blank lines do not count
        ('a,b\n1,"two\nlines"\n3,"and\nthree\nlines"\n', 2, False),  # a quoted line break is one record
        ('a,b\n1,"two\nlines"\n3,"x"\n4,"y ""quoted"" z"\n', 2, True),
        ("\n\na,b\n1,2\n", 1, False),  # blank lines before the header
        ("", 0, False),
        ("a,b\n", 0, False),
    ],
)
def test_rows_are_records_after_the_header(text, limit, over):
    assert (rows_over_limit(io.BytesIO(text.encode()), limit) is not None) is over


def test_counting_rewinds_the_stream_and_stops_early():
    stream = io.BytesIO(rows(1000).encode())
    stream.seek(17)
    assert rows_over_limit(stream, 10) == 11  # it stopped at the first row past the limit
    assert stream.tell() == 0


# --- over HTTP -------------------------------------------------------------------------------------


def test_an_upload_with_more_rows_than_allowed_is_413_and_stores_nothing(make_app, tmp_path):
    app = make_app(MAX_BATCH_ROWS=5)
    client = app.test_client()
    body = assert_problem(client.post("/api/v1/batches", data=csv_upload(rows(6))), 413)
    assert "MAX_BATCH_ROWS" in body["detail"] and list(body["errors"]) == ["file"]
    assert stored_counts(app) == (0, 0, 0)
    assert not (tmp_path / "batches").exists() or not any((tmp_path / "batches").rglob("*.csv"))
    assert client.post("/api/v1/batches", data=csv_upload(rows(5))).status_code == 202
    assert stored_counts(app) == (5, 5, 1)


def test_the_dashboard_upload_keeps_the_row_limit(make_app):
    from tests.credentials import csrf_token

    app = make_app(MAX_BATCH_ROWS=2)
    client = app.test_client()
    page = client.post("/dashboard/batches", data={**csv_upload(rows(3)), "csrf_token": csrf_token(client)})
    assert page.status_code == 413 and "MAX_BATCH_ROWS" in page.get_data(as_text=True)
    assert stored_counts(app) == (0, 0, 0)


def test_the_row_limit_is_documented_in_the_openapi_document(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "MAX_BATCH_ROWS" in spec["paths"]["/api/v1/batches"]["post"]["responses"]["413"]["description"]


def test_a_body_larger_than_max_content_length_is_413(make_app):
    app = make_app(MAX_CONTENT_LENGTH=2048)
    client = app.test_client()
    big = cbc("MRN-BIG")
    big["notes"] = "x" * 4096
    body = assert_problem(client.post("/api/v1/interpretations", json=big), 413)
    assert "2048" in body["detail"]
    assert stored_counts(app) == (0, 0, 0)
