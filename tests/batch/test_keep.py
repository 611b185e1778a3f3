"""Batch uploads keep their CBCs that carry a patient id, like the JSON API (issue 4 §2), on both databases.

Expected values from clinical-rules.md: platelets 15 ×10^9/L is below the critical 20 (§3), so the
CBC is not routine and opens a referral (§9); a fall from 200 to 80 within 7 days is a fall of 60 %,
over the 50 % of thresholds.csv platelet_drop (S23, S24).
"""

from __future__ import annotations

import csv
import hashlib
import io

from sqlalchemy import delete, func, select

from labservice.batch import BatchOptions
from labservice.batch.results_store import batch_id_for
from labservice.extensions import RULESET_EXTENSION
from labservice.store.database import Database
from labservice.store.models import Batch, CbcResult, Interpretation, Referral

CSV = (
    b"Patient ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL),NEUT# (10^9/L)\n"
    b"P1,2026-11-01T08:00:00Z,F,40,200,13.5,3.0\n"
    b"P1,2026-11-03T08:00:00Z,F,40,80,13.5,3.0\n"
    b"P2,2026-11-03T09:00:00Z,M,55,15,14.5,3.0\n"
    b"P3,2026-11-03T10:00:00Z,M,60,abc,14.5,3.0\n"
    b",2026-11-03T11:00:00Z,F,30,250,13.5,3.0\n"
)


def upload(client, data: bytes, query: str = ""):
    return client.post(
        f"/api/v1/batches{query}", data={"file": (io.BytesIO(data), "cbc.csv")}, content_type="multipart/form-data"
    )


def counts(url: str) -> dict[str, int]:
    database = Database.connect(url)
    with database.session() as session:
        out = {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (Batch, CbcResult, Interpretation, Referral)
        }
    database.engine.dispose()
    return out


def test_rows_with_a_patient_id_are_stored_with_delta_and_referrals(make_app, database_url):
    client = make_app(DATABASE_URL=database_url).test_client()
    answer = upload(client, CSV)
    assert answer.status_code == 202, answer.json
    # P1 twice and P2: stored; P3 is rejected ('abc'); the last row has no patient id.
    assert answer.json["summary"]["stored"] == 3
    assert counts(database_url) == {"batches": 1, "cbc_results": 3, "interpretations": 3, "referrals": 2}
    database = Database.connect(database_url)
    with database.session() as session:
        second = session.scalars(select(Interpretation).join(CbcResult).where(CbcResult.platelets == 80)).one()
        assert second.delta["platelet_drop"] is True and second.delta["platelet_fall_percent"] == 60.0
        assert "platelet_drop" in second.findings
        assert {f["code"] for f in second.answer["findings"]} >= {"thrombocytopenia", "platelet_drop"}
        critical = session.scalars(select(Interpretation).join(CbcResult).where(CbcResult.platelets == 15)).one()
        assert "critical_value" in critical.findings and critical.urgency != "routine"
        batch = session.scalars(select(Batch)).one()
        assert (batch.rows_out, batch.rejected, batch.stored) == (5, 1, 3)
    database.engine.dispose()


def test_the_same_upload_twice_stores_nothing_twice(make_app, database_url):
    client = make_app(DATABASE_URL=database_url).test_client()
    assert upload(client, CSV).status_code == 202
    again = upload(client, CSV)
    assert again.status_code == 200 and again.json["already_uploaded"] is True
    assert counts(database_url)["cbc_results"] == 3


def test_the_same_results_in_another_file_are_not_stored_again(make_app, database_url):
    client = make_app(DATABASE_URL=database_url).test_client()
    assert upload(client, CSV).status_code == 202
    reordered = CSV + b"\n"  # another file (a trailing blank line: another hash), the same results
    answer = upload(client, reordered)
    assert answer.status_code == 202
    assert answer.json["summary"]["stored"] == 0
    assert counts(database_url)["cbc_results"] == 3


