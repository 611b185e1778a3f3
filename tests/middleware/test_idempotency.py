"""Idempotency-Key (issue 6 §4, draft-ietf-httpapi-idempotency-key-header), on SQLite and PostgreSQL.

A retry with the same key and the same request gets the first answer (status, content type, body, the
view's headers such as Location) with `Idempotent-Replayed: true`, and the stored row counts do not
change; the same key with another request is 422; a malformed key is 400; 5xx answers are not kept;
records expire after IDEMPOTENCY_TTL_HOURS; keys belong to the caller (the API key).
"""

from __future__ import annotations

import copy
import io
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from labservice.api.fhir import EXAMPLE as FHIR_EXAMPLE
from labservice.api.hl7v2 import EXAMPLE as HL7_EXAMPLE
from labservice.middleware.idempotency import IDEMPOTENT_ENDPOINTS, MalformedKey, parse_key, process_identity
from labservice.security.keys import create_key
from labservice.security.principal import SCOPES
from labservice.store.database import Database
from labservice.store.models import (
    Batch,
    CbcResult,
    IdempotencyRecord,
    Interpretation,
    Patient,
    Referral,
    ReferralEvent,
)
from labservice.store.repository import now_utc

INTERPRETATIONS = "/api/v1/interpretations"
FHIR = "/api/v1/fhir/interpret"
HL7 = "/api/v1/hl7v2/interpret"
BATCHES = "/api/v1/batches"
STORED_TABLES = (Patient, CbcResult, Interpretation, Referral, ReferralEvent, Batch)
# Platelets 15 x10^9/L is below the critical 20 (clinical-rules §3): urgent, so each CBC opens a referral (§9).
CSV = (
    b"Patient ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL),NEUT# (10^9/L)\n"
    b"P1,2026-11-01T08:00:00Z,F,40,15,13.5,3.0\n"
    b"P2,2026-11-01T09:00:00Z,M,55,15,14.5,3.0\n"
)


def counts(url: str) -> dict[str, int]:
    database = Database.connect(url)
    try:
        with database.session() as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in STORED_TABLES
            }
    finally:
        database.engine.dispose()


def records(url: str) -> list[IdempotencyRecord]:
    database = Database.connect(url)
    try:
        with database.session() as session:
            return list(session.scalars(select(IdempotencyRecord).order_by(IdempotencyRecord.id)))
    finally:
        database.engine.dispose()


def multipart(body: bytes, boundary: str, filename: str = "cbc.csv") -> bytes:
    """A multipart/form-data body with one file part, built by hand so the boundary is ours."""
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: text/csv\r\n\r\n"
        ).encode()
        + body
        + f"\r\n--{boundary}--\r\n".encode()
    )


