"""clinical-rules §1 v2 on every input path: the same CBC through JSON, CSV (wide and long), FHIR and HL7 v2
gets the same answer ("so the same CBC gets the same answer on each", issue 13).

Each case is one CBC written the way each path's clients write it; the expected flags and codes come from the
rules (quoted per case), and every path must give them. MLLP and CDS Hooks hand the same documents to the same
reader as HL7 v2 over HTTP and FHIR (tests/test_mllp.py, tests/services/test_cds_review.py).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import pytest

from labservice.adapters.cbc_schema import CBC_LIST_SCHEMA
from labservice.adapters.errors import InputError
from labservice.adapters.fhir.reader import read_fhir
from labservice.adapters.hl7v2.codes import load_code_map
from labservice.adapters.hl7v2.reader import ReadSettings
from labservice.api.common import read_json  # the one JSON reader of the HTTP API (FHIR bodies too)
from labservice.batch import BatchFileError, BatchOptions, run_batch
from labservice.core.ruleset import default_ruleset
from labservice.services.hl7v2_receive import receive_message
from labservice.services.interpret import interpret_documents
from tests.adapters.fhir.build import bundle, observation, patient, report

RS = default_ruleset()
HL7_SETTINGS = ReadSettings(RS, load_code_map(RS), UTC, "UTC")
BIRTH, COLLECTED = "1992-01-01", "2026-11-20T08:30:00Z"  # a woman of 34 (adult fallback ranges, §2)
#: analyte -> (LOINC code, CSV wide header name): LOINC codes of clinical-rules §1 (lymphocyte % and RDW-SD v2).
CODES = {
    "hemoglobin": ("718-7", "HGB"),
    "wbc": ("6690-2", "WBC"),
    "platelets": ("777-3", "PLT"),
    "neutrophils": ("751-8", "NEUT#"),
    "neutrophils_percent": ("770-8", "NEUT%"),
    "lymphocytes_percent": ("26478-8", "LYMPH%"),
    "rdw_sd": ("21000-5", "RDW-SD"),
}


@dataclass(frozen=True)
class Case:
    """One CBC: (analyte, value as text, unit) per result, and what every path must answer."""

    name: str
    results: tuple[tuple[str, str, str], ...]
    flags: dict[str, str | None]
    findings: frozenset[str] = frozenset()
    not_assessed: frozenset[str] = frozenset()  # codes that must be listed (others may be too)
    not_listed: frozenset[str] = frozenset()  # codes that must not be listed as not assessed
    imprecise: frozenset[str] = frozenset()
    derived: frozenset[str] = field(default_factory=frozenset)


CASES = [
    # §1 v2: "9.309 mmol/L haemoglobin is 15.0 g/dL, on the bound and inside the range, on every path (JSON,
    # CSV, FHIR, HL7 v2)"; §2 adult female range 12.0-15.0.
    Case("§1 v2 Hb 9.309 mmol/L = 15.0 on the bound -> N", (("hemoglobin", "9.309", "mmol/L"),), {"hemoglobin": "N"}),
    Case("§1 v2 Hb 9.310 mmol/L = 15.0016 above -> H", (("hemoglobin", "9.310", "mmol/L"),), {"hemoglobin": "H"}),
    Case(
        "§1 v2 Hb 9.308 mmol/L = 14.9984 below the bound -> N",
        (("hemoglobin", "9.308", "mmol/L"),),
        {"hemoglobin": "N"},
    ),
    # §1 v2 (issue 13: "18.618 mmol/L (30.0 g/dL) is refused as implausible on JSON only"): 30.0 g/dL is not
    # above the limit (haemoglobin > 30 is implausible), so it is interpreted on every path; H for a woman.
    Case("§1 v2 Hb 18.618 mmol/L = 30.0 plausible -> H", (("hemoglobin", "18.618", "mmol/L"),), {"hemoglobin": "H"}),
    # §1 v2: derived lymphocytes from lymphocyte %; "a derived count from a WBC below 1.0 is marked imprecise".
    # WBC 0.99 x 30 % = 0.297 < 1.0 (§2 adult lymphocytes 1.0-3.0) -> L; §3 WBC < 2.0 critical.
    Case(
        "§1 v2 lymphocytes derived from WBC 0.99 x 30 % -> imprecise",
        (("wbc", "0.99", "10*9/L"), ("lymphocytes_percent", "30", "%")),
        {"wbc": "LL", "lymphocytes": "L"},
        frozenset({"critical_value", "leukopenia", "lymphopenia"}),
        imprecise=frozenset({"lymphocytes"}),
        derived=frozenset({"lymphocytes"}),
    ),
    # WBC 1.0 is not below 1.0: precise. 1.0 x 30 % = 0.3 -> L.
    Case(
        "§1 v2 lymphocytes derived from WBC 1.0 (not below 1.0) -> precise",
        (("wbc", "1.0", "10*9/L"), ("lymphocytes_percent", "30", "%")),
        {"wbc": "LL", "lymphocytes": "L"},
        frozenset({"critical_value", "leukopenia", "lymphopenia"}),
        derived=frozenset({"lymphocytes"}),
    ),
    # Neutrophils likewise: WBC 0.8 x 67.542 % = 0.540336 (§4 < 1.5 neutropenia, §3 not < 0.5 critical by
    # neutrophils, WBC 0.8 < 2.0 is).
    Case(
        "§1 v2 neutrophils derived from WBC 0.8 x 67.542 % -> imprecise",
        (("wbc", "0.8", "10*9/L"), ("neutrophils_percent", "67.542", "%")),
        {"wbc": "LL", "neutrophils": "L"},
        frozenset({"critical_value", "leukopenia", "neutropenia"}),
        imprecise=frozenset({"neutrophils"}),
        derived=frozenset({"neutrophils"}),
    ),
    # api-contract v2: "a rule whose input is missing lists it as not assessed"; §7 fever with neutrophils
    # <= 0.5: with fever not stated, febrile_neutropenia is not assessed on every path (issue 13: "JSON lists
    # febrile_neutropenia as not assessed when fever is not stated, the CSV path never does").
    Case(
        "§7 neutrophils 0.5 (on the bound) without fever -> febrile_neutropenia not assessed",
        (("neutrophils", "0.5", "10*9/L"),),
        {"neutrophils": "L"},
        frozenset({"neutropenia"}),
        not_assessed=frozenset({"febrile_neutropenia"}),
    ),
    Case(
        "§7 neutrophils 0.51 (above 0.5) -> febrile_neutropenia decided",
        (("neutrophils", "0.51", "10*9/L"),),
        {"neutrophils": "L"},
        frozenset({"neutropenia"}),
        not_listed=frozenset({"febrile_neutropenia"}),
    ),
]

ERROR_CASES = [
    # §1 v2: "A count sent in `g/L` or `g/l` is an unknown unit (422), not giga/L".
    ("§1 v2 platelets in g/L", (("platelets", "250", "g/L"),), "g/L"),
    ("§1 v2 platelets in g/l", (("platelets", "250", "g/l"),), "g/l"),
    ("§1 v2 WBC in g/L", (("wbc", "5", "g/L"),), "g/L"),
    # §1: haemoglobin > 30 g/dL is implausible: 18.619 mmol/L = 30.0016 g/dL, refused on every path.
    ("§1 v2 Hb 18.619 mmol/L = 30.0016 implausible", (("hemoglobin", "18.619", "mmol/L"),), "plausib"),
]


# --- the five paths ----------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """What every path reports: flags, finding codes, not-assessed codes, derived and imprecise analytes."""

    flags: dict[str, str | None]
    findings: set[str]
    not_assessed: set[str]
    derived: set[str]
    imprecise: set[str]


def _from_json_answer(answer: dict[str, Any]) -> Answer:
    analytes = answer["analytes"]
    return Answer(
        {a: d["flag"] for a, d in analytes.items()},
        {f["code"] for f in answer["findings"]},
        {n["code"] for n in answer["not_assessed"]},
        {a for a, d in analytes.items() if d["derived"]},
        {a for a, d in analytes.items() if d.get("imprecise")},
    )


def via_json(results) -> Answer:
    doc = {
        "patient": {"sex": "female", "birth_date": BIRTH},
        "collected_at": COLLECTED,
        "results": {a: {"value": json.loads(v), "unit": u} for a, v, u in results},
    }
    [answer] = interpret_documents(CBC_LIST_SCHEMA.load([doc]), RS, indexed=True)
    return _from_json_answer(answer)


def _from_batch(text: str) -> Answer | str:
    csv_out, json_out = io.StringIO(), io.StringIO()
    try:
        run_batch(io.BytesIO(text.encode()), csv_out=csv_out, json_out=json_out, options=BatchOptions())
    except BatchFileError as error:
        return str(error)
    [row] = json.loads(json_out.getvalue())
    if row["error"]:
        return row["error"]
    [csv_row] = list(csv.DictReader(io.StringIO(csv_out.getvalue())))
    assert csv_row["not_assessed"] == ";".join(row["not_assessed"])  # the CSV file says what the JSON rows say
    notes = row["notes"] or ""
    flags = dict(row["flags"])
    return Answer(
        flags,
        set(row["findings"]),
        set(row["not_assessed"]),
        {a for a in flags if f"{a} derived from a percentage (not measured)" in notes},
        {a for a in flags if f"{a} imprecise:" in notes},
    )


def via_csv_wide(results) -> Answer | str:
    header = ["patient_id", "sex", "birth_date", "collected_at"] + [f"{CODES[a][1]} ({u})" for a, _, u in results]
    row = ["P1", "F", BIRTH, COLLECTED] + [v for _, v, _ in results]
    return _from_batch(",".join(header) + "\n" + ",".join(row) + "\n")


def via_csv_long(results) -> Answer | str:
    lines = ["patient_id,sex,birth_date,collected_at,item,value,unit"]
    lines += [f"P1,F,{BIRTH},{COLLECTED},{CODES[a][0]},{v},{u}" for a, v, u in results]
    return _from_batch("\n".join(lines) + "\n")


def via_fhir(results) -> Answer | str:
    observations = [
        observation(
            f"o{i}", CODES[a][0], json.loads(v), u, subject={"reference": "Patient/p"}, effectiveDateTime=COLLECTED
        )
        for i, (a, v, u) in enumerate(results)
    ]
    references = [f"Observation/o{i}" for i in range(len(results))]
    resource = bundle(
        patient("p", gender="female", birth=BIRTH),
        report("r", references, subject={"reference": "Patient/p"}, effectiveDateTime=COLLECTED),
        *observations,
    )
    read = read_fhir(resource)
    assert not read.unused, read.unused
    try:
        [answer] = interpret_documents(CBC_LIST_SCHEMA.load([cbc.document for cbc in read.cbcs]), RS, indexed=True)
    except InputError as error:
        return json.dumps(error.errors)
    return _from_json_answer(answer)


def via_hl7(results) -> Answer | str:
    segments = [
        "MSH|^~\\&|LAB|HOSP|LS|LS|20261120083000||ORU^R01|MSG1|P|2.5.1",
        "PID|1||MRN1^^^HOSP^MR||Doe^Jane||19920101|F",
        "OBR|1|||58410-2^CBC^LN|||20261120083000",
    ]
    segments += [f"OBX|{i + 1}|NM|{CODES[a][0]}^{a}^LN||{v}|{u}|||||F" for i, (a, v, u) in enumerate(results)]
    outcome = receive_message("\r".join(segments).encode(), HL7_SETTINGS)
    if outcome.problem is not None:
        return f"{outcome.problem.status} {outcome.problem.detail} {json.dumps(outcome.problem.errors)}"
    [answer] = outcome.answer["interpretations"]
    return _from_json_answer(answer)


PATHS = {"json": via_json, "csv_wide": via_csv_wide, "csv_long": via_csv_long, "fhir": via_fhir, "hl7v2": via_hl7}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_path_gives_the_rules_answer(case: Case, path: str) -> None:
    got = PATHS[path](case.results)
    assert isinstance(got, Answer), got
    for analyte, flag in case.flags.items():
        assert got.flags.get(analyte) == flag, (analyte, got.flags)
    assert got.findings == set(case.findings)
    assert case.not_assessed <= got.not_assessed
    assert not case.not_listed & got.not_assessed
    assert got.imprecise == set(case.imprecise)
    assert case.derived <= got.derived


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("name", "results", "named"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_every_path_refuses_the_same_cbc_naming_the_analyte(name: str, results, named: str, path: str) -> None:
    if path == "json":
        with pytest.raises(InputError) as caught:
            via_json(results)
        got: Answer | str = json.dumps(caught.value.errors)
    else:
        got = PATHS[path](results)
    assert isinstance(got, str), f"{name}: interpreted on {path}"
    analyte = results[0][0]
    label = RS.analytes[analyte].label
    assert named in got and (analyte in got or label in got), got


def test_the_same_cbc_gets_the_same_flags_on_every_path() -> None:
    """All of CASES at once, path against path (not only against the expected flags)."""
    for case in CASES:
        answers = {path: read(case.results) for path, read in PATHS.items()}
        flags = {path: {a: answer.flags.get(a) for a in case.flags} for path, answer in answers.items()}
        assert len({json.dumps(f, sort_keys=True) for f in flags.values()}) == 1, (case.name, flags)


HUGE = "1" + "0" * 5000  # issue 13: "a JSON integer of 5,001 digits is a 500"


def test_a_number_of_5001_digits_is_refused_naming_its_field_on_every_path() -> None:
    """clinical-rules §1 v2 / issue 13: a number no float holds is a 422 (a row error in a batch) naming the
    field, never a 500. The JSON endpoint's own case is in tests/api/test_hostile_inputs.py."""
    results = (("platelets", HUGE, "10*9/L"),)
    wide, long = via_csv_wide(results), via_csv_long(results)
    assert isinstance(wide, str) and "PLT (10*9/L)" in wide, wide
    assert isinstance(long, str) and "column value" in long, long
    hl7 = via_hl7(results)
    assert isinstance(hl7, str) and hl7.startswith("422") and "OBX[1]-5" in hl7, hl7
    resource = read_json(
        json.dumps(observation("o", "777-3", 1, "10*9/L")).replace('"value": 1', f'"value": {HUGE}').encode(),
        non_finite=True,
    )
    with pytest.raises(InputError) as caught:
        read_fhir(resource)
    assert any(path.endswith("valueQuantity.value") for path in caught.value.errors), caught.value.errors


