"""The film and context inputs (clinical-rules §8, §10, §11, §12 v2) read the same on every input path: JSON, CSV
wide and long (column names and long-file items), FHIR R4 (Observations coded as reference_ranges/context_codes.csv
lists, MedicationRequest / MedicationStatement), HL7 v2 (OBX with the same LOINC codes, RXA) and CDS Hooks
(the same FHIR resources as prefetch), so the same CBC with the same context gets the same findings.

Expected values come from the rules, quoted per case:

- §11 v2 (myelosuppressive therapy): pancytopenia with neutrophils 0.1, platelets 14, WBC 0.3 and Hb 8.0 in a man
  of 60. With the therapy stated: the aplastic-anaemia assessment is `not_applicable`, the critical neutrophils,
  platelets and WBC are a possible expected nadir asking for `urgent` rather than `immediate`, so the urgency is
  `urgent` (pancytopenia is `urgent` too, §9). Without it: a new critical value is `immediate` (§3, §9) and two
  Camitta criteria with neutrophils < 0.2 make the blood-count criteria `very_severe` (§6).
- §10 v2 (PLASMIC): platelets 20, Hb 8.0, MCV 85 and schistocytes present make the thrombotic-microangiopathy
  pattern; PLASMIC points: platelets < 30, haemolysis (haptoglobin undetectable), MCV < 90, INR 1.1 < 1.5,
  creatinine 1.2 < 2.0 met; active cancer and transplant not stated, so not assessed and no band: 5 points.
- §8 (platelet clumps): "clumps reported by the lab always suggest" possible pseudothrombocytopenia; "absent" does
  not (and with no skin examination sent, the isolated-count reason does not apply).
- §12 v2 (heparin): a heparin start reaches the answer's `hit_4ts` block; a CBC that is not stored has its items
  not assessed, the start echoed.

The FHIR and HL7 v2 messages are shaped as the fixtures are (fixtures/synthea-r4-bundles: the MedicationRequest
shape of Jordan_Cruickshank's heparin order and of the FOLFOX oxaliplatin orders, RxNorm codes as Synthea writes
them; Synthea data is Apache-2.0, see ../shared/fixtures/README.md).
"""

from __future__ import annotations

import io
import json
from datetime import UTC
from typing import Any

import pytest

from labservice.adapters.cbc_schema import CBC_LIST_SCHEMA, load_read_documents
from labservice.adapters.cdshooks.fhir_client import FhirAccess
from labservice.adapters.cdshooks.request import parse_hook_request
from labservice.adapters.cdshooks.service import CBC_REVIEW
from labservice.adapters.fhir.reader import read_fhir
from labservice.adapters.hl7v2.codes import load_code_map
from labservice.adapters.hl7v2.reader import ReadSettings
from labservice.batch import BatchOptions, run_batch
from labservice.core.ruleset import default_ruleset
from labservice.services.cds_review import review
from labservice.services.hl7v2_receive import receive_message
from labservice.services.interpret import interpret_documents
from tests.adapters.cdshooks.build import hook_call
from tests.adapters.fhir.build import bundle, observation, report

RS = default_ruleset()
HL7_SETTINGS = ReadSettings(RS, load_code_map(RS), UTC, "UTC")
COLLECTED = "2026-11-20T08:30:00Z"
HL7_COLLECTED = "20261120083000"
PATIENT_JSON = {"sex": "male", "age_years": 60}
SUBJECT = {"reference": "Patient/p1"}
FHIR_PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1966-11-01"}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"

#: analyte -> (LOINC, UCUM unit, CSV header) as the senders write them (clinical-rules §1).
CODES = {
    "platelets": ("777-3", "10*3/uL", "PLT"),
    "wbc": ("6690-2", "10*3/uL", "WBC"),
    "hemoglobin": ("718-7", "g/dL", "HGB"),
    "neutrophils": ("751-8", "10*3/uL", "NEUT#"),
    "mcv": ("787-2", "fL", "MCV"),
}
PANCYTOPENIA = {"wbc": 0.3, "platelets": 14.0, "hemoglobin": 8.0, "neutrophils": 0.1}
TMA = {"wbc": 6.0, "platelets": 20.0, "hemoglobin": 8.0, "mcv": 85.0}
ISOLATED = {"wbc": 6.0, "platelets": 90.0, "hemoglobin": 14.0}

