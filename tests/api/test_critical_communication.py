"""Issue 14 item 9: the record of communicating a critical result (CLSI GP47 (2015) and RCPath G158 (2017):
a critical result is communicated to the responsible clinician and the communication is documented: who, when,
by what means, with read-back, or that the clinician could not be reached). Shown in the referral's history and
the audit trail; the worklist shows critical results not yet communicated first."""

from __future__ import annotations

import pytest

from tests.api.helpers import assert_problem
from tests.api.test_referrals import SEED, URL, cbc, key_actor, listing, patients, post


@pytest.fixture
def seeded(client) -> dict[str, int]:
    """The referral tests' SEED CBCs stored; patient -> its open referral id (P-CRIT: platelets 15, critical)."""
    referrals = {}
    for patient, collected_at, platelets, extra in SEED:
        answer = post(client, cbc(patient, collected_at, platelets, **extra))[0]
        if answer["stored"]["referral_id"] is not None:
            referrals[patient] = answer["stored"]["referral_id"]
    return referrals


def communicate(client, referral_id: int, **body):
    return client.post(f"{URL}/{referral_id}/communications", json=body)


def test_a_communication_is_recorded_with_who_when_how_and_read_back(client, seeded):
    response = communicate(
        client,
        seeded["P-CRIT"],
        notified="Dr Patel, FY2 ward 7",
        means="telephone",
        read_back=True,
        note="Repeat count ordered.",
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    [record] = response.get_json()["communications"]
    assert (record["notified"], record["means"], record["reached"], record["read_back"]) == (
        "Dr Patel, FY2 ward 7",
        "telephone",
        True,
        True,
    )
    assert record["recorded_by"] == key_actor(client) and record["communicated_at"]
    shown = client.get(f"{URL}/{seeded['P-CRIT']}").get_json()["communications"]
    assert [r["id"] for r in shown] == [record["id"]]


def test_not_reached_is_recorded_and_read_back_needs_someone_reached(client, seeded):
    body = communicate(
        client,
        seeded["P-CRIT"],
        notified="On-call registrar (bleep 4321)",
        means="bleep_callback",
        reached=False,
        read_back=True,
    ).get_json()
    [record] = body["communications"]
    assert record["reached"] is False and record["read_back"] is False


def test_only_a_referral_with_a_critical_value_takes_one(client, seeded):
    refused = assert_problem(communicate(client, seeded["P-SOON"], notified="Dr X", means="telephone"), 409)
    assert "no critical value" in refused["detail"]
    assert_problem(communicate(client, 999999, notified="Dr X", means="telephone"), 404)
    bad = assert_problem(communicate(client, seeded["P-CRIT"], notified="", means="pigeon"), 422)
    assert {"notified", "means"} <= set(bad["errors"])
    future = assert_problem(
        communicate(
            client, seeded["P-CRIT"], notified="Dr X", means="telephone", communicated_at="2099-01-01T00:00:00Z"
        ),
        422,
    )
    assert "communicated_at" in future["errors"]
    # P-CRIT's CBC was collected 2026-11-10T08:00Z: nobody can have been told of it before.
    early = assert_problem(
        communicate(
            client, seeded["P-CRIT"], notified="Dr X", means="telephone", communicated_at="2026-11-10T07:59:00Z"
        ),
        422,
    )
    assert "before the CBC was collected" in early["detail"] and "communicated_at" in early["errors"]
    assert client.get(f"{URL}/{seeded['P-CRIT']}").get_json()["communications"] == []


def test_critical_results_not_yet_communicated_come_first_on_the_worklist(client):
    """A critical platelet count during myelosuppressive treatment asks `urgent` (clinical-rules §11 v2), below a red
    flag's `immediate` (§7, §9): until someone is reached about it, it stands first; then it takes its urgency's
    place."""
    nadir = post(client, cbc("P-NADIR", "2026-11-20T08:00:00Z", 15, context={"myelosuppressive_therapy": True}))[0]
    post(
        client,
        cbc(
            "P-RASH",
            "2026-11-20T09:00:00Z",
            200,
            skin={"fever": True, "lesions": [{"type": "petechiae", "blanching": False}]},
        ),
    )
    assert nadir["urgency"] == "urgent"
    assert patients(listing(client))[:2] == ["P-NADIR", "P-RASH"]
    referral = nadir["stored"]["referral_id"]
    communicate(client, referral, notified="Oncology day unit nurse", means="telephone", reached=False)
    assert patients(listing(client))[:2] == ["P-NADIR", "P-RASH"]  # nobody reached: still first
    communicate(client, referral, notified="Dr Okafor, oncology registrar", means="telephone", read_back=True)
    assert patients(listing(client))[:2] == ["P-RASH", "P-NADIR"]


def test_the_worklist_says_which_critical_results_nobody_has_been_reached_about(client):
    """The JSON worklist carries what orders it: `critical` (the CBC shown has a critical value: platelets 15 is below
    the critical limit of 20, clinical-rules §3) and `critical_uncommunicated` (until a communication reached
    someone), on each item and on the referral itself."""
    nadir = post(client, cbc("P-NADIR", "2026-11-20T08:00:00Z", 15, context={"myelosuppressive_therapy": True}))[0]
    post(client, cbc("P-SOON", "2026-11-20T09:00:00Z", 90))
    referral = nadir["stored"]["referral_id"]

    def flags() -> dict[str, tuple[bool, bool]]:
        return {
            item["patient_id"]: (item["critical"], item["critical_uncommunicated"]) for item in listing(client)["items"]
        }

    assert flags() == {"P-NADIR": (True, True), "P-SOON": (False, False)}
    communicate(client, referral, notified="Oncology day unit nurse", means="telephone", reached=False)
    assert flags()["P-NADIR"] == (True, True)  # nobody reached
    communicate(client, referral, notified="Dr Okafor, oncology registrar", means="telephone", read_back=True)
    assert flags()["P-NADIR"] == (True, False)
    shown = client.get(f"{URL}/{referral}").get_json()
    assert (shown["critical"], shown["critical_uncommunicated"]) == (True, False)


def test_the_dashboard_records_it_and_shows_it_in_the_history_and_the_audit_trail(client, seeded):
    from tests.credentials import csrf_token

    page = client.get("/dashboard/patients/P-CRIT").get_data(as_text=True)
    assert 'id="communication-form"' in page and "not yet communicated" in page
    worklist = client.get("/dashboard/").get_data(as_text=True)
    row = worklist.split('data-patient="P-CRIT"', 1)[1].split("</tr>", 1)[0]
    assert 'data-uncommunicated="true"' in row
    answer = client.post(
        f"/dashboard/referrals/{seeded['P-CRIT']}/communications",
        data={
            "notified": "Dr Patel",
            "means": "in_person",
            "reached": "yes",
            "read_back": "yes",
            "next": "/dashboard/patients/P-CRIT",
            "csrf_token": csrf_token(client),
        },
    )
    assert answer.status_code == 303
    page = client.get("/dashboard/patients/P-CRIT").get_data(as_text=True)
    history = page.split('id="referrals"', 1)[1]
    assert "Dr Patel" in history and "reached, read back" in history and "in person" in history
    audit = client.get("/api/v1/audit?patient=P-CRIT&action=update").get_json()
    resources = [item["resource"] for item in audit["items"]]
    assert "POST /dashboard/referrals/<int:referral_id>/communications" in resources  # the trail says what it was


def test_the_dashboard_form_takes_when_in_utc_and_refuses_what_is_not_a_past_time(client, seeded):
    """The record says when (CLSI GP47): a call made before it was written down is recorded at its own time,
    read as UTC like every time the dashboard shows; empty is now; a time in the future or not a time is refused
    with a message and nothing is recorded."""
    from tests.credentials import csrf_token

    def record(when: str):
        return client.post(
            f"/dashboard/referrals/{seeded['P-CRIT']}/communications",
            data={
                "notified": "Dr Patel",
                "means": "telephone",
                "reached": "yes",
                "communicated_at": when,
                "next": "/dashboard/patients/P-CRIT",
                "csrf_token": csrf_token(client),
            },
        )

    for refused in ("2099-01-01T00:00", "yesterday"):
        assert record(refused).status_code == 303
        page = client.get("/dashboard/patients/P-CRIT").get_data(as_text=True)
        assert "When: a date and time in UTC, not in the future" in page
    assert record("2026-11-10T07:59").status_code == 303  # a minute before the CBC was collected
    assert "Nothing was recorded: the time given is before the CBC was collected" in client.get(
        "/dashboard/patients/P-CRIT"
    ).get_data(as_text=True)
    assert client.get(f"{URL}/{seeded['P-CRIT']}").get_json()["communications"] == []
    assert record("2026-11-10T09:15").status_code == 303
    [recorded] = client.get(f"{URL}/{seeded['P-CRIT']}").get_json()["communications"]
    assert recorded["communicated_at"].startswith("2026-11-10T09:15:00")
    history = client.get("/dashboard/patients/P-CRIT").get_data(as_text=True).split('id="referrals"', 1)[1]
    assert "2026-11-10 09:15 UTC" in history