def post_batch(
    client: FlaskClient, key: str | None, boundary: str = "first-boundary", body: bytes = CSV, query: str = ""
):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(
        BATCHES + query,
        data=multipart(body, boundary),
        headers=headers,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def same_answer(first, again) -> None:
    """The retry is the first answer again, marked as replayed."""
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.status_code == first.status_code
    assert again.content_type == first.content_type
    assert again.get_data() == first.get_data()
    for name in ("Location", "Vary", "Content-Disposition"):
        assert again.headers.get(name) == first.headers.get(name), name


@pytest.fixture
def client(make_app, database_url) -> FlaskClient:
    return make_app(DATABASE_URL=database_url).test_client()


def urgent_cbc(patient: str = "MRN-IDEM-1") -> dict[str, Any]:
    """An adult woman's CBC with platelets 15 x10^9/L (< 20, critical, §3): urgent, opens a referral."""
    return {
        "patient": {"id": patient, "sex": "female", "age_years": 40},
        "collected_at": "2026-11-20T08:30:00Z",
        "results": {"platelets": 15, "hemoglobin": 13.5, "wbc": 6.0, "neutrophils": 3.0},
    }


# ------------------------------------------------------------------------------------ the retries


def test_a_retried_interpretation_gets_the_first_answer_and_stores_nothing_twice(client, database_url):
    key = '"5f0d6f5e-6a55-4f0e-9d61-8e0f6a0c1a01"'
    first = client.post(INTERPRETATIONS, json=urgent_cbc(), headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.json
    assert first.json["stored"]["duplicate"] is False
    stored = counts(database_url)
    assert stored["cbc_results"] == 1 and stored["interpretations"] == 1 and stored["referrals"] == 1
    for _ in range(3):
        again = client.post(INTERPRETATIONS, json=urgent_cbc(), headers={"Idempotency-Key": key})
        same_answer(first, again)
        assert again.json["stored"]["duplicate"] is False  # the first answer, not a second run's
    assert counts(database_url) == stored


def test_without_a_key_a_second_post_runs_again(client, database_url):
    """The contrast: no key, the view runs twice (the result is found already stored, so still kept once)."""
    first = client.post(INTERPRETATIONS, json=urgent_cbc())
    again = client.post(INTERPRETATIONS, json=urgent_cbc())
    assert "Idempotent-Replayed" not in again.headers
    assert again.json["stored"]["duplicate"] is True and first.json["stored"]["duplicate"] is False
    assert counts(database_url)["cbc_results"] == 1
    assert records(database_url) == []


def test_a_retried_batch_upload_with_a_new_boundary_gets_the_first_answer(client, database_url):
    """Clients draw a new multipart boundary for each send: the same form is still the same request."""
    first = post_batch(client, "batch-upload-1", boundary="boundary-AAAA")
    assert first.status_code == 202, first.json
    assert first.headers["Location"] == first.json["links"]["self"]
    stored = counts(database_url)
    assert (stored["batches"], stored["cbc_results"], stored["referrals"]) == (1, 2, 2)
    again = post_batch(client, "batch-upload-1", boundary="boundary-ZZZZZZZZZZ")
    same_answer(first, again)
    assert again.json["already_uploaded"] is False  # the first answer (202), not "already uploaded" (200)
    assert counts(database_url) == stored


def test_a_retried_fhir_request_gets_the_first_answer(client, database_url):
    body = json.dumps(FHIR_EXAMPLE)
    headers = {"Idempotency-Key": "fhir-1", "Content-Type": "application/fhir+json"}
    first = client.post(FHIR, data=body, headers=headers)
    assert first.status_code == 200, first.json
    stored = counts(database_url)
    assert stored["cbc_results"] == 1
    same_answer(first, client.post(FHIR, data=body, headers=headers))
    assert counts(database_url) == stored


def test_a_retried_hl7v2_message_gets_the_first_ack(client, database_url):
    headers = {"Idempotency-Key": "hl7-1", "Content-Type": "x-application/hl7-v2+er7"}
    first = client.post(HL7 + "?ack=true", data=HL7_EXAMPLE.encode(), headers=headers)
    assert first.status_code == 200 and first.mimetype == "x-application/hl7-v2+er7"
    assert "MSA|AA|" in first.get_data(as_text=True)
    stored = counts(database_url)
    assert stored["cbc_results"] == 1
    same_answer(first, client.post(HL7 + "?ack=true", data=HL7_EXAMPLE.encode(), headers=headers))
    assert counts(database_url) == stored


def test_a_retried_referral_change_gets_the_first_answer_and_records_one_event(client, database_url):
    referral_id = client.post(INTERPRETATIONS, json=urgent_cbc()).json["stored"]["referral_id"]
    change = {"status": "acknowledged", "note": "called the ward", "actor": "dr.who"}
    url = f"/api/v1/referrals/{referral_id}"
    first = client.patch(url, json=change, headers={"Idempotency-Key": "ack-1"})
    assert first.status_code == 200 and first.json["status"] == "acknowledged"
    again = client.patch(url, json=change, headers={"Idempotency-Key": "ack-1"})
    same_answer(first, again)
    assert counts(database_url)["referral_events"] == 1
    # Without the key the same change runs again, and the workflow refuses acknowledged -> acknowledged.
    assert client.patch(url, json=change).status_code == 409


def test_an_error_answer_is_kept_and_replayed_too(client, database_url):
    invalid = urgent_cbc()
    invalid["results"]["platelets"] = {"value": 15, "unit": "furlongs"}
    first = client.post(INTERPRETATIONS, json=invalid, headers={"Idempotency-Key": "bad-1"})
    assert first.status_code == 422 and first.mimetype == "application/problem+json"
    same_answer(first, client.post(INTERPRETATIONS, json=invalid, headers={"Idempotency-Key": "bad-1"}))
    assert counts(database_url)["cbc_results"] == 0


# --------------------------------------------------------------------- the same key, another request


@pytest.mark.parametrize("change", ["body", "query", "path", "accept"])
def test_the_same_key_with_another_request_is_422_and_runs_nothing(client, database_url, change):
    key = {"Idempotency-Key": "reused-1"}
    assert client.post(INTERPRETATIONS, json=urgent_cbc("MRN-A"), headers=key).status_code == 200
    before = counts(database_url)
    if change == "body":
        answer = client.post(INTERPRETATIONS, json=urgent_cbc("MRN-B"), headers=key)
    elif change == "query":
        answer = client.post(INTERPRETATIONS + "?store=false", json=urgent_cbc("MRN-A"), headers=key)
    elif change == "path":
        answer = client.post(FHIR, data=json.dumps(FHIR_EXAMPLE), headers={**key, "Content-Type": "application/json"})
    else:
        answer = client.post(INTERPRETATIONS, json=urgent_cbc("MRN-A"), headers={**key, "Accept": "text/html"})
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert answer.mimetype == "application/problem+json"
    assert answer.json["title"] == "Idempotency-Key is already used"
    assert "Idempotency-Key" in answer.json["errors"]
    assert counts(database_url) == before


def test_another_file_under_the_same_key_is_422(client, database_url):
    assert post_batch(client, "batch-2").status_code == 202
    before = counts(database_url)
    other = CSV.replace(b"P2,", b"P3,")
    answer = post_batch(client, "batch-2", boundary="other-boundary", body=other)
    assert answer.status_code == 422 and "Idempotency-Key" in answer.json["errors"]
    assert counts(database_url) == before


def test_keys_belong_to_the_caller(make_app, database_url):
    """Another API key using the same key string does not get (or see) the first caller's answer."""
    app = make_app(DATABASE_URL=database_url)
    client = app.test_client()
    with app.extensions["labservice.database"].session() as db:
        other_key = create_key(db, "another-caller", SCOPES).token
    first = client.post(INTERPRETATIONS, json=urgent_cbc(), headers={"Idempotency-Key": "shared"})
    other = app.test_client().post(
        INTERPRETATIONS,
        json=urgent_cbc(),
        headers={"Idempotency-Key": "shared", "Authorization": f"Bearer {other_key}"},
    )
    assert other.status_code == 200 and "Idempotent-Replayed" not in other.headers
    assert other.json["stored"]["duplicate"] is True and first.json["stored"]["duplicate"] is False
    owners = sorted(record.owner for record in records(database_url))
    assert len(owners) == 2 and owners[0] == "api_key:another-caller"
    assert counts(database_url)["cbc_results"] == 1


# ------------------------------------------------------------------------------------- the key itself


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ('"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ("8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ('"with space"', "with space"),
        ('"esc\\"aped\\\\"', 'esc"aped\\'),
        ("  padded  ", "padded"),
        ('"' + "k" * 255 + '"', "k" * 255),
    ],
)
def test_well_formed_keys(header, key):
    assert parse_key([header]) == key


@pytest.mark.parametrize(
    "header",
    [
        "",
        '""',
        "two words",
        "a,b",
        '"a", "b"',
        '"unterminated',
        '"bad \\escape"',
        '"trailing" x',
        'mid"quote',
        "k" * 256,
        '"' + "k" * 256 + '"',
        "caf\u00e9",
        '"tab\there"',
    ],
)
def test_malformed_keys(header):
    with pytest.raises(MalformedKey):
        parse_key([header])


def test_a_malformed_key_is_400_and_nothing_runs(client, database_url):
    answer = client.post(INTERPRETATIONS, json=urgent_cbc(), headers={"Idempotency-Key": "two words"})
    assert answer.status_code == 400 and answer.mimetype == "application/problem+json"
    assert "Idempotency-Key" in answer.json["errors"]
    assert counts(database_url)["cbc_results"] == 0


def test_two_key_headers_are_400(client, database_url):
    answer = client.post(
        INTERPRETATIONS, json=urgent_cbc(), headers=[("Idempotency-Key", "one"), ("Idempotency-Key", "two")]
    )
    assert answer.status_code == 400 and "one" in answer.json["detail"]
    assert counts(database_url)["cbc_results"] == 0


def test_a_keyed_body_over_the_limit_is_413(make_app, database_url):
    client = make_app(DATABASE_URL=database_url, MAX_CONTENT_LENGTH=1000).test_client()
    answer = client.post(
        INTERPRETATIONS,
        data=b"[" + b" " * 2000 + b"]",
        headers={"Idempotency-Key": "big", "Content-Type": "application/json"},
    )
    assert answer.status_code == 413 and answer.mimetype == "application/problem+json"
    assert records(database_url) == []


# ---------------------------------------------------------------------------- failures and expiry


def test_a_5xx_answer_is_not_kept_so_the_retry_runs(make_app, database_url, tmp_path: Path):
    """The batch directory cannot be created (a file is in the way): 500, and the key is released. Once the
    directory can be made, the retry with the same key runs and succeeds."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    app = make_app(DATABASE_URL=database_url, BATCH_DIRECTORY=str(blocker / "batches"), PROPAGATE_EXCEPTIONS=False)
    client = app.test_client()
    failed = post_batch(client, "retry-after-500")
    assert failed.status_code == 500
    assert records(database_url) == [] and counts(database_url)["batches"] == 0
    blocker.unlink()
    blocker.mkdir()
    again = post_batch(client, "retry-after-500", boundary="second-try")
    assert again.status_code == 202 and "Idempotent-Replayed" not in again.headers
    assert counts(database_url)["batches"] == 1
    assert [record.status for record in records(database_url)] == [202]


def test_an_expired_key_runs_again_and_old_records_are_deleted(make_app, database_url):
    app = make_app(DATABASE_URL=database_url, IDEMPOTENCY_TTL_HOURS=24)
    client = app.test_client()
    first = client.post(INTERPRETATIONS, json=urgent_cbc(), headers={"Idempotency-Key": "old"})
    assert (
        client.post(INTERPRETATIONS, json=urgent_cbc("MRN-2"), headers={"Idempotency-Key": "other-old"}).status_code
        == 200
    )
    database = app.extensions["labservice.database"]
    with database.session() as session:  # both made 25 hours ago
        session.execute(update(IdempotencyRecord).values(created_at=now_utc() - timedelta(hours=25)))
    fresh_app = make_app(DATABASE_URL=database_url, IDEMPOTENCY_TTL_HOURS=24)  # a new process: purges at once
    again = fresh_app.test_client().post(INTERPRETATIONS, json=urgent_cbc(), headers={"Idempotency-Key": "old"})
    assert again.status_code == 200 and "Idempotent-Replayed" not in again.headers
    assert again.json["stored"]["duplicate"] is True and first.json["stored"]["duplicate"] is False
    assert [record.key for record in records(database_url)] == ["old"]  # "other-old" was purged
    assert counts(database_url)["cbc_results"] == 2


def test_a_running_request_makes_a_retry_409_until_its_lease_ends(make_app, database_url):
    """A claim whose answer is not kept yet (its request still runs, or its worker died) answers 409 with
    Retry-After; after IDEMPOTENCY_LEASE_SECONDS the retry takes it over and runs."""
    app = make_app(DATABASE_URL=database_url, IDEMPOTENCY_LEASE_SECONDS=60)
    client = app.test_client()
    first = client.post(INTERPRETATIONS, json=urgent_cbc(), headers={"Idempotency-Key": "in-flight"})
    database = app.extensions["labservice.database"]
    with database.session() as session:  # as a request still running (or killed) leaves it
        session.execute(update(IdempotencyRecord).values(status=None, body=None, created_at=now_utc()))
    busy = client.post(INTERPRETATIONS, json=urgent_cbc(), headers={"Idempotency-Key": "in-flight"})
    assert busy.status_code == 409 and busy.mimetype == "application/problem+json"
    assert 1 <= int(busy.headers["Retry-After"]) <= 60
    assert busy.json["title"] == "A request is outstanding for this Idempotency-Key"
    with database.session() as session:  # the lease has run out
        session.execute(update(IdempotencyRecord).values(created_at=now_utc() - timedelta(seconds=61)))
    taken = client.post(INTERPRETATIONS, json=urgent_cbc(), headers={"Idempotency-Key": "in-flight"})
    assert taken.status_code == 200 and "Idempotent-Replayed" not in taken.headers
    assert taken.json["stored"]["duplicate"] is True and first.json["stored"]["duplicate"] is False
    assert counts(database_url)["cbc_results"] == 1
    [record] = records(database_url)
    assert record.status == 200


def _identity_of_a_process_that_has_ended() -> str:
    """The claim a request would leave in a worker that then died: a real child process's identity."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its identity, then end
        try:
            os.write(writer, (process_identity() or "").encode())
        finally:
            os._exit(0)
    os.close(writer)
    identity = os.read(reader, 1000).decode()
    os.close(reader)
    os.waitpid(pid, 0)
    assert identity.count("|") == 4, identity
    return identity


@pytest.mark.parametrize(("claimant", "taken_at_once"), [("dead", True), ("alive", False), ("elsewhere", False)])
def test_a_claim_whose_process_died_on_this_machine_is_taken_over_at_once(
    make_app, database_url, claimant, taken_at_once
):
    """The worker running the first request was killed: on the same machine the retry need not wait for the
    lease. A live process's claim, or one from another machine, still answers 409 until the lease ends."""
    app = make_app(DATABASE_URL=database_url, IDEMPOTENCY_LEASE_SECONDS=600)
    client = app.test_client()
    first = client.post(INTERPRETATIONS, json=urgent_cbc(), headers={"Idempotency-Key": "claimed"})
    claimed_by = {
        "dead": _identity_of_a_process_that_has_ended(),
        "alive": process_identity(),
        "elsewhere": "another-host|boot|pid:[1]|1|1",
    }[claimant]
    with app.extensions["labservice.database"].session() as session:
        session.execute(
            update(IdempotencyRecord).values(status=None, body=None, created_at=now_utc(), claimed_by=claimed_by)
        )
    retry = client.post(INTERPRETATIONS, json=urgent_cbc(), headers={"Idempotency-Key": "claimed"})
    if taken_at_once:
        assert retry.status_code == 200 and "Idempotent-Replayed" not in retry.headers
        assert retry.json["stored"]["duplicate"] is True and first.json["stored"]["duplicate"] is False
        [record] = records(database_url)
        assert record.status == 200 and record.claimed_by == process_identity()
    else:
        assert retry.status_code == 409 and int(retry.headers["Retry-After"]) > 500
    assert counts(database_url)["cbc_results"] == 1


# ------------------------------------------------------------------------------------- the document


def test_the_openapi_document_describes_the_header(client):
    spec = client.get("/api/v1/openapi.json").json
    parameter = spec["components"]["parameters"]["IdempotencyKey"]
    assert parameter["name"] == "Idempotency-Key" and parameter["in"] == "header"
    documented = {
        (path, method)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict)
        and {"$ref": "#/components/parameters/IdempotencyKey"} in operation.get("parameters", [])
    }
    assert documented == {
        (INTERPRETATIONS, "post"),
        (FHIR, "post"),
        (HL7, "post"),
        (BATCHES, "post"),
        ("/api/v1/referrals/{referral_id}", "patch"),
        ("/api/v1/fhir/$interpret", "post"),
    }  # the FHIR spelling of FHIR's endpoint (issue 14)
    assert len(IDEMPOTENT_ENDPOINTS) == len(documented) - 1
    batch = spec["paths"][BATCHES]["post"]["responses"]
    assert "Idempotent-Replayed" in batch["202"]["headers"]
    assert {"400", "409", "422"} <= set(batch)


