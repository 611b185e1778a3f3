"""GET /api/v1/ruleset exposes the tables in use, each row with its source."""

from __future__ import annotations


def test_the_ruleset_document_lists_every_rule_with_its_source(client):
    response = client.get("/api/v1/ruleset")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["version"] == client.get("/healthz").get_json()["ruleset_version"]
    thresholds = {t["key"]: t for t in doc["thresholds"]}
    # clinical-rules §4: thrombocytopenia is platelets < 150, sources S1 and S2.
    assert thresholds["thrombocytopenia"]["operator"] == "<"
    assert thresholds["thrombocytopenia"]["value"] == 150
    assert thresholds["thrombocytopenia"]["sources"] == ["S1", "S2"]
    assert all(t["sources"] for t in doc["thresholds"])
    assert all(r["source"] for r in doc["reference_ranges"])
    assert {"5.0", "6.0"} <= {row["version"] for row in doc["ctcae"]}
    assert doc["sources"]["S12"].startswith("Killick SB")
    # §2: Duffy-null rows are listed apart from the general ranges.
    duffy = [r for r in doc["reference_ranges"] if r["table"] == "duffy_null"]
    assert {(r["analyte"], r["low"], r["high"]) for r in duffy} == {("neutrophils", 1.2, 5.4), ("wbc", 3.0, 9.7)}
