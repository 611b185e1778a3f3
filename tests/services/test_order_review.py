"""The platelet-order-check service (clinical-rules §13 v2), through POST /cds-services/platelet-order-check:
a card when a listed order is signed and the latest platelet count is below its group's threshold (strictly:
"below"), stating the count, its date, the threshold and its source; no card otherwise. Expected values come
from §13: neuraxial < 80, lumbar puncture < 40, major surgery < 50, central venous catheter < 20,
therapeutic-dose anticoagulation < 50."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.adapters.cdshooks.test_orders import medication, order_bundle, procedure

URL = "/cds-services/platelet-order-check"
LOINC = "http://loinc.org"


def platelet_observation(value, when, unit="10*3/uL", id=None, patient="pat-9"):
    return {
        "resourceType": "Observation",
        "id": id or f"plt-{when[:10]}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "777-3"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit},
    }


def searchset(*observations):
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"fullUrl": f"http://127.0.0.1/fhir/Observation/{o['id']}", "resource": o} for o in observations],
    }


def order_sign(orders, observations, patient="pat-9"):
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": patient, "draftOrders": order_bundle(*orders)},
        "prefetch": {"patient": None, "cbcObservations": searchset(*observations)},
    }


def cards(client, orders, observations):
    response = client.post(URL, json=order_sign(orders, observations))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


@pytest.mark.parametrize(
    ("order", "below"),
    [
        (procedure("277762005"), 40),  # lumbar puncture
        (procedure("18946005"), 80),  # epidural (neuraxial)
        (procedure("36556", system="http://www.ama-assn.org/go/cpt"), 20),  # central venous catheter
        (medication("1364430"), 50),  # apixaban: therapeutic-dose anticoagulation
    ],
)
def test_a_card_below_the_threshold_none_on_it_or_above(client, order, below):
    latest = "2026-11-20T08:30:00+00:00"
    assert len(cards(client, [order], [platelet_observation(below - 1, latest)])) == 1
    assert cards(client, [order], [platelet_observation(below, latest)]) == []  # on the bound: not below
    assert cards(client, [order], [platelet_observation(below + 1, latest)]) == []


def test_the_card_states_count_date_threshold_and_source_and_only_asks_for_a_review(client):
    observations = [
        platelet_observation(35, "2026-11-20T08:30:00+00:00"),
        platelet_observation(120, "2026-11-01T08:30:00+00:00"),
    ]  # older and higher: not used
    [card] = cards(client, [procedure("277762005", text="Lumbar puncture")], observations)
    assert card["summary"] == ("Platelets 35 x10^9/L (2026-11-20), below 40 for lumbar puncture: review before signing")
    assert len(card["summary"]) <= 140 and card["indicator"] == "warning"
    assert "Estcourt" in card["detail"] and "Review before signing." in card["detail"]
    assert {reason["code"] for reason in card["overrideReasons"]} >= {"benefit-outweighs-risk"}
    assert "links" not in card  # the patient is not stored: no dashboard link


def test_the_count_is_converted_like_every_answer(client):
    """§1: /uL divided by 1000 is 10^9/L: 35,000/uL is 35, below 40 for a lumbar puncture."""
    [card] = cards(
        client, [procedure("277762005")], [platelet_observation(35000, "2026-11-20T08:30:00+00:00", unit="/uL")]
    )
    assert card["summary"].startswith("Platelets 35 x10^9/L")


@pytest.mark.parametrize(
    ("per_microlitre", "written"),
    [
        (35427, "35.4"),  # §1 v2: 3 significant figures (35.427 x10^9/L)
        (39996, "39.996"),  # §1 v2: never rounded across the threshold it is compared with (40.0 would be on it)
    ],
)
def test_the_count_is_written_as_clinicians_write_it_and_never_across_the_threshold(client, per_microlitre, written):
    """Issue 14 item 2: card values rounded as clinicians write them (clinical-rules §1 v2: 149.99 below 150 is
    written 149.99, not 150)."""
    [card] = cards(
        client,
        [procedure("277762005")],
        [platelet_observation(per_microlitre, "2026-11-20T08:30:00+00:00", unit="/uL")],
    )
    assert card["summary"] == (
        f"Platelets {written} x10^9/L (2026-11-20), below 40 for lumbar puncture: review before signing"
    )
    assert f"**Latest platelet count: {written} x10^9/L**" in card["detail"]


def test_no_card_without_a_listed_order_or_without_a_platelet_count(client):
    assert cards(client, [procedure("80146002")], [platelet_observation(5, "2026-11-20T08:30:00+00:00")]) == []
    assert cards(client, [procedure("277762005")], []) == []


def test_one_card_per_order_whose_threshold_the_count_is_below(client):
    """Platelets 45: below 50 (anticoagulation) and below 80 (epidural), not below 40 (lumbar puncture)."""
    orders = [medication("67108"), procedure("18946005", id="epidural"), procedure("277762005", id="lp")]
    found = cards(client, orders, [platelet_observation(45, "2026-11-20T08:30:00+00:00")])
    assert sorted(card["summary"].split(" for ")[1].split(":")[0] for card in found) == [
        "neuraxial anaesthesia (epidural or spinal)",
        "therapeutic-dose anticoagulation",
    ]


def test_a_call_without_draft_orders_is_400_naming_the_field(client):
    body = order_sign([], [])
    del body["context"]["draftOrders"]
    response = client.post(URL, json=body)
    assert response.status_code == 400
    assert "context.draftOrders" in response.get_json()["errors"]


def test_override_feedback_with_a_reason_of_the_card_is_recorded(client, app, tmp_path):
    [card] = cards(client, [procedure("277762005")], [platelet_observation(30, "2026-11-20T08:30:00+00:00")])
    reason = card["overrideReasons"][0]
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-20T09:00:00Z",
                "overrideReason": {"reason": reason, "userComment": "platelets ordered"},
            }
        ]
    }
    response = client.post(f"{URL}/feedback", json=feedback)
    assert response.status_code == 200 and response.get_json() == {"recorded": 1}
    log = Path(app.config.get("CDS_FEEDBACK_FILE") or Path(app.instance_path) / "cds-feedback.jsonl")
    record = json.loads(log.read_text(encoding="utf-8").splitlines()[-1])
    assert record["overrideReason"] == reason  # the coding the card offered, kept
    assert "platelets ordered" not in log.read_text(encoding="utf-8")  # free text is not kept
