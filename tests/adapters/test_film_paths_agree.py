"""The differential and the film (clinical-rules §10 v2) read the same on every input path: JSON, CSV wide,
CSV long, FHIR R4, HL7 v2 (the reader MLLP uses too) and CDS Hooks (prefetched loose Observations) give the
same CBC the same answer (findings, urgency, aplastic assessment, film).

The CBCs: (a) the issue's MIMIC example (WBC 35.9, platelets 14, Hb 8.9, 17 % blasts, schistocytes
OCCASIONAL): blasts_reported and the thrombotic-microangiopathy pattern, aplastic not_applicable;
(b) platelets 90, Hb 9.0, schistocytes 2+ (= many) with NRBC 3 per 100 WBC and bands, myelocytes,
metamyelocytes and promyelocytes: the pattern, no blasts; (c) the same counts with Hb 14.0: schistocytes
described only. LOINC codes as analytes.csv cites them (26446-5 blasts, 26508-2 bands, 26524-9
promyelocytes, 26498-6 myelocytes, 28541-1 metamyelocytes, 58413-6 NRBC/100 WBC, 800-3 schistocytes).
"""

from __future__ import annotations

import io
import json
from datetime import UTC
from typing import Any

import pytest

from labservice.adapters.cbc_schema import CBC_LIST_SCHEMA, CBC_SCHEMA
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
from tests.adapters.cdshooks.build import hook_call, searchset
from tests.adapters.fhir.build import bundle, observation, report

RS = default_ruleset()
HL7_SETTINGS = ReadSettings(RS, load_code_map(RS), UTC, "UTC")

#: analyte -> (LOINC, UCUM unit) as the FHIR and HL7 v2 senders write them.
CODES = {
    "platelets": ("777-3", "10*3/uL"),
    "wbc": ("6690-2", "10*3/uL"),
    "hemoglobin": ("718-7", "g/dL"),
    "blasts_percent": ("26446-5", "%"),
    "bands_percent": ("26508-2", "%"),
    "promyelocytes_percent": ("26524-9", "%"),
    "myelocytes_percent": ("26498-6", "%"),
    "metamyelocytes_percent": ("28541-1", "%"),
    "nrbc_per_100_wbc": ("58413-6", "/100{WBCs}"),
}
SCHISTOCYTES_LOINC = "800-3"

CASES = {
    "mimic_blasts": ({"wbc": 35.9, "platelets": 14.0, "hemoglobin": 8.9, "blasts_percent": 17.0}, "OCCASIONAL"),
    "tma_left_shift": (
        {
            "wbc": 6.0,
            "platelets": 90.0,
            "hemoglobin": 9.0,
            "bands_percent": 6.0,
            "promyelocytes_percent": 1.0,
            "myelocytes_percent": 2.0,
            "metamyelocytes_percent": 3.0,
            "nrbc_per_100_wbc": 3.0,
        },
        "2+",
    ),
    "schistocytes_only": ({"wbc": 6.0, "platelets": 250.0, "hemoglobin": 14.0}, "1+"),
}
EXPECTED = {  # clinical-rules §10 v2, §6 v2 (blasts -> not_applicable), §9 v2 (immediate)
    "mimic_blasts": ({"blasts_reported", "thrombotic_microangiopathy_pattern"}, "immediate", "present"),
    "tma_left_shift": ({"thrombotic_microangiopathy_pattern"}, "immediate", "many"),
    "schistocytes_only": (set(), None, "present"),
}
FILM_CODES = {"blasts_reported", "thrombotic_microangiopathy_pattern"}
PATIENT = {"sex": "male", "age_years": 60}


def by_json(counts: dict[str, float], grade: str) -> dict[str, Any]:
    doc = {
        "patient": PATIENT,
        "results": {k: {"value": v, "unit": CODES[k][1]} for k, v in counts.items()},
        "film": {"schistocytes": {"OCCASIONAL": "present", "1+": "present", "2+": "many"}[grade]},
    }
    return interpret_documents([CBC_SCHEMA.load(doc)])[0]


def by_fhir(counts: dict[str, float], grade: str) -> dict[str, Any]:
    members = [observation(name, CODES[name][0], value, CODES[name][1]) for name, value in counts.items()]
    film = observation("schisto", SCHISTOCYTES_LOINC, valueCodeableConcept={"text": grade})
    subject = {"subject": {"reference": "Patient/p1"}}
    resources = [{**o, **subject} for o in (*members, film)]
    cbc_report = report(
        "r1", [f"Observation/{o['id']}" for o in resources], effectiveDateTime="2026-11-20T08:30:00Z", **subject
    )
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1966-11-20"}
    read = read_fhir(bundle(cbc_report, patient, *resources))
    assert len(read.cbcs) == 1, read.unused
    return interpret_documents([CBC_SCHEMA.load(read.cbcs[0].document)])[0]


