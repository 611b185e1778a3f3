"""An open referral's urgency is the highest of its CBCs' urgencies, on SQLite and PostgreSQL.

Through the real app: CBCs posted to /api/v1/interpretations, the referral read back from /api/v1/referrals.
Before the fix the open referral followed whichever CBC carried the newest collection time: a CBC dated in the
future (a wrong analyser clock) or one posted before an older critical one left the referral at `routine`,
"no finding", while the answer to the critical CBC named the same referral as urgent.

Expected urgencies by hand from clinical-rules.md, for an adult woman with Hb 13.5 g/dL, WBC 6.0 and
neutrophils 3.0 (inside the §2 fallback ranges):
- platelets 250: normal → `routine`;
- platelets 90: thrombocytopenia < 100 (§4) → `soon` (§9);
- platelets 2: below the critical 20 (§3) → `critical_value`: `urgent` (§9) or, for a critical value not
  already in the patient's previous CBC, `immediate` (§3 v2). Either is above `soon`; the tests check that the
  referral takes the critical CBC's own urgency, whichever of the two the engine answers.
The worklist sorts by urgency first (most urgent first), then by the newest collection: a referral escalated by a
critical result goes above every less urgent one, however recent, and above critical ones collected before it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

INTERPRET = "/api/v1/interpretations"
REFERRALS = "/api/v1/referrals"
RANK = {"routine": 0, "soon": 1, "urgent": 2, "immediate": 3}
CRITICAL_URGENCIES = {"urgent", "immediate"}


def cbc(patient: str, collected_at: str, platelets: float) -> dict[str, Any]:
    return {
        "patient": {"id": patient, "sex": "female", "age_years": 40},
        "collected_at": collected_at,
        "results": {"platelets": platelets, "hemoglobin": 13.5, "wbc": 6.0, "neutrophils": 3.0},
    }


def day(n: int, hour: int = 8) -> str:
    return f"2026-11-{n:02d}T{hour:02d}:00:00Z"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def client(make_app, database_url):
    return make_app(DATABASE_URL=database_url).test_client()


def post(client, doc: dict[str, Any]) -> dict[str, Any]:
    response = client.post(INTERPRET, json=doc)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def referral(client, referral_id: int) -> dict[str, Any]:
    response = client.get(f"{REFERRALS}/{referral_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def worklist(client) -> list[dict[str, Any]]:
    response = client.get(REFERRALS)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["items"]


@pytest.fixture
def others(client) -> None:
    """Other patients' open referrals: a critical one collected before every CBC of the tests below, and a `soon`
    one collected after them (so above the patient's `soon` referral until a critical result escalates it)."""
    assert post(client, cbc("OTHER-CRITICAL", day(1, hour=0), 15))["urgency"] in CRITICAL_URGENCIES
    assert post(client, cbc("OTHER-SOON", day(21), 90))["urgency"] == "soon"


def assert_follows_critical(client, critical: dict[str, Any], *, collected: str) -> None:
    """The patient's open referral carries the critical CBC: its urgency, findings and time; first on the list."""
    assert critical["urgency"] in CRITICAL_URGENCIES
    shown = referral(client, critical["stored"]["referral_id"])
    assert shown["urgency"] == critical["urgency"]
    assert shown["interpretation_id"] == critical["stored"]["interpretation_id"]
    assert "critical_value" in shown["findings"] and "critical value" in shown["reason"]
    assert datetime.fromisoformat(shown["collected_at"]) == datetime.fromisoformat(collected)
    first = worklist(client)[0]
    assert (first["id"], first["urgency"]) == (shown["id"], critical["urgency"])


# --- the issue's own case: a CBC dated ahead (within the clock skew), then today's critical one --------------


def test_a_cbc_dated_ahead_does_not_hide_a_later_critical_result(client, others):
    now = datetime.now(UTC)
    opened = post(client, cbc("P1", iso(now - timedelta(days=1)), 90))
    ahead = post(client, cbc("P1", iso(now + timedelta(minutes=4)), 250))  # an analyser clock 4 minutes fast
    critical = post(client, cbc("P1", iso(now - timedelta(minutes=1)), 2))
    assert opened["urgency"] == "soon" and ahead["urgency"] == "routine"
    assert ahead["stored"]["referral_id"] == critical["stored"]["referral_id"] == opened["stored"]["referral_id"]
    shown = referral(client, critical["stored"]["referral_id"])
    assert shown["urgency"] == critical["urgency"] in CRITICAL_URGENCIES
    assert shown["reason"] != "no finding" and "critical_value" in shown["findings"]
    assert worklist(client)[0]["id"] == shown["id"]


# --- the orders: old then new, new then old, equal times -------------------------------------------------


def test_old_then_new_a_newer_critical_result_escalates_the_referral(client, others):
    opened = post(client, cbc("P1", day(1), 90))
    critical = post(client, cbc("P1", day(2), 2))
    assert opened["stored"]["referral_id"] == critical["stored"]["referral_id"]
    assert_follows_critical(client, critical, collected=day(2))


def test_old_then_new_a_newer_routine_result_does_not_lower_the_referral(client):
    critical = post(client, cbc("P1", day(1), 2))
    recovered = post(client, cbc("P1", day(2), 250))
    assert recovered["urgency"] == "routine"
    assert recovered["stored"]["referral_id"] == critical["stored"]["referral_id"]
    shown = referral(client, critical["stored"]["referral_id"])
    assert shown["urgency"] == critical["urgency"] in CRITICAL_URGENCIES
    assert shown["interpretation_id"] == critical["stored"]["interpretation_id"]


def test_old_then_new_a_newer_less_urgent_result_does_not_lower_the_referral(client):
    critical = post(client, cbc("P1", day(1), 2))
    later = post(client, cbc("P1", day(2), 90))
    assert later["urgency"] == "soon"
    shown = referral(client, critical["stored"]["referral_id"])
    assert shown["urgency"] == critical["urgency"]
    assert shown["interpretation_id"] == critical["stored"]["interpretation_id"]


def test_new_then_old_an_older_critical_result_posted_later_escalates_the_referral(client, others):
    opened = post(client, cbc("P1", day(5), 90))
    critical = post(client, cbc("P1", day(3), 2))  # collected earlier, arrives later
    assert opened["stored"]["referral_id"] == critical["stored"]["referral_id"]
    assert_follows_critical(client, critical, collected=day(3))


def test_new_then_old_an_older_routine_result_posted_later_does_not_lower_the_referral(client):
    critical = post(client, cbc("P1", day(5), 2))
    older = post(client, cbc("P1", day(3), 250))
    assert older["urgency"] == "routine"
    shown = referral(client, critical["stored"]["referral_id"])
    assert shown["urgency"] == critical["urgency"]
    assert shown["interpretation_id"] == critical["stored"]["interpretation_id"]


def test_equal_times_critical_second_escalates_the_referral(client, others):
    opened = post(client, cbc("P1", day(4), 90))
    critical = post(client, cbc("P1", day(4), 2))
    assert opened["stored"]["referral_id"] == critical["stored"]["referral_id"]
    assert_follows_critical(client, critical, collected=day(4))


def test_equal_times_critical_first_is_not_lowered_by_the_second(client, others):
    critical = post(client, cbc("P1", day(4), 2))
    second = post(client, cbc("P1", day(4), 90))
    assert second["urgency"] == "soon"
    assert second["stored"]["referral_id"] == critical["stored"]["referral_id"]
    assert_follows_critical(client, critical, collected=day(4))


def test_several_cbcs_of_one_request_in_any_order_keep_the_highest(client):
    response = client.post(INTERPRET, json=[cbc("P1", day(5), 90), cbc("P1", day(3), 2), cbc("P1", day(6), 250)])
    assert response.status_code == 200, response.get_data(as_text=True)
    soon, critical, routine = response.get_json()
    assert {soon["stored"]["referral_id"], routine["stored"]["referral_id"]} == {critical["stored"]["referral_id"]}
    shown = referral(client, critical["stored"]["referral_id"])
    assert shown["urgency"] == critical["urgency"] in CRITICAL_URGENCIES
    assert shown["interpretation_id"] == critical["stored"]["interpretation_id"]


def test_a_referral_escalated_while_acknowledged_stays_open_at_the_higher_urgency(client):
    opened = post(client, cbc("P1", day(5), 90))
    referral_id = opened["stored"]["referral_id"]
    assert client.patch(f"{REFERRALS}/{referral_id}", json={"status": "acknowledged"}).status_code == 200
    critical = post(client, cbc("P1", day(3), 2))
    assert critical["stored"]["referral_id"] == referral_id
    shown = referral(client, referral_id)
    assert shown["status"] == "acknowledged"
    assert RANK[shown["urgency"]] > RANK["soon"] and shown["urgency"] == critical["urgency"]
