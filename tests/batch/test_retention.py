"""Batch results expire and each key has a storage quota (issue 10 item 10), on SQLite and PostgreSQL.

Results (result.csv and result.json, about 12 times the upload) are deleted BATCH_RETENTION_DAYS after the upload:
by `labservice purge`, and by the service itself at most once per BATCH_PURGE_INTERVAL_SECONDS. A download after
that answers 410 Gone; the CBCs and referrals the batch stored stay. An API key (or dashboard user) keeps at most
BATCH_QUOTA_BYTES of results: over it an upload answers 507 (413 when its results alone are larger), before any
work where possible, and keeps nothing.

Time is moved by ageing a batch (its row and its record say it was made 31 days ago), never by sleeping.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from labservice.batch import retention
from labservice.batch.results_store import is_batch_id
from labservice.batch.retention import cutoff, purge_batches
from labservice.cli import main as cli_main
from labservice.extensions import current_database, current_store
from labservice.store.batch_records import bytes_kept
from labservice.store.models import Batch, CbcResult, Referral
from labservice.store.repository import now_utc
from tests.api.helpers import assert_problem
from tests.credentials import csrf_token
from tests.security.audit_support import bearer_client, database, new_key

# Platelets 15 is below the critical 20 (clinical-rules §3): P2 opens a referral; P1's fall from 200 to 80 in two
# days is over the 50 % platelet_drop threshold (thresholds.csv), so P1 has one too (as tests/batch/test_keep.py).
CSV = (
    b"Patient ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL),NEUT# (10^9/L)\n"
    b"P1,2026-11-01T08:00:00Z,F,40,200,13.5,3.0\n"
    b"P1,2026-11-03T08:00:00Z,F,40,80,13.5,3.0\n"
    b"P2,2026-11-03T09:00:00Z,M,55,15,14.5,3.0\n"
)


def another(n: int) -> bytes:
    """A different file (another hash) without a patient id."""
    return f"Sample,PLT (10^9/L)\nS{n},250\n".encode()


@pytest.fixture
def app(make_app, database_url, tmp_path):
    return make_app(DATABASE_URL=database_url, BATCH_DIRECTORY=str(tmp_path / "batches"))


@pytest.fixture(autouse=True)
def fresh_purge_clock():
    """Each test's app is a new process as far as the periodic purge knows."""
    retention._last_purge.clear()
    yield
    retention._last_purge.clear()


def upload(client, data: bytes, query: str = ""):
    return client.post(
        f"/api/v1/batches{query}", data={"file": (io.BytesIO(data), "cbc.csv")}, content_type="multipart/form-data"
    )


def made(client, data: bytes, query: str = "") -> str:
    response = upload(client, data, query)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["batch_id"]


def age(app, batch_id: str, days: int = 31) -> None:
    """Make the batch `days` old: its database row and the record kept with its results."""
    when = now_utc() - timedelta(days=days)
    with database(app).session() as session:
        session.execute(update(Batch).where(Batch.id == batch_id).values(created_at=when))
    record = Path(app.config["BATCH_DIRECTORY"]) / batch_id / "summary.json"
    document = json.loads(record.read_text())
    document["created_at"] = when.isoformat()
    record.write_text(json.dumps(document))


def folder(app, batch_id: str) -> Path:
    return Path(app.config["BATCH_DIRECTORY"]) / batch_id


def row(app, batch_id: str) -> Batch | None:
    with database(app).session() as session:
        found = session.get(Batch, batch_id)
        if found is not None:
            session.expunge(found)
        return found


def count(app, model) -> int:
    with database(app).session() as session:
        return session.scalar(select(func.count()).select_from(model))


def purge(app, **kwargs):
    with app.app_context():
        return purge_batches(current_store(), database(app), before=cutoff(30), **kwargs)


# --- retention ---------------------------------------------------------------------------------