def by_hl7(counts: dict[str, float], grade: str) -> dict[str, Any]:
    segments = [
        "MSH|^~\\&|LAB|HOSP|LABSERVICE|HOSP|20261120083000||ORU^R01|MSG1|P|2.5.1",
        "PID|1||MRN1^^^HOSP^MR||DOE^JOHN||19661120|M",
        "OBR|1|||57021-8^CBC with differential^LN|||20261120083000",
    ]
    for k, (name, value) in enumerate(counts.items(), start=1):
        code, unit = CODES[name]
        segments.append(f"OBX|{k}|NM|{code}^{name}^LN||{value:g}|{unit}|||||F")
    segments.append(f"OBX|{len(counts) + 1}|ST|{SCHISTOCYTES_LOINC}^Schistocytes^LN||{grade}||||||F")
    outcome = receive_message("\r".join(segments).encode(), HL7_SETTINGS)
    assert outcome.answer is not None, outcome.problem
    (answer,) = outcome.answer["interpretations"]
    return answer


def by_csv(counts: dict[str, float], grade: str, *, long: bool) -> dict[str, Any]:
    if long:
        lines = ["sample_id,sex,age_years,item,value,unit"]
        lines += [f"S1,M,60,{CODES[name][0]},{value:g},{CODES[name][1]}" for name, value in counts.items()]
        lines.append(f"S1,M,60,{SCHISTOCYTES_LOINC},{grade},")
        options = BatchOptions(shape="long")
    else:
        header = ["sample_id", "sex", "age_years", *counts, "schistocytes"]
        lines = [",".join(header), ",".join(["S1", "M", "60", *(f"{v:g}" for v in counts.values()), grade])]
        options = BatchOptions()
    out = io.StringIO()
    run_batch(io.BytesIO(("\n".join(lines) + "\n").encode()), json_out=out, options=options)
    (row,) = json.loads(out.getvalue())
    assert row["error"] is None, row["error"]
    return row


