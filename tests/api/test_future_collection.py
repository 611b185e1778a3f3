"""A collection time ahead of the service's clock by more than the allowed skew is refused.

A CBC dated in the future (a wrong analyser clock, or a hostile client) used to be stored and to sort as the
patient's newest result, so an older-dated critical result could not replace it in the worklist. It is now
refused, naming the field, on every input path: JSON (422 `collected_at`), CSV (a row error naming the column),
FHIR (422 naming `effectiveDateTime`), HL7 v2 over HTTP (422 naming OBR-7, or an AE ACK) and over MLLP
(tests/test_mllp.py). The allowed skew is CLOCK_SKEW_SECONDS, 300 (5 minutes) by default. Nothing of a refused
request is stored. Each test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import hl7
import pytest

from tests.adapters.fhir.build import observation
from tests.adapters.hl7v2.samples import ER7, NHAPI_ORU, replace_field, text
from tests.api.helpers import assert_problem

INTERPRET = "/api/v1/interpretations"
FHIR = "/api/v1/fhir/interpret"
HL7 = "/api/v1/hl7v2/interpret"
BATCHES = "/api/v1/batches"


def iso(moment: datetime) -> str:
    return moment.isoformat()


def ahead(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


def cbc(patient: str, collected_at: str, platelets: float = 250) -> dict[str, Any]:
    return {
        "patient": {"id": patient, "sex": "female", "age_years": 40},
        "collected_at": collected_at,
        "results": {"platelets": platelets, "hemoglobin": 13.5, "wbc": 6.0, "neutrophils": 3.0},
    }


@pytest.fixture
def make_client(make_app, database_url):
    return lambda **config: make_app(DATABASE_URL=database_url, **config).test_client()


@pytest.fixture
def client(make_client):
    return make_client()


def nothing_stored_for(client, patient: str) -> None:
    assert client.get(f"/api/v1/patients/{patient}/results").status_code == 404


# --- JSON ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "when",
    [
        pytest.param(lambda: "2099-01-01T00:00:00Z", id="2099"),
        pytest.param(lambda: iso(ahead(hours=1)), id="an hour ahead"),
        pytest.param(lambda: iso(ahead(minutes=6)), id="six minutes ahead"),
        pytest.param(
            lambda: iso(ahead(hours=1).astimezone(timezone(timedelta(hours=14)))), id="an hour ahead at +14:00"
        ),
    ],
)
def test_json_a_collection_time_ahead_of_the_clock_is_422_naming_collected_at(client, when):
    body = assert_problem(client.post(INTERPRET, json=cbc("P-FUTURE", when(), platelets=2)), 422)
    assert list(body["errors"]) == ["collected_at"]
    assert "future" in body["errors"]["collected_at"][0]
    nothing_stored_for(client, "P-FUTURE")


def test_json_in_an_array_the_error_names_the_index(client):
    body = assert_problem(
        client.post(INTERPRET, json=[cbc("P-NOW", iso(ahead(hours=-1))), cbc("P-FUTURE", "2099-01-01T00:00:00Z")]), 422
    )
    assert list(body["errors"]) == ["1.collected_at"]
    nothing_stored_for(client, "P-NOW")  # none of the array is interpreted or stored


def test_json_a_time_within_the_skew_is_accepted(client):
    response = client.post(INTERPRET, json=cbc("P-FAST-CLOCK", iso(ahead(minutes=4))))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["stored"]["duplicate"] is False


def test_json_the_skew_is_configurable(make_client):
    client = make_client(CLOCK_SKEW_SECONDS=3600)
    assert client.post(INTERPRET, json=cbc("P1", iso(ahead(minutes=50)))).status_code == 200
    body = assert_problem(client.post(INTERPRET, json=cbc("P2", iso(ahead(minutes=70)))), 422)
    assert list(body["errors"]) == ["collected_at"]


def test_the_skew_setting_comes_from_the_environment() -> None:
    from labservice.config import load_settings

    assert load_settings({})["CLOCK_SKEW_SECONDS"] == 300
    assert load_settings({"LABSERVICE_CLOCK_SKEW_SECONDS": "60"})["CLOCK_SKEW_SECONDS"] == 60


# --- CSV -----------------------------------------------------------------------------------------------------


def upload(client, data: bytes) -> dict[str, Any]:
    response = client.post(BATCHES, data={"file": (io.BytesIO(data), "cbc.csv")}, content_type="multipart/form-data")
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()


def test_csv_a_row_dated_ahead_is_a_row_error_naming_the_column_and_is_not_stored(client):
    past = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = (
        b"patient_id,collection time,sex,age,platelets,wbc,hemoglobin,neutrophils\n"
        + f"P-PAST,{past},F,40,250,6.0,13.5,3.0\n".encode()
        + b"P-FUTURE,2099-01-01T00:00:00Z,F,40,2,6.0,13.5,3.0\n"
    )
    body = upload(client, data)
    summary = body["summary"]
    assert (summary["rows_in"], summary["interpreted"], summary["rejected"]) == (2, 1, 1)
    assert any(
        "line 3" in error and "collection time" in error and "future" in error for error in summary["first_errors"]
    ), summary["first_errors"]
    rows = list(csv.DictReader(io.StringIO(client.get(body["links"]["csv"]).get_data(as_text=True), newline="")))
    assert rows[0]["error"] == "" and rows[0]["urgency"] == "routine"
    assert "future" in rows[1]["error"] and rows[1]["urgency"] == ""
    nothing_stored_for(client, "P-FUTURE")
    assert client.get("/api/v1/patients/P-PAST/results").status_code == 200


def test_csv_long_shape_a_cbc_dated_ahead_is_a_row_error(client):
    data = (
        b"patient_id,collected_at,item,value,unit\n"
        b"P-FUTURE,2099-01-01T00:00:00Z,platelets,2,10*9/L\n"
        b"P-FUTURE,2099-01-01T00:00:00Z,hemoglobin,13.5,g/dL\n"
    )
    summary = upload(client, data)["summary"]
    assert summary["rejected"] == 1 and summary["interpreted"] == 0
    assert any("collected_at" in error and "future" in error for error in summary["first_errors"])
    nothing_stored_for(client, "P-FUTURE")


# --- FHIR ----------------------------------------------------------------------------------------------------


def test_fhir_an_effective_time_ahead_is_422_naming_effective_date_time(client):
    resource = observation(
        "o", "777-3", 2, "10*9/L", subject={"reference": "Patient/p"}, effectiveDateTime="2099-01-01T00:00:00Z"
    )
    response = client.post(FHIR, data=json.dumps(resource), content_type="application/fhir+json")
    body = assert_problem(response, 422)
    assert list(body["errors"]) == ["Observation(Observation/o).effectiveDateTime"]
    assert "future" in body["errors"]["Observation(Observation/o).effectiveDateTime"][0]


# --- HL7 v2 over HTTP ------------------------------------------------------------------------------------------


def future_oru() -> str:
    """nHapi's ORU^R01 (OBR-7 200509210520) with OBR-7 moved to 2099."""
    return replace_field(text(NHAPI_ORU), ("OBR", 1), 7, "20990101000000")


def test_hl7v2_a_collection_time_ahead_is_422_naming_obr_7(client):
    response = client.post(HL7, data=future_oru().encode(), content_type=ER7)
    body = assert_problem(response, 422)
    assert list(body["errors"]) == ["OBR[1]-7"]
    assert "future" in body["errors"]["OBR[1]-7"][0]


def test_hl7v2_with_the_ack_asked_for_it_is_an_ae_naming_obr_7(client):
    response = client.post(f"{HL7}?ack=true", data=future_oru().encode(), content_type=ER7)
    assert response.status_code == 200
    ack = hl7.parse(response.get_data(as_text=True))
    assert str(ack.segment("MSA")(1)) == "AE"
    assert str(ack.segment("ERR")(2)) == "OBR^1^7"