def test_purge_deletes_expired_results_and_keeps_the_stored_cbcs_and_referrals(app, client):
    old, new = made(client, CSV), made(client, another(1))
    age(app, old)
    purged = purge(app)
    assert [p.batch_id for p in purged] == [old] and purged[0].result_bytes > 0
    assert not folder(app, old).exists() and folder(app, new).exists()
    assert row(app, old).purged_at is not None and row(app, new).purged_at is None
    for suffix in ("", "/result.csv", "/result.json"):
        body = assert_problem(client.get(f"/api/v1/batches/{old}{suffix}"), 410)
        assert "30 days" in body["detail"] and "stay" in body["detail"]
    assert client.get(f"/api/v1/batches/{new}/result.csv").status_code == 200
    assert (count(app, CbcResult), count(app, Referral)) == (3, 2)  # the patients' record stays
    worklist = client.get("/api/v1/referrals").get_json()["items"]
    assert sorted(item["patient_id"] for item in worklist) == ["P1", "P2"]
    assert client.get("/api/v1/patients/P2/results").status_code == 200
    assert client.get(f"/dashboard/batches/{old}").status_code == 410
    assert client.get(f"/dashboard/batches/{old}/result.csv").status_code == 410


def test_a_download_after_expiry_answers_410_before_any_purge_ran(app, client):
    batch = made(client, CSV)
    retention._last_purge[(id(database(app)), app.config["BATCH_DIRECTORY"])] = float("inf")  # no periodic purge
    age(app, batch)
    assert_problem(client.get(f"/api/v1/batches/{batch}/result.json"), 410)
    assert not folder(app, batch).exists() and row(app, batch).purged_at is not None


def test_the_service_purges_by_itself_at_most_once_per_interval(app, client, monkeypatch):
    first = made(client, CSV)  # the process's first upload runs a purge (nothing has expired yet)
    age(app, first)
    made(client, another(1))  # within BATCH_PURGE_INTERVAL_SECONDS (3600) of it: no purge
    assert folder(app, first).exists()
    later = retention.time.monotonic() + app.config["BATCH_PURGE_INTERVAL_SECONDS"] + 1
    monkeypatch.setattr(retention.time, "monotonic", lambda: later)
    made(client, another(2))  # an interval later: the service purges by itself
    assert not folder(app, first).exists() and row(app, first).purged_at is not None


def test_an_upload_of_a_purged_batch_makes_its_results_again(app, client):
    batch = made(client, CSV)
    age(app, batch)
    purge(app)
    again = upload(client, CSV)
    assert again.status_code == 202 and again.get_json()["batch_id"] == batch
    assert again.get_json()["already_uploaded"] is False
    assert again.get_json()["summary"]["stored"] == 0  # its CBCs were kept all along
    assert client.get(f"/api/v1/batches/{batch}/result.csv").status_code == 200
    assert row(app, batch).purged_at is None and count(app, CbcResult) == 3


def test_unstored_results_and_directories_without_a_row_expire_too(app, client):
    unstored = made(client, CSV, "?store=false")
    legacy = made(client, another(1), "?store=false")
    with database(app).session() as session:  # as a ?store=false upload kept it before batches had a row each
        session.execute(Batch.__table__.delete().where(Batch.id == legacy))
    recent = made(client, another(2), "?store=false")
    with database(app).session() as session:
        session.execute(Batch.__table__.delete().where(Batch.id == recent))
    age(app, unstored)
    age(app, legacy)
    assert sorted(p.batch_id for p in purge(app, dry_run=True)) == sorted([unstored, legacy])
    assert folder(app, unstored).exists() and folder(app, legacy).exists()  # a dry run deletes nothing
    assert sorted(p.batch_id for p in purge(app)) == sorted([unstored, legacy])
    assert not folder(app, unstored).exists() and not folder(app, legacy).exists()
    assert folder(app, recent).exists()  # not expired
    assert_problem(client.get(f"/api/v1/batches/{unstored}"), 410)