def test_store_false_keeps_nothing(make_app, database_url):
    """No CBC, interpretation or referral; the batch's own row (who uploaded it, the size of its results, for the
    quota and the retention, issue 10) says its CBCs were not stored."""
    client = make_app(DATABASE_URL=database_url).test_client()
    answer = upload(client, CSV, "?store=false")
    assert answer.status_code == 202 and answer.json["summary"]["stored"] == 0
    assert counts(database_url) == {"batches": 1, "cbc_results": 0, "interpretations": 0, "referrals": 0}
    database = Database.connect(database_url)
    with database.session() as session:
        batch = session.scalars(select(Batch)).one()
        assert (batch.id, batch.store_requested, batch.stored) == (answer.json["batch_id"], False, 0)
    database.engine.dispose()


def test_a_store_false_upload_does_not_stop_the_storing_upload_of_the_same_file(make_app, database_url):
    """Issue 10 item 2: ?store=false made a later storing upload of the same file answer already_uploaded with
    stored 0, so its patients never reached the worklist."""
    client = make_app(DATABASE_URL=database_url).test_client()
    unstored = upload(client, CSV, "?store=false")
    assert unstored.status_code == 202
    stored = upload(client, CSV)
    assert stored.status_code == 202, stored.json
    assert stored.json["already_uploaded"] is False and stored.json["summary"]["stored"] == 3
    assert stored.json["batch_id"] != unstored.json["batch_id"]
    assert counts(database_url) == {"batches": 2, "cbc_results": 3, "interpretations": 3, "referrals": 2}
    worklist = client.get("/api/v1/referrals").json["items"]
    assert sorted(item["patient_id"] for item in worklist) == ["P1", "P2"]
    for query, batch in (("?store=false", unstored), ("", stored)):  # each is recognised as itself afterwards
        again = upload(client, CSV, query)
        assert again.status_code == 200 and again.json["already_uploaded"] is True
        assert again.json["batch_id"] == batch.json["batch_id"]
    assert counts(database_url)["cbc_results"] == 3


def test_results_an_unstored_upload_left_under_the_storing_id_do_not_stop_it(make_app, database_url, tmp_path):
    """Before the fix, a ?store=false upload kept its results under the id the storing upload has, with no
    database row. Such a directory (still on disk after the upgrade) is made again, storing."""
    app = make_app(DATABASE_URL=database_url, BATCH_DIRECTORY=str(tmp_path / "batches"))
    client = app.test_client()
    unstored = upload(client, CSV, "?store=false").json["batch_id"]
    storing_id = batch_id_for(
        hashlib.sha256(CSV).hexdigest(), BatchOptions().to_document(), app.extensions[RULESET_EXTENSION].version
    )
    (tmp_path / "batches" / unstored).rename(tmp_path / "batches" / storing_id)  # as the old code kept it
    database = Database.connect(database_url)
    with database.session() as session:
        session.execute(delete(Batch))  # the old code added no row
    database.engine.dispose()
    answer = upload(client, CSV)
    assert answer.status_code == 202 and answer.json["batch_id"] == storing_id
    assert answer.json["already_uploaded"] is False and answer.json["summary"]["stored"] == 3
    assert counts(database_url)["referrals"] == 2


def test_an_unusable_file_leaves_no_batch_row(make_app, database_url):
    client = make_app(DATABASE_URL=database_url).test_client()
    assert upload(client, b"Name,Ward\nA,B\n").status_code == 422
    assert counts(database_url)["batches"] == 0


def test_an_id_longer_than_the_patients_column_is_interpreted_not_kept(make_app, database_url):
    """Found by the hostile corpus (tests/security/test_hostile_corpus.py): a 300-character id reached
    patients.external_id (String(200)) and PostgreSQL refused it, a 500. The JSON API refuses such an id."""
    client = make_app(DATABASE_URL=database_url).test_client()
    answer = upload(client, b"Patient ID,PLT\n" + b"P" * 201 + b",15\nP1,15\n")
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert answer.json["summary"]["interpreted"] == 2 and answer.json["summary"]["stored"] == 1
    assert counts(database_url)["cbc_results"] == 1