#: The context of each case in the contract's vocabulary (api-contract `film` and `context`).
CASES: dict[str, tuple[dict[str, float], dict[str, Any], dict[str, Any]]] = {
    "myelosuppressive": (PANCYTOPENIA, {}, {"myelosuppressive_therapy": True}),
    "no_context": (PANCYTOPENIA, {}, {}),
    "plasmic": (
        TMA,
        {"schistocytes": "present"},
        {"inr": 1.1, "creatinine_mg_dl": 1.2, "haptoglobin_undetectable": True},
    ),
    "clumps": (ISOLATED, {"platelet_clumps": True}, {}),
    "no_clumps": (ISOLATED, {"platelet_clumps": False}, {}),
    "heparin": (ISOLATED, {}, {"heparin_started_at": "2026-11-14T09:00:00+00:00"}),
}
EXPECTED = {  # (urgency, aplastic assessment, codes that must be found, codes that must not)
    "myelosuppressive": ("urgent", "not_applicable", {"critical_value", "pancytopenia"}, set()),
    "no_context": ("immediate", "very_severe", {"critical_value", "pancytopenia"}, set()),
    "plasmic": ("immediate", None, {"thrombotic_microangiopathy_pattern"}, set()),
    "clumps": (None, None, {"possible_pseudothrombocytopenia", "thrombocytopenia"}, set()),
    "no_clumps": (None, None, {"thrombocytopenia"}, {"possible_pseudothrombocytopenia"}),
    "heparin": (None, None, {"thrombocytopenia"}, set()),
}