def test_replayed_bodies_are_bytes_as_sent(client, database_url):
    """The kept body is the exact bytes of the first answer (a JSON answer is not re-serialised)."""
    key = {"Idempotency-Key": "bytes-1"}
    first = client.post(INTERPRETATIONS, json=[urgent_cbc("MRN-X"), urgent_cbc("MRN-Y")], headers=key)
    [record] = records(database_url)
    assert record.body == first.get_data() and record.content_type == first.content_type
    assert (
        client.post(INTERPRETATIONS, json=[urgent_cbc("MRN-X"), urgent_cbc("MRN-Y")], headers=key).get_data()
        == first.get_data()
    )


def test_a_copy_of_a_dict_is_not_the_same_request_when_its_order_differs(client):
    """The body is compared byte for byte: the same JSON object with its keys in another order is another
    request (clients resend the bytes they sent)."""
    doc = urgent_cbc()
    reordered = dict(reversed(list(copy.deepcopy(doc).items())))
    key = {"Idempotency-Key": "order-1", "Content-Type": "application/json"}
    assert client.post(INTERPRETATIONS, data=json.dumps(doc), headers=key).status_code == 200
    assert client.post(INTERPRETATIONS, data=json.dumps(reordered), headers=key).status_code == 422


def test_multipart_upload_as_the_test_client_builds_it(client, database_url):
    """werkzeug's own multipart encoding (as a browser form would send it) replays too."""
    data = lambda: {"file": (io.BytesIO(CSV), "cbc.csv")}  # noqa: E731
    first = client.post(BATCHES, data=data(), headers={"Idempotency-Key": "form-1"}, content_type="multipart/form-data")
    again = client.post(BATCHES, data=data(), headers={"Idempotency-Key": "form-1"}, content_type="multipart/form-data")
    same_answer(first, again)
    assert counts(database_url)["batches"] == 1
