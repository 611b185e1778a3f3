"""GET /api/v1/audit: administrators read the audit trail, filtered and paged like the worklist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from labservice.store.models import AuditEvent
from tests.api.helpers import assert_problem
from tests.security.audit_support import bearer_client, cbc, database, key_name, new_key

URL = "/api/v1/audit"


@pytest.fixture
def app(make_app, database_url):
    return make_app(DATABASE_URL=database_url)


@pytest.fixture
def trail(app, client):
    """Five requests: three patients stored, one read, one referral acknowledged; (ids, request ids)."""
    ids = ["MRN-A1", "MRN-A2", "MRN-A3"]
    request_ids = []
    for patient in ids:
        response = client.post("/api/v1/interpretations", json=cbc(patient), headers={"X-Request-ID": f"r-{patient}"})
        request_ids.append(response.headers["X-Request-ID"])
    client.get("/api/v1/patients/MRN-A2/results")
    referral = client.get("/api/v1/referrals?patient=MRN-A3").get_json()["items"][0]["id"]
    client.patch(f"/api/v1/referrals/{referral}", json={"status": "acknowledged"})
    return ids, request_ids


#: The resource of the rows that record a read of the trail itself (issue 10 item 9): each call of `items` adds one.
OWN_READS = "GET /api/v1/audit audit trail"


def items(client, query: str = "") -> list[dict]:
    """The page's rows, leaving out the rows that record earlier reads of the trail
    (tests/middleware/test_audit_trail.py checks those)."""
    response = client.get(URL + query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [row for row in response.get_json()["items"] if row["resource"] != OWN_READS]


def test_an_admin_reads_the_trail_newest_first(app, client, trail):
    rows = items(client)
    assert [(row["action"], row["patient_id"]) for row in rows] == [
        ("update", "MRN-A3"),
        ("read", "MRN-A3"),
        ("read", "MRN-A2"),
        ("create", "MRN-A3"),
        ("create", "MRN-A2"),
        ("create", "MRN-A1"),
    ]
    first = rows[-1]
    assert set(first) == {
        "id",
        "at",
        "actor_type",
        "actor",
        "action",
        "patient_id",
        "resource",
        "status",
        "remote_addr",
        "request_id",
    }
    assert first["actor_type"] == "api_key" and first["actor"] == key_name(app)
    assert first["resource"] == "POST /api/v1/interpretations" and first["status"] == 200
    assert first["request_id"] == "r-MRN-A1" and first["remote_addr"] == "127.0.0.1"
    assert datetime.fromisoformat(first["at"]).tzinfo is not None


def test_filters(app, client, trail):
    assert {row["action"] for row in items(client, "?patient=MRN-A3")} == {"create", "read", "update"}
    assert [row["patient_id"] for row in items(client, "?action=create&patient=MRN-A1")] == ["MRN-A1"]
    assert len(items(client, f"?actor={key_name(app)}")) == 6
    assert len(items(client, f"?actor=api_key:{key_name(app)}")) == 6
    assert items(client, f"?actor=user:{key_name(app)}") == []
    assert [row["patient_id"] for row in items(client, "?request_id=r-MRN-A2")] == ["MRN-A2"]
    assert items(client, "?patient=nobody") == []


def test_from_and_to_take_days_and_moments(app, client, trail):
    old = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    with database(app).session() as session:  # move the first row to a known day
        session.execute(update(AuditEvent).where(AuditEvent.request_id == "r-MRN-A1").values(at=old))
    assert [row["patient_id"] for row in items(client, "?to=2026-01-15")] == ["MRN-A1"]  # the whole day
    assert items(client, "?to=2026-01-14") == []
    assert [row["patient_id"] for row in items(client, "?from=2026-01-15T11:59:59Z&to=2026-01-15T12:00:01Z")] == [
        "MRN-A1"
    ]
    assert items(client, "?from=2026-01-15T12:00:01%2B00:00&to=2026-01-16") == []
    today = datetime.now(UTC).date()
    assert len(items(client, f"?from={today - timedelta(days=1)}")) == 5


def test_pages_and_their_links_keep_the_filters(client, trail):
    page = client.get(URL + "?per_page=2&page=2&action=create").get_json()
    assert (page["page"], page["per_page"], page["total"]) == (2, 2, 3)
    assert [row["patient_id"] for row in page["items"]] == ["MRN-A1"]
    assert page["links"]["next"] is None
    assert "action=create" in page["links"]["prev"] and "page=1" in page["links"]["prev"]
    assert client.get(URL + "?page=99999999999").get_json()["items"] == []


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("?per_page=501", "per_page"),
        ("?page=0", "page"),
        ("?from=yesterday", "from"),
        ("?to=2026-13-01", "to"),
        ("?from=2026-02-01&to=2026-01-01", "to"),
        ("?action=" + "x" * 21, "action"),
        ("?patient=" + "p" * 201, "patient"),
    ],
)
def test_bad_parameters_are_422_naming_them(client, query, parameter):
    body = assert_problem(client.get(URL + query), 422)
    assert list(body["errors"]) == [parameter]


def test_only_administrators_may_read_it(app, anonymous_client, trail):
    assert_problem(anonymous_client.get(URL), 401)
    for scopes in (("read",), ("interpret",), ("read", "interpret")):
        body = assert_problem(bearer_client(app, new_key(app, *scopes)).get(URL), 403)
        assert "admin" in body["detail"]
    assert bearer_client(app, new_key(app, "admin")).get(URL).status_code == 200


def test_it_is_in_the_openapi_document_for_admins(client):
    operation = client.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/audit"]["get"]
    assert operation["security"] == [{"bearerAuth": []}] and operation["x-required-scopes"] == ["admin"]
    parameters = {parameter["name"] for parameter in operation["parameters"]}
    assert {"patient", "actor", "action", "request_id", "from", "to", "page", "per_page"} <= parameters
    assert {"200", "401", "403", "422"} <= set(operation["responses"])