# --- FHIR resources as an EHR sends them ---------------------------------------------------------------------------


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def fhir_context(film: dict[str, Any], context: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """(Observations of the CBC's report, medication records) carrying the film and context."""
    members: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    if "schistocytes" in film:
        members.append(observation("schisto", "800-3", valueCodeableConcept={"text": film["schistocytes"]}))
    if "platelet_clumps" in film:  # LOINC 7796-6, answered from the presence answer list (LA9633-4 / LA9634-2)
        answer = ("LA9633-4", "Present") if film["platelet_clumps"] else ("LA9634-2", "Absent")
        members.append(observation("clumps", "7796-6", valueCodeableConcept=_concept("http://loinc.org", *answer)))
    if "inr" in context:
        members.append(observation("inr", "6301-6", context["inr"], "{INR}"))
    if "creatinine_mg_dl" in context:
        members.append(observation("creat", "2160-0", context["creatinine_mg_dl"], "mg/dL"))
    if context.get("haptoglobin_undetectable"):
        haptoglobin = observation("hapto", "4542-7", 10, "mg/dL")
        haptoglobin["valueQuantity"]["comparator"] = "<"  # below the detection limit
        members.append(haptoglobin)
    if context.get("myelosuppressive_therapy"):  # as Synthea writes a FOLFOX order, 19 days before the CBC
        records.append(
            {
                "resourceType": "MedicationRequest",
                "id": "oxaliplatin",
                "status": "active",
                "intent": "order",
                "subject": SUBJECT,
                "authoredOn": "2026-11-01T10:00:00+00:00",
                "medicationCodeableConcept": _concept(RXNORM, "1736776", "10 ML oxaliplatin 5 MG/ML Injection"),
            }
        )
    if "heparin_started_at" in context:
        records.append(
            {
                "resourceType": "MedicationStatement",
                "id": "enoxaparin",
                "status": "active",
                "subject": SUBJECT,
                "effectivePeriod": {"start": context["heparin_started_at"]},
                "medicationCodeableConcept": _concept(ATC, "B01AB05", "enoxaparin"),
            }
        )
    return members, records


def by_json(counts: dict[str, float], film: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "patient": PATIENT_JSON,
        "collected_at": COLLECTED,
        "results": {k: {"value": v, "unit": CODES[k][1]} for k, v in counts.items()},
    }
    if film:
        doc["film"] = film
    if context:
        doc["context"] = context
    return interpret_documents(CBC_LIST_SCHEMA.load([doc]), RS, indexed=True)[0]


def by_fhir(counts: dict[str, float], film: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    members, records = fhir_context(film, context)
    members = [*(observation(k, CODES[k][0], v, CODES[k][1]) for k, v in counts.items()), *members]
    members = [{**o, "subject": SUBJECT} for o in members]
    cbc_report = report("r1", [f"Observation/{o['id']}" for o in members], effectiveDateTime=COLLECTED, subject=SUBJECT)
    read = read_fhir(bundle(FHIR_PATIENT, cbc_report, *members, *records), RS)
    assert len(read.cbcs) == 1 and not read.unused, read.unused
    return interpret_documents(load_read_documents([read.cbcs[0].document]), RS, indexed=True)[0]


def by_hl7(counts: dict[str, float], film: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    segments = [
        "MSH|^~\\&|LAB|HOSP|LABSERVICE|HOSP|20261120083000||ORU^R01|MSG1|P|2.5.1",
        "PID|1||MRN1^^^HOSP^MR||DOE^JOHN||19661101|M",
    ]
    if context.get("myelosuppressive_therapy"):
        segments.append("RXA|0|1|20261101100000|20261101120000|1736776^10 ML oxaliplatin 5 MG/ML Injection^RXNORM|1|mg")
    if "heparin_started_at" in context:
        segments.append("RXA|0|1|20261114090000+0000||B01AB05^enoxaparin^WC|40|mg")
    segments.append(f"OBR|1|||58410-2^CBC^LN|||{HL7_COLLECTED}")
    obx = [f"NM|{CODES[k][0]}^{k}^LN||{v:g}|{CODES[k][1]}" for k, v in counts.items()]
    if "schistocytes" in film:
        obx.append(f"ST|800-3^Schistocytes^LN||{film['schistocytes']}|")
    if "platelet_clumps" in film:
        answer = "LA9633-4^Present^LN" if film["platelet_clumps"] else "LA9634-2^Absent^LN"
        obx.append(f"CWE|7796-6^Platelet clumps^LN||{answer}|")
    if "inr" in context:
        obx.append(f"NM|6301-6^INR^LN||{context['inr']:g}|{{INR}}")
    if "creatinine_mg_dl" in context:
        obx.append(f"NM|2160-0^Creatinine^LN||{context['creatinine_mg_dl']:g}|mg/dL")
    if context.get("haptoglobin_undetectable"):
        obx.append("SN|4542-7^Haptoglobin^LN||<^10|mg/dL")
    segments += [f"OBX|{k}|{text}|||||F" for k, text in enumerate(obx, start=1)]
    outcome = receive_message("\r".join(segments).encode(), HL7_SETTINGS)
    assert outcome.answer is not None, outcome.problem
    assert not outcome.answer["unused"], outcome.answer["unused"]
    return outcome.answer["interpretations"][0]


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"http://127.0.0.1/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def by_cds_hooks(counts: dict[str, float], film: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """A patient-view call whose prefetch holds loose Observations (a FHIR server's search answer) and the
    patient's medication records under the medicationRequests / medicationStatements keys."""
    members, records = fhir_context(film, context)
    observations = [*(observation(k, CODES[k][0], v, CODES[k][1]) for k, v in counts.items()), *members]
    observations = [{**o, "subject": SUBJECT, "effectiveDateTime": COLLECTED} for o in observations]
    prefetch = {
        "patient": FHIR_PATIENT,
        "cbcObservations": _searchset(observations),
        "medicationRequests": _searchset([r for r in records if r["resourceType"] == "MedicationRequest"]),
        "medicationStatements": _searchset([r for r in records if r["resourceType"] == "MedicationStatement"]),
    }
    kept: list[dict[str, Any]] = []

    def interpret(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answers = interpret_documents(load_read_documents(docs), RS, indexed=True)
        kept.extend(answers)
        return answers

    cards = review(
        parse_hook_request(hook_call("p1", prefetch), CBC_REVIEW),
        ruleset=RS,
        interpret=interpret,
        base_url="https://labservice.example.org",
        access=FhirAccess(timeout=1),
    )["cards"]
    assert len(cards) == 1 and len(kept) == 1
    return kept[0]


#: CSV column names (adapters/csv_input/headers.py) for the film and context fields.
CSV_COLUMNS = {
    "schistocytes": "Schistocytes",
    "platelet_clumps": "Platelet clumps",
    "inr": "INR",
    "creatinine_mg_dl": "Creatinine (mg/dL)",
    "haptoglobin_undetectable": "Haptoglobin undetectable",
    "myelosuppressive_therapy": "Myelosuppressive therapy",
    "heparin_started_at": "Heparin started at",
}


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:g}" if isinstance(value, float) else str(value)


def by_csv(counts: dict[str, float], film: dict[str, Any], context: dict[str, Any], *, long: bool) -> dict[str, Any]:
    given = {**film, **context}
    if long:  # one row per result; the context on the result rows (a CBC takes the first value given)
        lines = ["sample_id,sex,age_years,collected_at,item,value,unit"]
        lines += [f"S1,M,60,{COLLECTED},{CODES[k][0]},{v:g},{CODES[k][1]}" for k, v in counts.items()]
        film_items = {
            k: v
            for k, v in given.items()
            if k not in ("platelet_clumps", "myelosuppressive_therapy", "heparin_started_at")
        }
        lines += [f"S1,M,60,{COLLECTED},{CSV_COLUMNS[k]},{_cell(v)}," for k, v in film_items.items()]
        extra = [k for k in given if k not in film_items]  # context columns beside the result columns
        if extra:
            lines[0] = ",".join([lines[0], *(CSV_COLUMNS[k] for k in extra)])
            lines[1:] = [",".join([line, *(_cell(given[k]) for k in extra)]) for line in lines[1:]]
        options = BatchOptions(shape="long")
    else:
        header = [
            "sample_id",
            "sex",
            "age_years",
            "collected_at",
            *(CODES[k][2] for k in counts),
            *(CSV_COLUMNS[k] for k in given),
        ]
        row = ["S1", "M", "60", COLLECTED, *(f"{v:g}" for v in counts.values()), *(_cell(v) for v in given.values())]
        lines = [",".join(header), ",".join(row)]
        options = BatchOptions()
    out = io.StringIO()
    run_batch(io.BytesIO(("\n".join(lines) + "\n").encode()), json_out=out, options=options)
    (row,) = json.loads(out.getvalue())
    assert row["error"] is None, row["error"]
    return row


ANSWER_PATHS = {"json": by_json, "fhir": by_fhir, "hl7v2": by_hl7, "cds_hooks": by_cds_hooks}


@pytest.mark.parametrize("case", list(CASES))
def test_the_same_cbc_and_context_give_the_rules_answer_on_every_path(case: str) -> None:
    counts, film, context = CASES[case]
    urgency, aplastic, found, absent = EXPECTED[case]
    answers = {name: read(counts, film, context) for name, read in ANSWER_PATHS.items()}
    for name, answer in answers.items():
        codes = {f["code"] for f in answer["findings"]}
        assert found <= codes and not absent & codes, (name, codes)
        if urgency:
            assert answer["urgency"] == urgency, (name, answer["urgency"], answer["urgency_reasons"])
        if aplastic:
            assert answer["aplastic_anemia"]["assessment"] == aplastic, name
    first = answers["json"]
    for name, answer in answers.items():  # path against path: everything the context decides is the same
        assert [f["code"] for f in answer["findings"]] == [f["code"] for f in first["findings"]], name
        assert [f["detail"] for f in answer["findings"]] == [f["detail"] for f in first["findings"]], name
        assert answer["urgency"] == first["urgency"], name
        assert answer["urgency_reasons"] == first["urgency_reasons"], name
        assert answer["aplastic_anemia"]["assessment"] == first["aplastic_anemia"]["assessment"], name
        assert answer.get("plasmic") == first.get("plasmic"), name
        assert answer.get("film") == first.get("film"), name
        assert answer.get("hit_4ts") == first.get("hit_4ts"), name
    for long in (False, True):
        row = by_csv(counts, film, context, long=long)
        assert row["findings"] == [f["code"] for f in first["findings"]], (long, row["findings"])
        assert row["urgency"] == first["urgency"], long
        assert row["aplastic_anemia"] == first["aplastic_anemia"]["assessment"], long


def test_the_plasmic_points_come_from_the_fhir_and_hl7_laboratory_results() -> None:
    """§10 v2: platelets < 30, haemolysis (haptoglobin undetectable), MCV < 90, INR < 1.5, creatinine < 2.0 met
    (5 points); active cancer and transplant not stated: not assessed, so no risk band."""
    counts, film, context = CASES["plasmic"]
    for read in (by_fhir, by_hl7, by_cds_hooks):
        plasmic = read(counts, film, context)["plasmic"]
        assert plasmic["points"] == 5, plasmic
        assert {i["item"] for i in plasmic["not_assessed"]} == {"no_active_cancer", "no_transplant"}
        assert plasmic["risk"] is None
        assert plasmic["items"]["inr"] == plasmic["items"]["creatinine"] == plasmic["items"]["hemolysis"] == "met"


def test_a_heparin_start_reaches_the_4ts_block_on_every_path() -> None:
    """§12 v2: the heparin start is echoed; not stored here, so the 4Ts items are not assessed."""
    counts, film, context = CASES["heparin"]
    for read in ANSWER_PATHS.values():
        block = read(counts, film, context)["hit_4ts"]
        assert block["heparin_started_at"] == "2026-11-14T09:00:00+00:00"
        assert block["assessed"] is False
