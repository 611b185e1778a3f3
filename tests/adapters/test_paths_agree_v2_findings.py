"""clinical-rules v2 §4 erythrocytosis and §6 `not_applicable` read the same on FHIR and HL7 v2 as on JSON
(issue 13: "the same CBCs through JSON, CSV, FHIR and HL7 v2 agree").

Fixtures: the Synthea bundle of the issue (female, Hb 16.3 H, Hct 49.4 H, RBC 5.72 H) and the nHapi ORU
(female, WBC 20.0 with the lab's range 4.5-10.0, platelets 45) with its haematocrit set to 57.
"""

from __future__ import annotations

import json
from datetime import UTC

from labservice.adapters.cbc_schema import CBC_LIST_SCHEMA
from labservice.adapters.fhir.reader import read_fhir
from labservice.adapters.hl7v2.codes import load_code_map
from labservice.adapters.hl7v2.reader import ReadSettings, read_message
from labservice.adapters.hl7v2.text import decode, normalise
from labservice.core.ruleset import default_ruleset
from labservice.services.interpret import interpret_documents
from tests.adapters.hl7v2.samples import NHAPI_ORU, raw, replace_field
from tests.shared_data import FIXTURES

SYNTHEA = FIXTURES / "synthea-r4-bundles" / "Jordan_Cruickshank_5de38439-d320-46d3-854d-3c098e88de4c.json"


def answers(documents: list[dict]) -> list[dict]:
    return interpret_documents(CBC_LIST_SCHEMA.load(documents), default_ruleset(), indexed=True)


def as_plain_json(document: dict) -> dict:
    """The same CBC as a JSON client would send it: values and units only (no source blocks)."""
    return {
        "patient": {k: v for k, v in document.get("patient", {}).items() if k in ("sex", "birth_date")},
        "collected_at": document.get("collected_at"),
        "results": document["results"],
    }


def test_synthea_female_erythrocytosis_over_fhir_agrees_with_json() -> None:
    read = read_fhir(json.loads(SYNTHEA.read_text(encoding="utf-8")))
    documents = [cbc.document for cbc in read.cbcs]
    via_fhir = answers(documents)
    via_json = answers([as_plain_json(d) for d in documents])
    hits = [a for a in via_fhir if 49.3 < (a["analytes"].get("hematocrit", {}).get("value") or 0) < 49.5]
    assert hits, "the issue's CBC (Hct 49.4 H) is in the fixture"
    f = next(f for f in hits[0]["findings"] if f["code"] == "erythrocytosis")
    assert f["severity"] == "raised_hematocrit"  # §4 v2: women > 48 %, not > 56 %
    assert "No abnormal finding" not in hits[0]["summary"]
    for a, b in zip(via_fhir, via_json, strict=True):
        assert [f["code"] for f in a["findings"]] == [f["code"] for f in b["findings"]]
        assert a["urgency"] == b["urgency"]


def test_hl7_absolute_erythrocytosis_and_wbc_above_range_agree_with_json() -> None:
    message = normalise(decode(raw(NHAPI_ORU)))
    message = replace_field(message, ("OBX", 7), 5, "57.0")  # OBX 4 NM HCT (the 7th OBX segment)
    rs = default_ruleset()
    read = read_message(message, ReadSettings(rs, load_code_map(rs), UTC, "UTC"))
    [cbc] = read.cbcs
    assert cbc.document["results"]["hematocrit"]["value"] == 57.0
    [via_hl7] = answers([cbc.document])
    [via_json] = answers([as_plain_json(cbc.document)])
    for answer in (via_hl7, via_json):
        f = next(f for f in answer["findings"] if f["code"] == "erythrocytosis")
        assert f["severity"] == "absolute_erythrocytosis"  # §4 v2: women > 56 %
        assert "absolute_erythrocytosis" in answer["urgency_reasons"]  # §9 v2 soon
        # §6 v2: WBC 20.0 above the laboratory's upper limit 10.0: not_applicable, no caveat
        aa = answer["aplastic_anemia"]
        assert aa["assessment"] == "not_applicable"
        assert aa["not_applicable_reasons"] == ["wbc_above_range"]
        assert aa["caveat"] is None
    assert [f["code"] for f in via_hl7["findings"]] == [f["code"] for f in via_json["findings"]]
    assert via_hl7["urgency"] == via_json["urgency"]