def by_cds_hooks(counts: dict[str, float], grade: str) -> dict[str, Any]:
    """A patient-view call whose prefetch holds the results as loose Observations (a FHIR server's search
    answer); the answer the card is made from is kept."""
    observations = [
        {
            **observation(name, CODES[name][0], value, CODES[name][1]),
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-11-20T08:30:00Z",
        }
        for name, value in counts.items()
    ]
    observations.append(
        {
            **observation("schisto", SCHISTOCYTES_LOINC, valueString=grade),
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-11-20T08:30:00Z",
        }
    )
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1966-11-20"}
    kept: list[dict[str, Any]] = []

    def interpret(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answers = interpret_documents(CBC_LIST_SCHEMA.load(docs), ruleset=RS, indexed=True)
        kept.extend(answers)
        return answers

    body = hook_call("p1", {"patient": patient, "cbcObservations": searchset(observations)})
    cards = review(
        parse_hook_request(body, CBC_REVIEW),
        ruleset=RS,
        interpret=interpret,
        base_url="https://labservice.example.org",
        access=FhirAccess(timeout=1),
    )["cards"]
    assert len(cards) == 1 and len(kept) == 1
    return kept[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_path_gives_the_same_answer(case: str) -> None:
    counts, grade = CASES[case]
    codes, urgency, schistocytes = EXPECTED[case]
    answers = {
        "json": by_json(counts, grade),
        "fhir": by_fhir(counts, grade),
        "hl7v2": by_hl7(counts, grade),
        "cds_hooks": by_cds_hooks(counts, grade),
    }
    for name, answer in answers.items():
        found = {f["code"] for f in answer["findings"]}
        assert found & FILM_CODES == codes, name
        if urgency:
            assert answer["urgency"] == urgency, name
        assert answer["film"]["schistocytes"] == schistocytes, name
        for analyte in counts:
            assert answer["analytes"][analyte]["value"] == counts[analyte], (name, analyte)
    first = answers["json"]
    for name, answer in answers.items():
        assert [f["code"] for f in answer["findings"]] == [f["code"] for f in first["findings"]], name
        assert [f["detail"] for f in answer["findings"]] == [f["detail"] for f in first["findings"]], name
        assert answer["urgency"] == first["urgency"], name
        assert answer["aplastic_anemia"]["assessment"] == first["aplastic_anemia"]["assessment"], name
        assert answer.get("plasmic") == first.get("plasmic"), name
        assert answer["film"] == first["film"], name
    for long in (False, True):
        row = by_csv(counts, grade, long=long)
        assert row["findings"] == [f["code"] for f in first["findings"]], long
        assert row["urgency"] == first["urgency"], long
        assert row["aplastic_anemia"] == first["aplastic_anemia"]["assessment"], long
        assert row["film"] == f"schistocytes {schistocytes}", long


def test_blasts_make_the_aplastic_assessment_not_applicable_on_every_path() -> None:
    counts, grade = CASES["mimic_blasts"]
    assert by_fhir(counts, grade)["aplastic_anemia"]["assessment"] == "not_applicable"
    assert by_hl7(counts, grade)["aplastic_anemia"]["assessment"] == "not_applicable"
    assert by_csv(counts, grade, long=True)["aplastic_anemia"] == "not_applicable"


def test_the_pattern_not_assessed_without_a_film_is_listed_on_json_and_csv_alike() -> None:
    """clinical-rules §10 v2 with "missing data is not assessed": platelets 90 and Hb 9.0 without a film."""
    counts = {"wbc": 6.0, "platelets": 90.0, "hemoglobin": 9.0}
    doc = {"patient": PATIENT, "results": {k: {"value": v, "unit": CODES[k][1]} for k, v in counts.items()}}
    answer = interpret_documents([CBC_SCHEMA.load(doc)])[0]
    assert "thrombotic_microangiopathy_pattern" in [n["code"] for n in answer["not_assessed"]]
    lines = ["sample_id,sex,age_years,wbc,platelets,hemoglobin", "S1,M,60,6,90,9.0"]
    out = io.StringIO()
    run_batch(io.BytesIO(("\n".join(lines) + "\n").encode()), json_out=out, options=BatchOptions())
    (row,) = json.loads(out.getvalue())
    assert "thrombotic_microangiopathy_pattern" in row["not_assessed"]


def test_a_schistocyte_percentage_reads_the_same_on_every_path() -> None:
    """clinical-rules §10 v2: schistocytes 2.5 % (> 1 %) with platelets 90 and Hb 9.0 make the pattern; the
    percentage comes as JSON film.schistocytes_percent, a CSV column, FHIR valueQuantity in % and HL7 v2 NM
    with OBX-6 %."""
    counts = {"wbc": 6.0, "platelets": 90.0, "hemoglobin": 9.0}
    doc = {
        "patient": PATIENT,
        "results": {k: {"value": v, "unit": CODES[k][1]} for k, v in counts.items()},
        "film": {"schistocytes_percent": 2.5},
    }
    by_json_answer = interpret_documents([CBC_SCHEMA.load(doc)])[0]

    members = [observation(name, CODES[name][0], value, CODES[name][1]) for name, value in counts.items()]
    members.append(observation("schisto", SCHISTOCYTES_LOINC, 2.5, "%"))
    read = read_fhir(bundle(report("r1", [f"Observation/{o['id']}" for o in members]), *members))
    by_fhir_answer = interpret_documents([CBC_SCHEMA.load(read.cbcs[0].document)])[0]

    segments = [
        "MSH|^~\\&|LAB|HOSP|LABSERVICE|HOSP|20261120083000||ORU^R01|MSG1|P|2.5.1",
        "PID|1||MRN1^^^HOSP^MR||DOE^JOHN||19661120|M",
        "OBR|1|||58410-2^CBC^LN|||20261120083000",
    ]
    for k, (name, value) in enumerate(counts.items(), start=1):
        segments.append(f"OBX|{k}|NM|{CODES[name][0]}^{name}^LN||{value:g}|{CODES[name][1]}|||||F")
    segments.append(f"OBX|4|NM|{SCHISTOCYTES_LOINC}^Schistocytes^LN||2.5|%|||||F")
    outcome = receive_message("\r".join(segments).encode(), HL7_SETTINGS)
    assert outcome.answer is not None
    by_hl7_answer = outcome.answer["interpretations"][0]

    lines = ["sample_id,sex,age_years,wbc,platelets,hemoglobin,Schistocytes (%)", "S1,M,60,6,90,9.0,2.5"]
    out = io.StringIO()
    run_batch(io.BytesIO(("\n".join(lines) + "\n").encode()), json_out=out, options=BatchOptions())
    (row,) = json.loads(out.getvalue())

    for answer in (by_json_answer, by_fhir_answer, by_hl7_answer):
        assert "thrombotic_microangiopathy_pattern" in [f["code"] for f in answer["findings"]]
        assert answer["film"]["schistocytes_percent"] == 2.5
    assert "thrombotic_microangiopathy_pattern" in row["findings"]
    assert row["film"] == "schistocytes 2.5 %"