@pytest.mark.parametrize(
    ("value", "flag"),
    [
        # clinical-rules §1: "Haematocrit: `L/L` or a bare fraction <= 1 x 100 = %"; §2 adult female range 36-46 %
        # (reference_ranges/adults.csv). 0.42 -> 42 % N; 1 (on the bound of "<= 1") -> 100 % H; 42 stays 42 % N.
        pytest.param("0.42", "N", id="§1 bare fraction 0.42 -> 42 %"),
        pytest.param("1", "H", id="§1 bare fraction 1 (on <= 1) -> 100 %"),
        pytest.param("42", "N", id="§1 bare 42 is already %"),
    ],
)
def test_a_bare_haematocrit_fraction_reads_the_same_on_json_and_csv(value: str, flag: str) -> None:
    doc = {"patient": {"sex": "female", "age_years": 34}, "results": {"hematocrit": json.loads(value)}}
    [answer] = interpret_documents(CBC_LIST_SCHEMA.load([doc]), RS, indexed=True)
    assert answer["analytes"]["hematocrit"]["flag"] == flag
    wide = _from_batch(f"patient_id,sex,age,HCT\nP1,F,34,{value}\n")
    long = _from_batch(f"patient_id,sex,age,item,value\nP1,F,34,HCT,{value}\n")
    assert isinstance(wide, Answer) and wide.flags["hematocrit"] == flag
    assert isinstance(long, Answer) and long.flags["hematocrit"] == flag