def test_a_file_name_with_nul_or_too_long_is_kept_cleaned(make_app, database_url):
    """Found by the hostile corpus: a NUL in the multipart file name, or 5,000 characters of it, reached
    batches.filename (String(300)) and PostgreSQL refused it, a 500."""
    client = make_app(DATABASE_URL=database_url).test_client()
    another = CSV + b"P9,2026-11-04T08:00:00Z,F,30,250,13.5,3.0\n"
    for name, data in (("a\x00b.csv", CSV), ("f" * 5000 + ".csv", another)):
        answer = client.post(
            "/api/v1/batches", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data"
        )
        assert answer.status_code == 202, answer.get_data(as_text=True)
    database = Database.connect(database_url)
    with database.session() as session:
        names = sorted(session.scalars(select(Batch.filename)))
    database.engine.dispose()
    assert names == sorted(["ab.csv", "f" * 300])


def test_each_kept_cbc_goes_through_the_engine_once(monkeypatch):
    """Issue 11, item 6: the keeping step renders the chunk's engine result instead of interpreting its rows again.

    Every engine call made by the batch modules is counted by rows. Five valid rows in chunks of two are
    interpreted once each, plus once more for the one censored value (at its other end: the batch interprets a
    censored value only when both ends give the same answer). Platelets 15 ×10^9/L is below the critical 20 (§3):
    immediate (§9 v2: a new critical value); platelets >1000 are at or above the critical 1000 (§3) whatever their
    value.
    """
    import sys
    from types import SimpleNamespace

    from labservice.batch import run_batch
    from labservice.batch.keep import batch_keeper
    from labservice.core import interpret
    from labservice.core.ruleset import default_ruleset

    engine_rows: list[int] = []

    def counting(table, *args, **kwargs):
        engine_rows.append(len(next(iter(table.values()))))
        return interpret.interpret_cbc_table(table, *args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("labservice.batch") and hasattr(module, "interpret_cbc_table"):
            monkeypatch.setattr(module, "interpret_cbc_table", counting)
    kept = []

    def keep(items):
        kept.extend(items)
        return [SimpleNamespace(duplicate=False) for _ in items]

    data = (
        b"Patient ID,PLT,HGB\n"
        b"P1,200,13.5\n"
        b"P2,15,13.5\n"
        b"P3,abc,13.5\n"  # rejected: never interpreted, never kept
        b",250,13.5\n"  # no patient id: interpreted, not kept
        b"P4,>1000,13.5\n"  # censored: every value above 1000 gives the same answer
        b"P5,300,13.5\n"
    )
    csv_out = io.StringIO()
    rs = default_ruleset()
    summary = run_batch(
        io.BytesIO(data),
        csv_out=csv_out,
        options=BatchOptions(chunk_rows=2),
        ruleset=rs,
        keep_rows=batch_keeper(keep, rs),
    )
    assert (summary.interpreted, summary.rejected, summary.stored, summary.censored_interpreted) == (5, 1, 4, 1)
    assert sum(engine_rows) == 5 + 1
    assert [item.patient for item in kept] == ["P1", "P2", "P4", "P5"]
    assert [item.raw["line"] for item in kept] == [2, 3, 6, 7]
    by_line = {int(row["line"]): row for row in csv.DictReader(io.StringIO(csv_out.getvalue()))}
    for item in kept:
        assert item.urgency == by_line[item.raw["line"]]["urgency"] == item.answer["urgency"]
        assert item.answer["patient_id"] == item.patient
    critical = kept[1]
    # platelets 15 < 20: a new critical value -> immediate (v2 changes the v1 `urgent`: clinical-rules.md §3
    # lines 99-105, §9 line 243)
    assert critical.values["platelets"] == 15.0 and critical.urgency == "immediate"
    assert "critical_value" in critical.findings


def test_sex_and_age_read_from_the_file_are_stored_with_the_patient(make_app, database_url):
    """Issue 14 item 6: every CSV patient was stored with sex null ("Sex not recorded" on the dashboard)."""
    from labservice.store.models import Patient

    client = make_app(DATABASE_URL=database_url).test_client()
    assert upload(client, CSV).status_code == 202
    database = Database.connect(database_url)
    with database.session() as session:
        stored = {p.external_id: (p.sex, p.age_years) for p in session.scalars(select(Patient))}
    database.engine.dispose()
    assert stored == {"P1": ("female", 40.0), "P2": ("male", 55.0)}
    page = client.get("/dashboard/patients/P2").get_data(as_text=True)
    assert "Sex not recorded" not in page
