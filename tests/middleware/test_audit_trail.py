"""The audit trail records every read and change of patient data: one row per patient per request, on SQLite
and PostgreSQL, from every endpoint that takes or shows patient data, and from the MLLP listener.

Done when: "the audit trail records every read". When the row cannot be written, the answer is
withheld (503), which is tested for real by taking the audit table away.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, text

from labservice.store.models import CbcResult, Referral
from tests.adapters.cdshooks.build import hook_call, searchset, synthea_server_data
from tests.adapters.hl7v2.samples import NHAPI_ORU, raw
from tests.api.helpers import assert_problem
from tests.api.test_fhir import SYNTHEA
from tests.credentials import csrf_token
from tests.security.audit_support import (
    audit_rows,
    bearer_client,
    cbc,
    csv_upload,
    database,
    key_name,
    new_key,
    new_rows,
    username,
    wide_csv,
)

INTERPRET = "/api/v1/interpretations"


@pytest.fixture
def app(make_app, database_url, tmp_path):
    return make_app(DATABASE_URL=database_url, CDS_FEEDBACK_FILE=str(tmp_path / "cds.jsonl"))


def unique(prefix: str = "MRN") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def store(client, *patients: str) -> list[dict[str, Any]]:
    """Store one urgent CBC per patient (each opens a referral); the answers."""
    response = client.post(INTERPRET, json=[cbc(patient) for patient in patients])
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def referral_of(app, patient: str) -> int:
    with database(app).session() as session:
        from labservice.store.models import Patient

        return session.scalar(
            select(Referral.id).join(Patient, Patient.id == Referral.patient_id).where(Patient.external_id == patient)
        )


def only(rows: list[dict[str, Any]], **expected: Any) -> list[dict[str, Any]]:
    """The rows, each checked to hold `expected`."""
    for row in rows:
        for name, value in expected.items():
            assert row[name] == value, (name, row)
    return rows


# --- who, when, from where, which request -------------------------------------------------------


def test_a_stored_interpretation_is_one_create_row_naming_who_what_where_and_the_request(app, client):
    patient = unique()
    response = client.post(INTERPRET, json=cbc(patient), headers={"X-Request-ID": "lis-batch-7.42"})
    assert response.status_code == 200
    [row] = audit_rows(app)
    assert row["actor_type"] == "api_key" and row["actor"] == key_name(app)
    assert row["action"] == "create" and row["patient"] == patient
    assert row["resource"] == "POST /api/v1/interpretations"
    assert row["status"] == 200 and row["remote_addr"] == "127.0.0.1"
    assert row["request_id"] == "lis-batch-7.42" == response.headers["X-Request-ID"]
    assert row["at"] is not None


def test_an_interpretation_not_stored_is_recorded_as_interpret(app, client):
    patient = unique()
    assert client.post(INTERPRET + "?store=false", json=cbc(patient)).status_code == 200
    only(audit_rows(app), action="interpret", patient=patient)


def test_an_array_gives_one_row_per_patient_and_none_for_cbcs_without_a_patient_id(app, client):
    first, second = unique(), unique()
    body = [cbc(first), cbc(None), cbc(second), {**cbc(first), "collected_at": "2026-11-21T08:30:00Z"}]
    response = client.post(INTERPRET, json=body)
    assert response.status_code == 200
    rows = audit_rows(app)
    assert [row["patient"] for row in rows] == [first, second]
    only(rows, action="create", request_id=response.headers["X-Request-ID"])


def test_a_request_that_touches_no_patient_writes_no_row(app, client):
    for url in ("/healthz", "/api/v1/ruleset", "/api/v1/openapi.json", "/cds-services"):
        assert client.get(url).status_code == 200
    assert client.post(INTERPRET, json=cbc(None)).status_code == 200
    assert client.post(INTERPRET, json={"nonsense": 1}).status_code == 422
    assert audit_rows(app) == []


# --- every endpoint with patient data ------------------------------------------------------------


def test_patient_results_is_a_read_of_that_patient_and_the_route_not_the_path(app, client):
    patient = unique("MRN/with/slashes")
    store(client, patient)
    before = len(audit_rows(app))
    assert client.get(f"/api/v1/patients/{patient}/results").status_code == 200
    [row] = new_rows(app, before)
    assert row["action"] == "read" and row["patient"] == patient
    assert row["resource"] == "GET /api/v1/patients/<path:patient_id>/results"


def test_a_look_up_of_an_unknown_patient_id_is_recorded_with_its_404(app, client):
    """Issue 10 item 9: probing patient ids (API and dashboard) left no trace. A 404 look-up is a read of that id."""
    patient = unique()
    assert client.get(f"/api/v1/patients/{patient}/results").status_code == 404
    assert client.get(f"/dashboard/patients/{patient}").status_code == 404
    api, page = audit_rows(app)
    assert (api["action"], api["patient"], api["status"], api["resource"]) == (
        "read",
        patient,
        404,
        "GET /api/v1/patients/<path:patient_id>/results",
    )
    assert (page["action"], page["patient"], page["status"], page["resource"]) == (
        "read",
        patient,
        404,
        "GET /dashboard/patients/<patient_id:external_id>",
    )  # one path segment


def test_the_referral_worklist_records_the_patients_on_the_page_only(app, client):
    patients = [unique() for _ in range(3)]
    store(client, *patients)
    before = len(audit_rows(app))
    page = client.get("/api/v1/referrals?per_page=2").get_json()
    rows = new_rows(app, before)
    assert sorted(row["patient"] for row in rows) == sorted(item["patient_id"] for item in page["items"])
    assert len(rows) == 2
    only(rows, action="read", resource="GET /api/v1/referrals")


def test_one_referral_is_a_read_and_a_status_change_an_update(app, client):
    patient = unique()
    store(client, patient)
    referral = referral_of(app, patient)
    before = len(audit_rows(app))
    assert client.get(f"/api/v1/referrals/{referral}").status_code == 200
    assert client.patch(f"/api/v1/referrals/{referral}", json={"status": "acknowledged"}).status_code == 200
    read, update = new_rows(app, before)
    assert (read["action"], read["patient"], read["resource"]) == (
        "read",
        patient,
        "GET /api/v1/referrals/<int:referral_id>",
    )
    assert (update["action"], update["patient"], update["resource"]) == (
        "update",
        patient,
        "PATCH /api/v1/referrals/<int:referral_id>",
    )


def test_fhir_interpret_records_each_patient(app, client):
    body = next(SYNTHEA.glob("Jordan_Cruickshank_*.json")).read_bytes()
    response = client.post("/api/v1/fhir/interpret", data=body, content_type="application/fhir+json")
    assert response.status_code == 200
    patients = {item["patient_id"] for item in response.get_json()["interpretations"]}
    rows = audit_rows(app)
    assert {row["patient"] for row in rows} == patients and len(rows) == len(patients) == 1
    only(rows, action="create", resource="POST /api/v1/fhir/interpret")


def test_hl7v2_interpret_records_the_patient_also_when_the_answer_is_the_ack(app, client):
    for headers, action, query in (
        ({}, "interpret", "?store=false"),
        ({"Accept": "x-application/hl7-v2+er7"}, "create", ""),
    ):
        before = len(audit_rows(app))
        response = client.post(
            "/api/v1/hl7v2/interpret" + query,
            data=raw(NHAPI_ORU),
            content_type="x-application/hl7-v2+er7",
            headers=headers,
        )
        assert response.status_code == 200
        [row] = new_rows(app, before)
        assert row["action"] == action and row["patient"] and row["resource"] == "POST /api/v1/hl7v2/interpret"


def test_a_batch_upload_records_every_stored_patient_and_the_batch(app, client):
    first, second = unique(), unique()
    response = client.post("/api/v1/batches", data=csv_upload(wide_csv([(first, 40), (second, 210), (first, 35)])))
    assert response.status_code == 202
    batch = response.get_json()["batch_id"]
    rows = audit_rows(app)
    assert sorted(row["patient"] for row in rows) == sorted([first, second])
    only(rows, action="create", resource=f"POST /api/v1/batches batch {batch}")


def test_a_batch_without_stored_patients_is_one_row_with_the_batch_id(app, client):
    response = client.post("/api/v1/batches?store=false", data=csv_upload(wide_csv([(unique(), 40)])))
    assert response.status_code == 202
    batch = response.get_json()["batch_id"]
    [row] = audit_rows(app)
    assert row["patient"] is None and row["action"] == "create"
    assert row["resource"] == f"POST /api/v1/batches batch {batch}"


def test_batch_summaries_and_downloads_are_reads_of_the_batch_patients(app, client):
    first, second = unique(), unique()
    batch = client.post("/api/v1/batches", data=csv_upload(wide_csv([(first, 40), (second, 60)]))).get_json()
    for suffix in ("", "/result.csv", "/result.json"):
        before = len(audit_rows(app))
        assert client.get(f"/api/v1/batches/{batch['batch_id']}{suffix}").status_code == 200
        rows = new_rows(app, before)
        assert sorted(row["patient"] for row in rows) == sorted([first, second])
        rule = "/api/v1/batches/<batch_id>" + suffix
        only(rows, action="read", resource=f"GET {rule} batch {batch['batch_id']}")
    before = len(audit_rows(app))  # the same file again: answered from the store, a read
    again = client.post("/api/v1/batches", data=csv_upload(wide_csv([(first, 40), (second, 60)])))
    assert again.status_code == 200
    assert sorted(row["patient"] for row in only(new_rows(app, before), action="read")) == sorted([first, second])


def test_a_download_of_an_unstored_batch_records_every_patient_in_it(app, client):
    """Issue 10 item 9: with ?store=false no CBC points at the batch, and a download (which shows every patient
    id of the file) was recorded as one row with patient null."""
    first, second = unique(), unique()
    upload = client.post("/api/v1/batches?store=false", data=csv_upload(wide_csv([(first, 40), (second, 60)])))
    assert upload.status_code == 202
    batch = upload.get_json()["batch_id"]
    for suffix in ("", "/result.csv", "/result.json"):
        before = len(audit_rows(app))
        assert client.get(f"/api/v1/batches/{batch}{suffix}").status_code == 200
        rows = new_rows(app, before)
        assert sorted(row["patient"] for row in rows) == sorted([first, second])
        only(rows, action="read", resource=f"GET /api/v1/batches/<batch_id>{suffix} batch {batch}")
    before = len(audit_rows(app))
    assert client.get(f"/dashboard/batches/{batch}/result.csv").status_code == 200
    assert sorted(row["patient"] for row in new_rows(app, before)) == sorted([first, second])


def test_a_download_records_the_patients_whose_cbcs_an_earlier_upload_stored(app, client):
    """A second file with the same CBCs stores nothing new (its CBCs point at the first batch), yet its download
    shows those patients: one row each."""
    first, second = unique(), unique()
    text = wide_csv([(first, 40), (second, 60)])
    assert client.post("/api/v1/batches", data=csv_upload(text)).status_code == 202
    again = client.post("/api/v1/batches", data=csv_upload(text + "\n"))
    assert again.status_code == 202 and again.get_json()["summary"]["stored"] == 0
    before = len(audit_rows(app))
    assert client.get(f"/api/v1/batches/{again.get_json()['batch_id']}/result.json").status_code == 200
    assert sorted(row["patient"] for row in only(new_rows(app, before), action="read")) == sorted([first, second])


def test_reading_the_audit_trail_is_itself_recorded(app, client):
    """Issue 10 item 9: who read the audit trail was not recorded. A look-up of one patient's trail names them."""
    patient = unique()
    store(client, patient)
    before = len(audit_rows(app))
    assert client.get("/api/v1/audit").status_code == 200
    assert client.get(f"/api/v1/audit?patient={patient}").status_code == 200
    everything, about = new_rows(app, before)
    only(
        [everything, about],
        action="read",
        resource="GET /api/v1/audit audit trail",
        status=200,
        actor_type="api_key",
        actor=key_name(app),
    )
    assert everything["patient"] is None and about["patient"] == patient