def test_labservice_purge_lists_with_dry_run_then_deletes(app, client, database_url, monkeypatch, capsys):
    old, new = made(client, CSV), made(client, another(1))
    age(app, old)
    monkeypatch.setenv("LABSERVICE_BATCH_DIRECTORY", app.config["BATCH_DIRECTORY"])
    assert cli_main(["purge", "--dry-run", "--url", database_url]) == 0
    out, err = capsys.readouterr()
    assert old in out and new not in out and "would be deleted" in err
    assert folder(app, old).exists() and row(app, old).purged_at is None
    assert cli_main(["purge", "--url", database_url]) == 0
    out, err = capsys.readouterr()
    assert old in out and "1 batch results older than 30 days deleted" in err
    assert not folder(app, old).exists() and folder(app, new).exists()
    assert row(app, old).purged_at is not None


# --- quota -------------------------------------------------------------------------------------


def test_an_upload_that_would_go_over_the_quota_answers_507_and_keeps_no_results(app, client):
    """A batch job stores its CBCs chunk by chunk (docs/batches.md, "Jobs"): a job whose results would take the
    owner over the quota keeps no result file, its row counts nothing against the quota (marked purged), and the
    CBCs it stored stay, as those of a batch whose results were purged do."""
    first = made(client, CSV)
    used = row(app, first).result_bytes
    assert used == sum(f.stat().st_size for f in folder(app, first).iterdir())
    app.config["BATCH_QUOTA_BYTES"] = used + 10  # room for 10 bytes more: not for another batch's results
    before = sorted(p.name for p in Path(app.config["BATCH_DIRECTORY"]).iterdir())
    body = assert_problem(upload(client, another(1)), 507)
    assert f"{used} bytes of its quota of {used + 10} bytes" in body["detail"]
    assert body["errors"] == {"quota": [f"{used} bytes used of {used + 10} bytes."]}
    assert sorted(p.name for p in Path(app.config["BATCH_DIRECTORY"]).iterdir()) == before
    assert count(app, Batch) == 2 and count(app, CbcResult) == 3  # another(1) has no patient id: none stored
    with app.app_context(), current_database().session() as session:
        assert bytes_kept(session, row(app, first).owner) == used  # the refused batch's row counts nothing
    other = bearer_client(app, new_key(app, "interpret", "read"))  # the quota is per key
    assert upload(other, another(1)).status_code == 202


def test_an_owner_at_the_quota_is_refused_before_the_upload_is_read(app, client, monkeypatch):
    first = made(client, CSV)
    app.config["BATCH_QUOTA_BYTES"] = row(app, first).result_bytes
    from labservice.services import batch_upload as batches

    def unread(limit):
        raise AssertionError("the form was read")

    monkeypatch.setattr(batches, "_read_form", unread)
    body = assert_problem(upload(client, another(1)), 507)
    assert body["title"] == "Batch Storage Quota Exceeded" and "BATCH_QUOTA_BYTES" in body["detail"]
    monkeypatch.undo()
    age(app, first)
    purge(app)  # expired results free the quota
    assert upload(client, another(1)).status_code == 202


def test_results_larger_than_the_whole_quota_answer_413(app, client):
    app.config["BATCH_QUOTA_BYTES"] = 100
    body = assert_problem(upload(client, CSV), 413)
    assert "larger than the whole quota of 100 bytes" in body["detail"] and "file" in body["errors"]
    assert Path(app.config["BATCH_DIRECTORY"]).exists() is False or not any(
        is_batch_id(p.name) for p in Path(app.config["BATCH_DIRECTORY"]).iterdir()
    )
    assert count(app, Batch) == 1  # the job's CBCs are stored (chunk by chunk); its row is marked purged
    with app.app_context(), current_database().session() as session:
        assert session.scalars(select(Batch)).one().purged_at is not None
    assert_problem(upload(client, CSV, "?store=false"), 413)
    assert count(app, Batch) == 1  # an unstored batch's row is added with its results only


def test_a_dashboard_user_has_a_quota_too(app, client):
    app.config["BATCH_QUOTA_BYTES"] = 100
    response = client.post(
        "/dashboard/batches",
        data={"file": (io.BytesIO(CSV), "cbc.csv"), "csrf_token": csrf_token(client)},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413 and b"quota" in response.data
    with app.app_context(), current_database().session() as session:
        assert all(batch.purged_at is not None for batch in session.scalars(select(Batch)))  # no results kept
