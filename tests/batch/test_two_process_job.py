"""A storing batch job in two processes (BATCH_JOB_PROCESSES=2: a forked worker interprets the next chunk and
renders its answers while the job's process stores the current one, labservice.batch.runner) stores what one
process stores: the same rows, answers, delta findings and referrals, and the same result files (issue 12 item 1).

The file has several chunks and the same patients in each, so a chunk's delta checks read the chunks stored before
it: a platelet count that halves from one CBC to the next of a patient is a platelet_drop (thresholds.csv
platelet_drop: a fall of 50 % or more within the 7-day window).
"""

from __future__ import annotations

import csv
import io

from labservice.extensions import current_database
from labservice.store.models import CbcResult, Interpretation, Patient, Referral

CHUNK_ROWS = 25
PATIENTS = 30
ROWS = 150  # 6 chunks, each patient 5 times (a CBC a day)


def batch_csv(tag: str) -> bytes:
    """Each patient's platelets go 240, 230, 100 (a fall of more than half: platelet_drop), 90, 80."""
    counts = (240, 230, 100, 90, 80)
    lines = ["patient_id,collected_at,sex,age,PLT,HGB (g/dL),WBC"]
    for row in range(ROWS):
        patient, day = row % PATIENTS, row // PATIENTS
        lines.append(f"{tag}-{patient:03d},2026-11-{1 + day:02d}T08:00:00Z,F,40,{counts[day]},13.5,5.0")
    return ("\n".join(lines) + "\n").encode()


def run(make_app, database_url: str, processes: int, tag: str) -> tuple[dict, list[tuple], list[tuple], str]:
    app = make_app(DATABASE_URL=database_url, BATCH_CHUNK_ROWS=CHUNK_ROWS, BATCH_JOB_PROCESSES=processes)
    client = app.test_client()
    response = client.post(
        "/api/v1/batches", data={"file": (io.BytesIO(batch_csv(tag)), "cbc.csv")}, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    done = response.get_json()
    assert done["status"] == "done", done
    result_csv = client.get(done["links"]["csv"]).get_data(as_text=True).replace(f"{tag}-", "ID-")
    with app.app_context(), current_database().session() as session:
        stored = session.execute(
            session.query(Patient.external_id, CbcResult.collected_at, CbcResult.platelets, Interpretation)
            .join(CbcResult, CbcResult.patient_id == Patient.id)
            .join(Interpretation, Interpretation.cbc_id == CbcResult.id)
            .filter(Patient.external_id.like(f"{tag}-%"))
            .order_by(CbcResult.id)
            .statement
        ).all()
        rows = []
        for external_id, collected_at, platelets, interpretation in stored:
            answer = {key: value for key, value in interpretation.answer.items() if key not in ("id", "patient_id")}
            rows.append(
                (
                    external_id.replace(f"{tag}-", "ID-"),
                    collected_at,
                    platelets,
                    interpretation.urgency,
                    interpretation.findings,
                    interpretation.reason,
                    interpretation.delta,
                    answer,
                )
            )
        referrals = sorted(
            (external_id.replace(f"{tag}-", "ID-"), referral.status, referral.urgency, referral.findings)
            for external_id, referral in session.query(Patient.external_id, Referral)
            .join(Referral, Referral.patient_id == Patient.id)
            .filter(Patient.external_id.like(f"{tag}-%"))
        )
    return done, rows, referrals, result_csv


def test_two_processes_store_what_one_stores(make_app, database_url):
    one, one_rows, one_referrals, one_csv = run(make_app, database_url, 1, "ONE")
    two, two_rows, two_referrals, two_csv = run(make_app, database_url, 2, "TWO")
    assert one["stored"] == two["stored"] == ROWS
    assert len(one_rows) == ROWS
    assert two_rows == one_rows
    assert two_referrals == one_referrals
    assert two_csv == one_csv
    # The chunks' history was read: the third CBC of each patient (day 3, a chunk after the first two) fell by
    # more than half from 230 and carries the delta finding.
    drops = [row for row in two_rows if "platelet_drop" in row[4]]
    assert len(drops) == PATIENTS and {row[2] for row in drops} == {100.0}
    assert len(list(csv.DictReader(io.StringIO(two_csv)))) == ROWS