def test_a_cds_hooks_call_is_a_read_of_the_patient_in_context(app, client):
    patient, observations = synthea_server_data("Cleo_Friesen")
    body = hook_call(patient["id"], {"patient": patient, "cbcObservations": searchset(observations)})
    response = client.post("/cds-services/cbc-review", json=body)
    assert response.status_code == 200
    [row] = audit_rows(app)
    assert (row["action"], row["patient"], row["resource"]) == (
        "read",
        patient["id"],
        "POST /cds-services/<service_id>",
    )


def test_dashboard_pages_record_what_they_show(app, client):
    patients = [unique() for _ in range(2)]
    store(client, *patients)
    before = len(audit_rows(app))
    assert client.get("/dashboard/").status_code == 200
    rows = new_rows(app, before)
    assert sorted(row["patient"] for row in rows) == sorted(patients)
    only(rows, action="read", resource="GET /dashboard/", actor_type="user", actor=username(app))

    before = len(audit_rows(app))
    assert client.get(f"/dashboard/patients/{patients[0]}").status_code == 200
    [row] = new_rows(app, before)
    assert (row["patient"], row["resource"]) == (patients[0], "GET /dashboard/patients/<patient_id:external_id>")

    referral = referral_of(app, patients[1])
    before = len(audit_rows(app))
    assert client.get(f"/dashboard/referrals/{referral}/status").status_code == 200
    response = client.post(
        f"/dashboard/referrals/{referral}/status",
        data={"status": "acknowledged", "actor": "Dr Who", "csrf_token": csrf_token(client)},
    )
    assert response.status_code == 303
    read, update = new_rows(app, before)
    assert (read["action"], read["patient"]) == ("read", patients[1])
    assert (update["action"], update["patient"], update["resource"], update["status"]) == (
        "update",
        patients[1],
        "POST /dashboard/referrals/<int:referral_id>/status",
        303,
    )


