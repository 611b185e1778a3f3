"""Generated CSV files and HL7 v2 messages (tests/security/strategies.py) through the HTTP endpoints: never a
5xx, every error a problem+json, and what is answered adds up (issue 6, fuzzing).

- POST /api/v1/batches: a 202 (or 200 for a file already uploaded) whose result.csv has one row per output
  row of the summary, or a 4xx problem naming `file`; with files the reader can read, every data record
  of the file is an output row.
- POST /api/v1/hl7v2/interpret: 200 with interpretations, or 400/413/415/422 problem+json; with ?ack=true
  the ACK says AA exactly when the JSON answer would be 200.

The apps store what they read (patient ids included) in a fresh SQLite database per test, like the service.
"""

from __future__ import annotations

import csv
import io

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from tests.hypothesis_profiles import examples
from tests.security.strategies import (
    CsvFile,
    csv_files,
    garbled_csv_bytes,
    garbled_hl7_bytes,
    hl7_messages,
    msa_code,
)

pytestmark = pytest.mark.slow  # fuzzing: generated files and messages through the app

ER7 = "x-application/hl7-v2+er7"
PROBLEM = "application/problem+json"
FUZZ = settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
READABLE = dict(encodings=("utf-8", "utf-8-sig", "cp1252"), delimiters=(",", ";", "\t", "|"))


@pytest.fixture
def client(make_app) -> FlaskClient:
    """The test client of an app without rate limits: the fuzzer sends hundreds of uploads a minute."""
    return make_app(RATE_LIMIT="off", RATE_LIMIT_UPLOADS="off").test_client()


def assert_problem(response, statuses: tuple[int, ...]) -> dict:
    assert response.status_code in statuses, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == response.status_code and body["detail"]
    return body


def upload(client: FlaskClient, data: bytes, store: bool):
    return client.post(
        f"/api/v1/batches?store={'true' if store else 'false'}",
        data={"file": (io.BytesIO(data), "generated.csv")},
        content_type="multipart/form-data",
    )


def check_batch(client: FlaskClient, data: bytes, store: bool) -> dict | None:
    """The upload's summary (and result.csv checked against it), or None when the file was refused with a 422."""
    note(f"file: {data!r}")
    response = upload(client, data, store)
    if response.status_code >= 400:
        body = assert_problem(response, (413, 422))
        assert "file" in body["errors"], body
        event("refused")
        return None
    assert response.status_code in (200, 202), response.get_data(as_text=True)[:500]
    event("interpreted")
    batch = response.get_json()
    summary = batch["summary"]
    assert summary["interpreted"] + summary["rejected"] == summary["rows_out"]
    result = client.get(batch["links"]["csv"])
    assert result.status_code == 200
    text = result.get_data(as_text=True).removeprefix("\ufeff")  # written in the input's dialect, a BOM kept
    rows = list(csv.DictReader(io.StringIO(text), delimiter=summary["delimiter"]))
    assert len(rows) == summary["rows_out"]
    assert all(bool(row["urgency"]) != bool(row["error"]) for row in rows)
    assert len(client.get(batch["links"]["json"]).get_json()) == summary["rows_out"]
    return summary


@FUZZ
@given(csv_files(**READABLE), st.booleans())
def test_a_readable_generated_file_comes_back_row_for_row(client: FlaskClient, generated: CsvFile, store: bool):
    summary = check_batch(client, generated.data, store)
    if summary is not None:
        assert summary["rows_in"] == generated.records
        assert summary["blank_lines"] == generated.blank


@FUZZ
@given(st.one_of(csv_files(), garbled_csv_bytes()), st.booleans())
def test_any_uploaded_file_is_answered_never_a_5xx(client: FlaskClient, data, store: bool):
    check_batch(client, data.data if isinstance(data, CsvFile) else data, store)


def post_hl7(client: FlaskClient, body: bytes, query: str = "?store=true"):
    return client.post(f"/api/v1/hl7v2/interpret{query}", data=body, content_type=ER7)


@FUZZ
@given(st.one_of(hl7_messages(), hl7_messages(garbage=False), garbled_hl7_bytes()))
def test_any_hl7_message_is_answered_never_a_5xx_and_the_ack_agrees(client: FlaskClient, body):
    data = body if isinstance(body, bytes) else body.data
    note(f"message: {data!r}")
    response = post_hl7(client, data, "?store=false")
    if response.status_code == 200:
        event("answered")
        answer = response.get_json()
        assert answer["interpretations"]
    else:
        event(f"refused {response.status_code}")
        assert_problem(response, (400, 413, 415, 422))
    ack = post_hl7(client, data, "?store=false&ack=true")
    assert ack.status_code in (200, 400, 413), ack.status_code
    code = msa_code(ack.get_data(as_text=True))
    assert (code == "AA") == (response.status_code == 200), (code, response.status_code)


@FUZZ
@given(hl7_messages(garbage=False))
def test_an_hl7_message_a_laboratory_could_send_is_stored_or_refused(client: FlaskClient, message):
    response = post_hl7(client, message.data)
    if response.status_code != 200:
        assert_problem(response, (422,))
        return
    for interpretation in response.get_json()["interpretations"]:
        assert interpretation["patient_id"] == "MRN-0042"
        assert "stored" in interpretation
