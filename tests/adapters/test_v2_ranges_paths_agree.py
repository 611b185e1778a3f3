"""clinical-rules v2 §2, §3 and §8: the same CBC gets the same answer on every input path.

JSON (the schema, then the adapter), CSV wide and long (the batch), FHIR R4 (the reader, then the schema) and
HL7 v2 (the receive function the HTTP endpoint and the MLLP listener both call; CDS Hooks reads FHIR with the
same reader and validation). Expected values come from clinical-rules.md, cited per case, never from running
the code; each path must give them.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from marshmallow import ValidationError

from labservice.adapters.cbc_schema import CBC_SCHEMA, load_read_documents
from labservice.adapters.fhir.reader import read_fhir
from labservice.adapters.hl7v2.reader import read_settings
from labservice.batch import BatchOptions, run_batch
from labservice.core.ruleset import default_ruleset
from labservice.services.hl7v2_receive import receive_message
from labservice.services.interpret import interpret_documents
from tests.adapters.fhir.build import bundle, observation, patient, report
from tests.shared_data import FIXTURES

P = pytest.param
RS = default_ruleset()
COLLECTED = "2026-11-20T08:30:00+00:00"
#: Birth dates giving whole ages at COLLECTED (days / 365.25): 4 y = 1461 days, 15 y, 34 y.
BIRTH = {4: "2022-11-20", 15: "2011-11-20", 34: "1992-11-20"}
#: LOINC codes of clinical-rules §1 [S15].
LOINC = {
    "lymphocytes": "731-0",
    "wbc": "6690-2",
    "platelets": "777-3",
    "hemoglobin": "718-7",
    "hematocrit": "4544-3",
    "neutrophils": "751-8",
    "mchc": "786-4",
    "rbc": "789-8",
}
UNITS = {"hemoglobin": "g/dL", "hematocrit": "%", "mchc": "g/dL", "rbc": "10*12/L"}


def unit_of(analyte: str) -> str:
    return UNITS.get(analyte, "10*9/L")


# Each case: sex, age, results (canonical units), and the expected flags, findings and urgency from the rules.
CASES = [
    P(
        "male",
        4,
        {"lymphocytes": 0.3},
        {"lymphocytes": "L"},
        {"lymphopenia"},
        "routine",
        id="§2 v2 below any lower limit: 4 y lymphocytes 0.3 (< 0.8) -> L, lymphopenia",
    ),
    P(
        "male",
        15,
        {"wbc": 2.5, "platelets": 15.0},
        {"wbc": "L", "platelets": "LL"},
        {"leukopenia", "thrombocytopenia", "critical_value", "bicytopenia"},
        "immediate",
        id="§2 v2 adolescent WBC 4.9-15.5: 15 y WBC 2.5 L; platelets 15 critical (§3); new critical -> immediate",
    ),
    P(
        "female",
        34,
        {"hemoglobin": 13.64, "hematocrit": 26.8},
        {"hemoglobin": "N", "hematocrit": "L"},
        {"sample_integrity_check"},
        "soon",
        id="§8 v2 sample integrity: MCHC 13.64 / 26.8 x 100 ~ 51 > 38.0 -> soon",
    ),
    P(
        "female",
        15,
        {"hemoglobin": 15.5, "rbc": 5.2},
        {"hemoglobin": "N", "rbc": "H"},
        set(),
        "routine",
        id="§2 v2 adolescent female Hb 12.0-16.0 (15.5 N), RBC 4.1-5.1 (5.2 H)",
    ),
]


def json_path(sex: str, age: int, results: dict[str, float]) -> dict[str, Any]:
    doc = CBC_SCHEMA.load(
        {
            "patient": {"sex": sex, "age_years": age},
            "results": {a: {"value": v, "unit": unit_of(a)} for a, v in results.items()},
        }
    )
    [answer] = interpret_documents([doc], RS)
    return answer


def summarise(answer: dict[str, Any]) -> tuple[dict[str, str | None], set[str], str]:
    flags = {name: a["flag"] for name, a in answer["analytes"].items()}
    return flags, {f["code"] for f in answer["findings"]}, answer["urgency"]


def batch_rows(text: str) -> list[dict[str, Any]]:
    csv_out, json_out = io.StringIO(), io.StringIO()
    run_batch(io.BytesIO(text.encode()), csv_out=csv_out, json_out=json_out, options=BatchOptions())
    return json.loads(json_out.getvalue())


def csv_wide(sex: str, age: int, results: dict[str, float]) -> tuple[dict[str, str | None], set[str], str]:
    names = sorted(results)
    text = (
        "sample_id,sex,age,"
        + ",".join(names)
        + "\nS1,"
        + sex
        + f",{age},"
        + ",".join(str(results[n]) for n in names)
        + "\n"
    )
    [row] = batch_rows(text)
    assert row["error"] is None, row["error"]
    return {k: v for k, v in row["flags"].items() if k in results}, set(row["findings"]), row["urgency"]


def csv_long(sex: str, age: int, results: dict[str, float]) -> tuple[dict[str, str | None], set[str], str]:
    text = "sample_id,sex,age,item,value\n" + "".join(f"S1,{sex},{age},{a},{v}\n" for a, v in results.items())
    [row] = batch_rows(text)
    assert row["error"] is None, row["error"]
    return {k: v for k, v in row["flags"].items() if k in results}, set(row["findings"]), row["urgency"]


def fhir_answers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    read = read_fhir(resource, RS)
    return interpret_documents(load_read_documents([cbc.document for cbc in read.cbcs]), RS, indexed=True)


def fhir_bundle(sex: str, age: int, results: dict[str, float], flags: dict[str, str] | None = None):
    observations = []
    for analyte, value in results.items():
        extra: dict[str, Any] = {"subject": {"reference": "Patient/p"}, "effectiveDateTime": COLLECTED}
        if flags and analyte in flags:
            extra["interpretation"] = [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                            "code": flags[analyte],
                        }
                    ]
                }
            ]
        observations.append(observation(analyte, LOINC[analyte], value, unit_of(analyte), **extra))
    return bundle(
        patient("p", mrn="MRN-1", gender=sex, birth=BIRTH[age]),
        report(
            "r",
            [f"Observation/{o['id']}" for o in observations],
            subject={"reference": "Patient/p"},
            effectiveDateTime=COLLECTED,
        ),
        *observations,
    )


def hl7_message(sex: str, age: int, results: dict[str, float], flags: dict[str, str] | None = None) -> bytes:
    lines = [
        "MSH|^~\\&|LIS|LAB|LABSERVICE|HOSP|20261120083000+0000||ORU^R01|MSG1|P|2.5.1",
        f"PID|1||MRN-1^^^^MR||Doe^Pat||{BIRTH[age].replace('-', '')}|{sex[0].upper()}",
        "OBR|1|||58410-2^CBC^LN|||20261120083000+0000",
    ]
    for i, (analyte, value) in enumerate(results.items(), start=1):
        flag = (flags or {}).get(analyte, "")
        lines.append(f"OBX|{i}|NM|{LOINC[analyte]}^{analyte}^LN||{value}|{unit_of(analyte)}||{flag}|||F")
    return "\r".join(lines).encode()


def hl7_answers(body: bytes) -> list[dict[str, Any]]:
    received = receive_message(body, read_settings(RS))
    assert received.problem is None, received.problem
    assert received.answer is not None
    return received.answer["interpretations"]


@pytest.mark.parametrize(("sex", "age", "results", "flags", "findings", "urgency"), CASES)
def test_every_path_gives_the_rules_answer(
    sex: str, age: int, results: dict[str, float], flags: dict[str, str], findings: set[str], urgency: str
) -> None:
    expected = (flags, findings, urgency)
    by_json = summarise(json_path(sex, age, results))
    assert by_json == expected
    assert csv_wide(sex, age, results) == expected
    assert csv_long(sex, age, results) == expected
    [by_fhir] = fhir_answers(fhir_bundle(sex, age, results))
    [by_hl7] = hl7_answers(hl7_message(sex, age, results))
    assert summarise(by_fhir) == expected
    assert summarise(by_hl7) == expected


LAB_FLAG_CASES = [
    P(
        {"neutrophils": 0.9},
        {"neutrophils": "LL"},
        {"neutrophils": "LL"},
        id="§3 v2 the FHIR spec example: neutrophils 0.9 flagged LL by the laboratory -> LL",
    ),
    P(
        {"platelets": 300.0},
        {"platelets": "HH"},
        {"platelets": "HH"},
        id="§3 v2 HH honoured where the service's own limit would not call it",
    ),
    P(
        {"hemoglobin": 8.0},
        {"hemoglobin": "AA"},
        {"hemoglobin": "LL"},
        id="§3 v2 AA: Hb 8.0 below its range (female 12-15) -> LL",
    ),
    P({"wbc": 20.0}, {"wbc": "AA"}, {"wbc": "HH"}, id="§3 v2 AA: WBC 20 above its range (4.0-10.0) -> HH"),
]


@pytest.mark.parametrize(("results", "sent", "flags"), LAB_FLAG_CASES)
def test_laboratory_critical_flags_agree_on_fhir_and_hl7(
    results: dict[str, float], sent: dict[str, str], flags: dict[str, str]
) -> None:
    # §3 v2: the flag becomes LL/HH, the analyte carries flag_origin "laboratory", critical_value is emitted,
    # and (§3/§9 v2) a new critical value asks for immediate with the reason new_critical_value.
    [by_fhir] = fhir_answers(fhir_bundle("female", 34, results, sent))
    [by_hl7] = hl7_answers(hl7_message("female", 34, results, sent))
    for answer in (by_fhir, by_hl7):
        analyte = next(iter(results))
        assert answer["analytes"][analyte]["flag"] == flags[analyte]
        assert answer["analytes"][analyte]["flag_origin"] == "laboratory"
        assert answer["analytes"][analyte]["critical"] is True
        critical = next(f for f in answer["findings"] if f["code"] == "critical_value")
        assert "by the laboratory" in critical["detail"] and analyte in critical["evidence"]
        assert answer["urgency"] == "immediate" and "new_critical_value" in answer["urgency_reasons"]
    assert summarise(by_fhir) == summarise(by_hl7)


def test_a_non_critical_laboratory_flag_is_not_a_critical_value() -> None:
    # §3 v2 honours LL / HH / AA; an L is the service's own flag to set
    [by_fhir] = fhir_answers(fhir_bundle("female", 34, {"neutrophils": 1.8}, {"neutrophils": "L"}))
    [by_hl7] = hl7_answers(hl7_message("female", 34, {"neutrophils": 1.8}, {"neutrophils": "L"}))
    for answer in (by_fhir, by_hl7):
        assert answer["analytes"]["neutrophils"]["flag"] == "L"  # 1.8 < 2.0 (§2 adults)
        assert "flag_origin" not in answer["analytes"]["neutrophils"]
        assert "critical_value" not in {f["code"] for f in answer["findings"]}


def test_json_and_csv_may_not_send_a_laboratory_flag() -> None:
    # api-contract.md: a result is {"value", "unit", "reference_range"?} and unknown fields are a 422; the
    # contract gives JSON (and the CSV columns) no laboratory flag, so one sent is refused, naming the field.
    with pytest.raises(ValidationError) as raised:
        CBC_SCHEMA.load({"results": {"neutrophils": {"value": 0.9, "unit": "10*9/L", "flag": "LL"}}})
    assert "flag" in raised.value.messages["results"]["neutrophils"]
    with pytest.raises(ValidationError) as raised:
        CBC_SCHEMA.load({"results": {"neutrophils": 0.9}, "laboratory_flags": {"neutrophils": "LL"}})
    assert "laboratory_flags" in raised.value.messages


def test_the_fhir_example_haemoglobin_range_is_set_aside_on_fhir_hl7_and_json() -> None:
    # §2 v2: "Hb 7.2 g/dL with a range of 7.5-10 'g/dL', which is a mmol/L range: it is set aside"
    # (fixtures/fhir-r4-spec-examples/observation-example-f005-hemoglobin.json, read as a real client sends it)
    f005 = json.loads((FIXTURES / "fhir-r4-spec-examples" / "observation-example-f005-hemoglobin.json").read_text())
    [by_fixture] = fhir_answers(f005)
    hb = by_fixture["analytes"]["hemoglobin"]
    assert hb["reference_range"]["origin"] == "fallback" and "set aside" in hb["reference_range"]["note"]
    assert hb["flag"] == "L"  # 7.2 below every fallback low (§2 adults: 12.0 / 13.0)
    by_hl7 = hl7_answers(hl7_message("female", 34, {"hemoglobin": 7.2}).replace(b"|g/dL||", b"|g/dL|7.5-10|"))[0]
    by_json = json_path_with_range("female", 34, "hemoglobin", 7.2, 7.5, 10.0)
    for answer in (by_hl7, by_json):
        rr = answer["analytes"]["hemoglobin"]["reference_range"]
        assert (rr["low"], rr["high"], rr["origin"]) == (12.0, 15.0, "fallback")
        assert "set aside" in rr["note"]


def json_path_with_range(sex: str, age: int, analyte: str, value: float, low: float, high: float) -> dict:
    doc = CBC_SCHEMA.load(
        {
            "patient": {"sex": sex, "age_years": age},
            "results": {
                analyte: {"value": value, "unit": unit_of(analyte), "reference_range": {"low": low, "high": high}}
            },
        }
    )
    [answer] = interpret_documents([doc], RS)
    return answer


def test_an_inverted_range_is_set_aside_not_refused_on_every_path() -> None:
    # §2 v2 "a range that is not [plausible] is set aside with a note, never a 422, on every path"
    by_json = json_path_with_range("female", 34, "wbc", 6.0, 11.0, 4.0)
    by_hl7 = hl7_answers(hl7_message("female", 34, {"wbc": 6.0}).replace(b"|10*9/L||", b"|10*9/L|11-4|"))[0]
    fhir = fhir_bundle("female", 34, {"wbc": 6.0})
    fhir["entry"][2]["resource"]["referenceRange"] = [{"low": {"value": 11.0}, "high": {"value": 4.0}}]
    [by_fhir] = fhir_answers(fhir)
    for answer in (by_json, by_hl7, by_fhir):
        rr = answer["analytes"]["wbc"]["reference_range"]
        assert (rr["low"], rr["high"], rr["origin"]) == (4.0, 10.0, "fallback")
        assert "set aside" in rr["note"] and answer["analytes"]["wbc"]["flag"] == "N"


def test_a_male_marked_pregnant_is_refused_on_json_and_csv_naming_the_field() -> None:
    # §8 v2 "a male patient marked pregnant is a 422"; a batch row gets the error naming its line and column.
    # (FHIR and HL7 v2 carry no pregnancy status to the service: their readers set none.)
    with pytest.raises(ValidationError) as raised:
        CBC_SCHEMA.load({"patient": {"sex": "male", "pregnant": True}, "results": {"platelets": 120}})
    assert "pregnant" in raised.value.messages["patient"]
    for text in (
        "sample_id,sex,pregnant,platelets\nS1,M,yes,120\n",
        "sample_id,sex,pregnant,item,value\nS1,M,yes,PLT,120\n",
    ):
        [row] = batch_rows(text)
        assert row["error"] == "line 2, column pregnant: a male patient cannot be marked pregnant (clinical-rules §8)"