def test_the_dashboard_batch_page_and_upload_record_the_batch(app, client):
    patient = unique()
    response = client.post(
        "/dashboard/batches", data={**csv_upload(wide_csv([(patient, 40)])), "csrf_token": csrf_token(client)}
    )
    assert response.status_code == 303
    [created] = audit_rows(app)
    assert created["action"] == "create" and created["patient"] == patient
    assert created["resource"].startswith("POST /dashboard/batches batch ")
    batch = created["resource"].rsplit(" ", 1)[1]
    before = len(audit_rows(app))
    assert client.get(f"/dashboard/batches/{batch}").status_code == 200
    [read] = new_rows(app, before)
    assert (read["action"], read["patient"], read["resource"]) == (
        "read",
        patient,
        f"GET /dashboard/batches/<batch_id> batch {batch}",
    )


# --- the request's id and address ---------------------------------------------------------------


@pytest.mark.parametrize("sent", ["has space", "x" * 65, "<script>", "-leading-dash", "MRN\u00e9"])
def test_a_request_id_that_is_not_a_sane_token_is_replaced(app, client, sent):
    response = client.post(INTERPRET, json=cbc(unique()), headers={"X-Request-ID": sent})
    [row] = audit_rows(app)
    assert row["request_id"] == response.headers["X-Request-ID"] != sent
    assert len(row["request_id"]) == 32


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(make_app, database_url):
    plain = make_app(DATABASE_URL=database_url)
    plain.test_client().post(INTERPRET, json=cbc(unique()), headers={"X-Forwarded-For": "203.0.113.9"})
    assert audit_rows(plain)[-1]["remote_addr"] == "127.0.0.1"

    proxied = make_app(DATABASE_URL=database_url, TRUSTED_PROXIES="127.0.0.1, 10.0.0.0/8")
    client = proxied.test_client()
    client.post(INTERPRET, json=cbc(unique()), headers={"X-Forwarded-For": "203.0.113.9, 10.1.2.3"})
    assert audit_rows(proxied)[-1]["remote_addr"] == "203.0.113.9"
    # A client cannot pose as another by writing the header itself: the hop left of it is kept only
    # when every hop to its right is a trusted proxy.
    client.post(INTERPRET, json=cbc(unique()), headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
    assert audit_rows(proxied)[-1]["remote_addr"] == "203.0.113.9"
    client.post(INTERPRET, json=cbc(unique()), headers={"X-Forwarded-For": "not-an-address"})
    assert audit_rows(proxied)[-1]["remote_addr"] == "127.0.0.1"


def test_the_actor_is_the_key_that_called(app):
    token = new_key(app, "interpret", name="lis-interface")
    bearer_client(app, token).post(INTERPRET, json=cbc(unique()))
    [row] = audit_rows(app)
    assert (row["actor_type"], row["actor"]) == ("api_key", "lis-interface")


# --- when the audit row cannot be written --------------------------------------------------------


@contextlib.contextmanager
def audit_table_gone(app) -> Iterator[None]:
    """Take the audit table away for real (renamed), and put it back."""
    with database(app).session() as session:
        session.execute(text("ALTER TABLE audit_events RENAME TO audit_events_away"))
    try:
        yield
    finally:
        with database(app).session() as session:
            session.execute(text("ALTER TABLE audit_events_away RENAME TO audit_events"))


def cbc_count(app) -> int:
    with database(app).session() as session:
        return int(session.scalar(select(func.count()).select_from(CbcResult)) or 0)


def test_a_read_whose_audit_row_cannot_be_written_is_withheld(app, client, caplog):
    patient = unique()
    store(client, patient)
    with audit_table_gone(app):
        response = client.get(f"/api/v1/patients/{patient}/results")
        body = assert_problem(response, 503)
        assert response.headers["Retry-After"] == "5"
        assert patient not in response.get_data(as_text=True)  # no patient data in the answer
        assert "audit trail" in body["detail"]
        page = client.get(f"/dashboard/patients/{patient}")
        assert page.status_code == 503 and patient not in page.get_data(as_text=True)
        assert page.mimetype == "text/html"
        listed = client.get("/api/v1/referrals")
        assert listed.status_code == 503 and patient not in listed.get_data(as_text=True)
    errors = [record for record in caplog.records if record.name == "labservice.audit"]
    assert errors and all(patient not in record.getMessage() for record in errors)
    assert client.get(f"/api/v1/patients/{patient}/results").status_code == 200  # back once it is


def test_a_stored_cbc_whose_audit_row_cannot_be_written_is_not_kept_and_its_answer_withheld(app, client):
    # Issue 12 item 2: the audit row is written in the storing request's own transaction, and an audit write
    # failure still withholds the answer; both are rolled back together, so nothing is kept.
    patient = unique()
    with audit_table_gone(app):
        response = client.post(INTERPRET, json=cbc(patient))
        body = assert_problem(response, 503)
        assert response.headers["Retry-After"] == "5"
        assert "audit trail" in body["detail"] and patient not in response.get_data(as_text=True)
        assert "may have been saved" not in body["detail"]  # it was not: the transaction was rolled back
    assert cbc_count(app) == 0
    again = client.post(INTERPRET, json=cbc(patient))  # the retry the 503 asks for stores it
    assert again.status_code == 200 and again.get_json()["stored"]["duplicate"] is False
    assert cbc_count(app) == 1
    only(audit_rows(app), patient=patient, action="create", status=200)
    assert len(audit_rows(app)) == 1  # written once, in the storing transaction, not again after the view


def test_a_storing_request_writes_one_audit_row_per_patient_not_two(app, client):
    """Written with the results, the rows are not written again after the view: one per patient, status 200."""
    patients = [unique(), unique()]
    store(client, *patients)
    rows = audit_rows(app)
    assert sorted(row["patient"] for row in rows) == sorted(patients)
    only(rows, action="create", status=200, resource="POST /api/v1/interpretations")


def test_a_request_touching_no_patient_does_not_need_the_audit_table(app, client):
    with audit_table_gone(app):
        assert client.get("/api/v1/ruleset").status_code == 200
        assert client.post(INTERPRET, json=cbc(None)).status_code == 200


# --- the MLLP listener ----------------------------------------------------------------------------


def test_mllp_messages_are_audited_under_the_sending_application(tmp_path):
    from tests.test_mllp import connect, frame, msa, read_acks, running_listener

    with running_listener(tmp_path) as (port, url):
        with connect(port) as connection:
            connection.sendall(frame(raw(NHAPI_ORU)))
            [ack] = read_acks(connection, 1)
        assert msa(ack)[0] == "AA"
        from labservice.store.database import Database
        from labservice.store.models import AuditEvent

        db = Database.connect(url)
        try:
            with db.session() as session:
                [row] = session.scalars(select(AuditEvent)).all()
                assert row.actor_type == "mllp" and row.action == "create" and row.patient_external_id
                assert row.resource == "MLLP HL7 v2 message" and row.remote_addr == "127.0.0.1"
                assert len(row.request_id) == 32
                sender = row.actor
            with db.session() as session:  # now take the audit table away: the message is refused, AR 207
                session.execute(text("DROP TABLE audit_events"))
        finally:
            db.engine.dispose()
        with connect(port) as connection:
            connection.sendall(frame(raw(NHAPI_ORU)))
            [ack] = read_acks(connection, 1)
        assert msa(ack)[0] == "AR" and str(ack.segment("ERR")(3)).startswith("207^")
    assert sender and json.dumps(sender)


# --- sign-ins ------------------------------------------------------------------------------------


def test_sign_ins_are_recorded_with_their_outcome(app, anonymous_client):
    from tests.credentials import TEST_PASSWORD

    if "dashboard.sign_in" not in app.view_functions:
        pytest.skip("the dashboard's sign-in comes with its own commit")

    anonymous_client.get("/dashboard/sign-in")
    token = csrf_token(anonymous_client)
    wrong = anonymous_client.post(
        "/dashboard/sign-in", data={"username": username(app), "password": "nope", "csrf_token": token}
    )
    assert wrong.status_code == 401
    right = anonymous_client.post(
        "/dashboard/sign-in", data={"username": username(app), "password": TEST_PASSWORD, "csrf_token": token}
    )
    assert right.status_code == 303
    failed, succeeded = audit_rows(app)
    assert (failed["action"], failed["actor_type"], failed["actor"], failed["status"], failed["patient"]) == (
        "sign_in",
        "user",
        username(app),
        401,
        None,
    )
    assert failed["resource"] == "POST /dashboard/sign-in wrong_password"
    assert (succeeded["action"], succeeded["actor"], succeeded["status"]) == ("sign_in", username(app), 303)
    assert succeeded["resource"] == "POST /dashboard/sign-in ok"
