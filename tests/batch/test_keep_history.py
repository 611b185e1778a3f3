"""A storing CSV batch applies the patient-history rules as the JSON API does, on SQLite and PostgreSQL.

Expected values from clinical-rules.md v2:
- §12 v2 HIT pattern: heparin started 2026-11-01 10:00 (the `Heparin started` column, a time without an offset is
  UTC as a collection time is); platelets 250 on day 0 and 100 on 7 November (day 6): fall 60 % > 50 with nadir
  100 >= 20 -> 2 points, onset on day 6 (days 5-10) -> 2 points: `heparin_induced_thrombocytopenia_possible`,
  urgency `immediate`;
- §12 v2 MCV delta: MCV 90 then 94 fL 24 hours later (a change of 4.0 > 3.0 fL within 72 hours):
  `possible_sample_misidentification`, urgency `soon`;
- §3 v2: platelets 15 then 12 (< 20, LL) a day apart, within the 7-day delta window: the second is a known critical
  value, `urgent`, `evidence.known: true`.
"""

from __future__ import annotations

import io

from sqlalchemy import select

from labservice.store.database import Database
from labservice.store.models import CbcResult, Interpretation, Patient

CSV = (
    b"Patient ID,Collected,Sex,Age,PLT (10^9/L),HGB (g/dL),NEUT# (10^9/L),MCV (fL),Heparin started,Recent heparin\n"
    b"H1,2026-11-01T08:00:00Z,F,40,250,13.5,3.0,90,2026-11-01T10:00:00,no\n"
    b"H1,2026-11-07T08:00:00Z,F,40,100,13.5,3.0,90,2026-11-01T10:00:00,no\n"
    b"M1,2026-11-01T08:00:00Z,F,40,250,13.5,3.0,90,,\n"
    b"M1,2026-11-02T08:00:00Z,F,40,250,13.5,3.0,94,,\n"
    b"K1,2026-11-01T08:00:00Z,F,40,15,13.5,3.0,90,,\n"
    b"K1,2026-11-02T08:00:00Z,F,40,12,13.5,3.0,90,,\n"
)


def upload(client, data: bytes):
    return client.post(
        "/api/v1/batches", data={"file": (io.BytesIO(data), "cbc.csv")}, content_type="multipart/form-data"
    )


def latest(url: str, patient: str) -> Interpretation:
    database = Database.connect(url)
    with database.session() as session:
        row = session.scalars(
            select(Interpretation)
            .join(CbcResult)
            .join(Patient)
            .where(Patient.external_id == patient)
            .order_by(CbcResult.collected_at.desc())
        ).first()
        assert row is not None
        session.expunge(row)
    database.engine.dispose()
    return row


def test_a_storing_batch_applies_the_history_rules(make_app, database_url):
    client = make_app(DATABASE_URL=database_url).test_client()
    response = upload(client, CSV)
    assert response.status_code == 202, response.json  # issue 12: an upload is a job (run in the request here)
    assert response.json["summary"]["stored"] == 6

    hit = latest(database_url, "H1")
    assert "heparin_induced_thrombocytopenia_possible" in hit.findings
    assert hit.urgency == "immediate"
    block = hit.answer["hit_4ts"]
    assert block["heparin_started_at"] == "2026-11-01T10:00:00+00:00"
    assert block["heparin_in_previous_30_days"] is False
    assert (block["items"]["fall"]["points"], block["items"]["timing"]["points"]) == (2, 2)

    mcv = latest(database_url, "M1")
    assert "possible_sample_misidentification" in mcv.findings and mcv.urgency == "soon"

    known = latest(database_url, "K1")
    assert known.urgency == "urgent"
    assert "known_critical_value" in known.answer["urgency_reasons"]
    critical = next(f for f in known.answer["findings"] if f["code"] == "critical_value")
    assert critical["evidence"]["known"] is True


def test_a_bad_heparin_start_is_a_row_error(make_app, sqlite_url):
    client = make_app(DATABASE_URL=sqlite_url).test_client()
    data = b"Patient ID,Collected,PLT,Heparin started\nH2,2026-11-01T08:00:00Z,250,yesterday\n"
    response = upload(client, data)
    assert response.status_code == 202, response.json  # issue 12: an upload is a job (run in the request here)
    assert response.json["summary"]["rejected"] == 1
    assert "Heparin started" in response.json["summary"]["first_errors"][0]
