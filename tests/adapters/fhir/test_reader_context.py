"""The film and context of a CBC read from FHIR R4 (adapters/fhir/context.py; clinical-rules §8, §10-§12 v2).

Real-shaped input: the Synthea R4 bundles of ../shared/fixtures (Apache-2.0, smart-on-fhir/generated-sample-data;
see fixtures/README.md): Cleo Friesen's FOLFOX MedicationRequest (RxNorm 1736776 oxaliplatin, status active) and
Jordan Cruickshank's heparin MedicationRequest (RxNorm 314659, status stopped). Expected values are computed here
from the raw bundles and the rules (§11 v2: treatment in the last 6 weeks, an active order is still given; §12 v2:
the heparin start), never from the service's answers.
"""

from __future__ import annotations

import json
from datetime import datetime

from labservice.adapters.fhir.reader import read_fhir
from tests.adapters.cdshooks.build import SYNTHEA
from tests.adapters.fhir.build import bundle, observation, patient, report

SUBJECT = {"reference": "Patient/p"}
COLLECTED = "2026-11-20T08:30:00Z"


def _synthea(name: str) -> dict:
    return json.loads(next(SYNTHEA.glob(f"{name}_*.json")).read_text(encoding="utf-8"))


def _requests(resource: dict, code: str) -> list[dict]:
    return [
        e["resource"]
        for e in resource["entry"]
        if e["resource"]["resourceType"] == "MedicationRequest"
        and e["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == code
    ]


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_synthea_folfox_order_states_myelosuppressive_therapy_for_the_cbcs_after_it() -> None:
    resource = _synthea("Cleo_Friesen")
    [order] = _requests(resource, "1736776")  # "10 ML oxaliplatin 5 MG/ML Injection", status active
    assert order["status"] == "active"
    ordered = _moment(order["authoredOn"])
    read = read_fhir(resource)
    after = [cbc for cbc in read.cbcs if _moment(cbc.document["collected_at"]) >= ordered]
    before = [cbc for cbc in read.cbcs if _moment(cbc.document["collected_at"]) < ordered]
    assert after and before
    for cbc in after:  # an active order is still given at the collection (§11 v2)
        assert cbc.document["context"] == {"myelosuppressive_therapy": True}, cbc.document.get("context")
        assert cbc.locations["context.myelosuppressive_therapy"].endswith(f"(MedicationRequest/{order['id']})")
    for cbc in before:
        assert "context" not in cbc.document
    assert read.unused == []


def test_synthea_heparin_order_gives_the_heparin_start() -> None:
    resource = _synthea("Jordan_Cruickshank")
    [order] = _requests(resource, "314659")  # heparin sodium, porcine; status stopped
    started = _moment(order["authoredOn"])
    read = read_fhir(resource)
    for cbc in read.cbcs:
        context = cbc.document.get("context") or {}
        if _moment(cbc.document["collected_at"]) >= started:
            assert _moment(context["heparin_started_at"]) == started
        else:
            assert "heparin_started_at" not in context
    assert any("context" in cbc.document for cbc in read.cbcs)
    assert read.unused == []  # an order after a CBC is not about that CBC: counted as ignored, not unused


def _cbc_bundle(*extra: dict) -> dict:
    members = [observation("plt", "777-3", 90, "10*3/uL", subject=SUBJECT)]
    members += [r for r in extra if r["resourceType"] == "Observation"]
    others = [r for r in extra if r["resourceType"] != "Observation"]
    cbc_report = report("r", [f"Observation/{o['id']}" for o in members], subject=SUBJECT, effectiveDateTime=COLLECTED)
    return bundle(patient("p", gender="female", birth="1980-01-01"), cbc_report, *members, *others)


def test_a_record_entered_in_error_states_nothing_and_says_why() -> None:
    record = {
        "resourceType": "MedicationStatement",
        "id": "m",
        "status": "entered-in-error",
        "subject": SUBJECT,
        "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "L01XA03"}]},
        "effectiveDateTime": "2026-11-10T09:00:00Z",
    }
    read = read_fhir(_cbc_bundle(record))
    assert "context" not in read.cbcs[0].document
    assert [(u.id, u.reason) for u in read.unused] == [("m", "status entered-in-error: not given")]


def test_a_laboratory_result_in_another_unit_or_an_unclear_answer_is_listed_unused() -> None:
    creatinine = observation("creat", "2160-0", 106, "umol/L", subject=SUBJECT)  # the contract field is mg/dL
    clumps = observation("clumps", "7796-6", subject=SUBJECT, valueString="see comment")
    read = read_fhir(_cbc_bundle(creatinine, clumps))
    document = read.cbcs[0].document
    assert "context" not in document and "film" not in document
    assert {u.id: u.reason for u in read.unused} == {
        "creat": "creatinine_mg_dl: a value in 'umol/L', mg/dL expected",
        "clumps": "platelet_clumps: not a presence answer (present / absent, positive / negative, LA9633-4 / LA9634-2)",
    }


def test_platelet_clumps_and_plasmic_results_reach_the_document() -> None:
    clumps = observation("clumps", "7796-6", subject=SUBJECT, valueBoolean=True)
    inr = observation("inr", "6301-6", 1.4, "{INR}", subject=SUBJECT)
    bilirubin = observation("bili", "1971-1", 2.4, "mg/dL", subject=SUBJECT)
    read = read_fhir(_cbc_bundle(clumps, inr, bilirubin))
    document = read.cbcs[0].document
    assert document["film"] == {"platelet_clumps": True}
    assert document["context"] == {"inr": 1.4, "indirect_bilirubin_mg_dl": 2.4}
    assert read.unused == []
