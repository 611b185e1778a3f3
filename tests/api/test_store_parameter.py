"""?store on every endpoint that stores: true/false (1/0, yes/no, any case), anything else a 422 naming `store`.

Found by schemathesis (negative data): `?store=null` was read as true and stored, so a typo such as
`store=flase` would keep the patient data the caller meant to keep out.
"""

from __future__ import annotations

import io

import pytest

from labservice.api.fhir import EXAMPLE as FHIR_EXAMPLE
from labservice.api.hl7v2 import EXAMPLE as HL7_EXAMPLE
from tests.api.helpers import assert_problem

CBC = {"patient": {"id": "STORE-1"}, "results": {"platelets": 15}, "collected_at": "2026-11-20T08:30:00Z"}


def post(client, endpoint: str, store: str | None):
    query = "" if store is None else f"?store={store}"
    if endpoint == "interpretations":
        return client.post(f"/api/v1/interpretations{query}", json=CBC)
    if endpoint == "fhir":
        return client.post(f"/api/v1/fhir/interpret{query}", json=FHIR_EXAMPLE)
    if endpoint == "hl7v2":
        return client.post(f"/api/v1/hl7v2/interpret{query}", data=HL7_EXAMPLE, content_type="x-application/hl7-v2+er7")
    return client.post(
        f"/api/v1/batches{query}",
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(b"Patient ID,PLT\nSTORE-1,15\n"), "store.csv")},
    )


def stored_patients(client) -> int:
    return client.get("/api/v1/referrals?status=all").get_json()["total"]


ENDPOINTS = ["interpretations", "fhir", "hl7v2", "batches"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("word", ["flase", "null", "", "2", "truee"])
def test_a_store_that_is_not_true_or_false_is_422_and_stores_nothing(client, endpoint, word):
    problem = assert_problem(post(client, endpoint, word), 422)
    assert list(problem["errors"]) == ["store"]
    assert stored_patients(client) == 0


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    ("word", "stored"), [("false", 0), ("FALSE", 0), ("0", 0), ("no", 0), (None, 1), ("true", 1), ("1", 1), ("Yes", 1)]
)
def test_store_true_or_false_in_any_spelling(client, endpoint, word, stored):
    response = post(client, endpoint, word)
    assert response.status_code in (200, 202), response.get_data(as_text=True)
    assert stored_patients(client) == stored
