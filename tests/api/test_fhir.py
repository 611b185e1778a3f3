"""POST /api/v1/fhir/interpret with the real-client FHIR fixtures, FHIR built from MIMIC-III rows, and bad input.

Expected values come from the fixture files and fixtures/README.md, and the decisions from
clinical-rules.md: thrombocytopenia < 150, CTCAE v5.0 platelet grades 1 = < LLN-75, 2 = < 75-50,
3 = < 50-25, 4 = < 25 (§4); critical values platelets < 20, haemoglobin < 7.0 g/dL, WBC < 2.0 (§3);
neutropenia < 1.5 with CTCAE grade 3 for < 1.0-0.5 (§4); anaemia below the WHO cut-off, CTCAE
grade 3 below 8.0 g/dL (§4); urgency `soon` for neutropenia < 1.0 and severe anaemia, `urgent` for a
critical value (§9).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.fhir.build import bundle, mimic_cbcs, mimic_transaction, observation, patient, report
from tests.api.helpers import assert_problem
from tests.shared_data import FIXTURES, MIMIC_CLOCK_SKEW_SECONDS, MIMIC_LABEVENTS

URL = "/api/v1/fhir/interpret"
FHIR_JSON = "application/fhir+json"
SPEC = FIXTURES / "fhir-r4-spec-examples"
US_CORE = FIXTURES / "us-core-cbc"
SYNTHEA = FIXTURES / "synthea-r4-bundles"
ALL_FILES = sorted([*SPEC.glob("*.json"), *US_CORE.glob("*.json"), *SYNTHEA.glob("*.json")])
#: The two fixture files that hold references only (fixtures README): nothing in them can be interpreted.
REFERENCES_ONLY = {"diagnosticreport-example-f001-bloodexam.json", "diagnosticreport-cbc.json"}


def post(client, body: Any, query: str = "?store=false", **headers: str):
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(f"{URL}{query}", data=data, content_type=headers.pop("content_type", FHIR_JSON), headers=headers)


def answer_of(client, body: Any, query: str = "?store=false", **headers: str) -> dict[str, Any]:
    response = post(client, body, query, **headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def codes(interpretation: dict[str, Any]) -> list[str]:
    return [finding["code"] for finding in interpretation["findings"]]


def ctcae_platelet_grade(value: float, lln: float = 150.0) -> int | None:
    """CTCAE v5.0 'Platelet count decreased' (clinical-rules §4), LLN of the fallback range (§2)."""
    for grade, bound in ((4, 25), (3, 50), (2, 75), (1, lln)):
        if value < bound:
            return grade
    return None


# --- every fixture file ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name[:40])
def test_every_fixture_file_goes_through(client, path: Path):
    response = post(client, path.read_bytes())
    if path.name in REFERENCES_ONLY:
        body = assert_problem(response, 422)
        assert body["detail"].startswith("No usable CBC in the input")
        assert "Post a Bundle that includes the Observations" in body["detail"]  # issue 14 item 1
        assert all(
            reason.startswith("the reference ") or reason.startswith("no usable CBC result")
            for messages in body["errors"].values()
            for reason in messages
        )
        return
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["interpretations"]
    resource = json.loads(path.read_bytes())
    for item in body["interpretations"]:
        assert item["urgency"] in ("immediate", "urgent", "soon", "routine")
        assert set(item["source"]["observations"]) <= set(item["analytes"])
        assert item["source"]["non_final"] == []  # every fixture result is final
    if resource["resourceType"] == "Observation":
        only = body["interpretations"][0]["source"]["observations"]
        assert list(only.values()) == [f"Observation/{resource['id']}"]


def test_f001_bloodexam_answers_422_listing_each_reference(client):
    body = assert_problem(post(client, (SPEC / "diagnosticreport-example-f001-bloodexam.json").read_bytes()), 422)
    report_path = "Bundle.entry[0].resource(DiagnosticReport/f001)"
    assert body["errors"] == {
        **{
            f"{report_path}.result[{i}]": [f"the reference 'Observation/f00{i + 1}' does not resolve in the input"]
            for i in range(5)
        },
        report_path: ["no usable CBC result: none of its references resolve to an Observation in the input"],
    }


# --- the FHIR specification's CBC -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["diagnosticreport-example.json", "diagnosticreport-example-ghp.json"])
def test_spec_cbc_neutrophils_0_9_is_neutropenia_and_platelets_444_are_in_range(client, name):
    body = answer_of(client, (SPEC / name).read_bytes())
    [item] = body["interpretations"]
    platelets = item["analytes"]["platelets"]
    assert (platelets["value"], platelets["unit"], platelets["flag"]) == (444.0, "10*9/L", "N")
    assert platelets["reference_range"]["origin"] == "laboratory"
    assert (platelets["reference_range"]["low"], platelets["reference_range"]["high"]) == (150.0, 450.0)
    neutrophils = item["analytes"]["neutrophils"]
    assert (neutrophils["value"], neutrophils["ctcae_grade"], neutrophils["derived"]) == (0.9, 3, False)
    assert "neutropenia" in codes(item)
    assert "thrombocytopenia" not in codes(item) and "thrombocytosis" not in codes(item)
    assert item["analytes"]["hemoglobin"]["value"] == 17.6  # 176 g/L
    # clinical-rules §3 v2: the example flags neutrophils 0.9 LL, honoured as a critical value; §9 v2: a new
    # critical value asks for immediate (v1: soon, for neutropenia < 1.0)
    assert (neutrophils["flag"], neutrophils["flag_origin"]) == ("LL", "laboratory")
    assert "critical_value" in codes(item)
    assert item["urgency"] == "immediate"
    assert item["source"]["observations"]["platelets"] == "Observation/r6"
    assert item["source"]["observations"]["neutrophils"] == "Observation/r9"


def test_spec_cbc_without_the_absolute_count_derives_the_anc_from_the_percentage(client):
    resource = json.loads((SPEC / "diagnosticreport-example.json").read_text())
    resource["entry"] = [e for e in resource["entry"] if e["resource"].get("id") != "r9"]  # drop 751-8
    [item] = answer_of(client, resource)["interpretations"]
    neutrophils = item["analytes"]["neutrophils"]
    # WBC 4.6 x 10^9/L x 20 % (770-8) / 100 = 0.92 (clinical-rules §1)
    assert neutrophils["value"] == pytest.approx(0.92) and neutrophils["derived"] is True
    assert "neutropenia" in codes(item)


def test_spec_f005_haemoglobin_7_2_is_anaemia(client):
    [item] = answer_of(client, (SPEC / "observation-example-f005-hemoglobin.json").read_bytes())["interpretations"]
    hemoglobin = item["analytes"]["hemoglobin"]
    assert (hemoglobin["value"], hemoglobin["flag"], hemoglobin["ctcae_grade"]) == (7.2, "L", 3)
    assert "anemia" in codes(item) and "critical_value" not in codes(item)  # 7.2 is not below 7.0
    assert item["urgency"] == "soon"


# --- US Core --------------------------------------------------------------------------------------


def test_us_core_platelets_200_are_normal(client):
    [item] = answer_of(client, (US_CORE / "observation-cbc-platelets.json").read_bytes())["interpretations"]
    platelets = item["analytes"]["platelets"]
    assert (platelets["value"], platelets["flag"], platelets["ctcae_grade"]) == (200.0, "N", None)
    assert platelets["reported"] == {"value": 200.0, "unit": "10*3/uL"}
    assert "thrombocytopenia" not in codes(item)
    assert item["source"] == {
        "report": None,
        "observations": {"platelets": "Observation/cbc-platelets"},
        "non_final": [],
    }


def test_us_core_as_one_bundle_is_one_cbc(client):
    resources = [json.loads(p.read_text()) for p in sorted(US_CORE.glob("*.json"))]
    body = answer_of(
        client,
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
        },
    )
    [item] = body["interpretations"]
    assert item["source"]["report"] == "DiagnosticReport/cbc"
    assert len(item["source"]["observations"]) == 8
    assert item["analytes"]["platelets"]["flag"] == "N"
    assert item["urgency"] == "routine"
    assert sorted(u["id"] for u in body["unused"]) == ["cbc-hematocrit", "cbc-mch", "cbc-mcv"]  # inverted ranges
    assert item["analytes"]["hematocrit"]["reference_range"]["origin"] == "fallback"


# --- Synthea --------------------------------------------------------------------------------------


def test_synthea_bundles_51_panels_plus_one_with_alternative_codes_and_no_thrombocytopenia(client):
    total = 0
    for path in sorted(SYNTHEA.glob("*.json")):
        body = answer_of(client, path.read_bytes())
        total += len(body["interpretations"])
        for item in body["interpretations"]:
            assert "thrombocytopenia" not in codes(item)  # README: every Synthea platelet count is 150.15-449.81
            assert item["analytes"]["platelets"]["flag"] in ("N", "H")
        assert body["ignored"]["Claim"] >= 1 and body["ignored"]["Encounter"] >= 1
    assert total == 51 + 1  # 51 CBC panels (58410-2), plus Jordan_Cruickshank's 69742-5 report


@pytest.mark.parametrize("name", ["Micah_Schinner", "Granville_Crooks", "Cleo_Friesen", "Lavern_Kassulke"])
def test_synthea_haemoglobin_below_7_is_a_critical_value(client, name):
    # README: HGB down to 6.94 / 6.31 / 6.07 / 6.69 g/dL in these bundles
    body = answer_of(client, next(SYNTHEA.glob(f"{name}_*.json")).read_bytes())
    lowest = min(body["interpretations"], key=lambda item: item["analytes"]["hemoglobin"]["value"])
    assert lowest["analytes"]["hemoglobin"]["value"] < 7.0
    assert lowest["analytes"]["hemoglobin"]["flag"] == "LL"
    assert "critical_value" in codes(lowest) and lowest["urgency"] in ("urgent", "immediate")


def test_jordan_cruickshank_26515_7_in_k_per_ul(client):
    body = answer_of(client, next(SYNTHEA.glob("Jordan_Cruickshank_*.json")).read_bytes())
    item = next(
        i
        for i in body["interpretations"]
        if i["source"]["observations"]["platelets"] == "urn:uuid:a5565877-f333-492b-a3ed-7566a97ba504"
    )
    assert round(item["analytes"]["platelets"]["value"], 1) == 189.6
    assert item["analytes"]["platelets"]["reported"]["unit"] == "K/uL"
    assert round(item["analytes"]["wbc"]["value"], 2) == 11.07
    assert item["analytes"]["wbc"]["flag"] == "H"  # above the fallback 4.0-10.0 (§2)


# --- storing --------------------------------------------------------------------------------------


def test_cbcs_are_stored_under_the_patient_mr_number_unless_store_false(client):
    path = next(SYNTHEA.glob("Jordan_Cruickshank_*.json"))
    assert all("stored" not in item for item in answer_of(client, path.read_bytes())["interpretations"])
    first = answer_of(client, path.read_bytes(), query="")
    assert [item["stored"]["duplicate"] for item in first["interpretations"]] == [False, False, False]
    again = answer_of(client, path.read_bytes(), query="")
    assert [item["stored"]["duplicate"] for item in again["interpretations"]] == [True, True, True]
    history = client.get("/api/v1/patients/5de38439-d320-46d3-854d-3c098e88de4c/results")
    assert history.status_code == 200
    record = history.get_json()
    assert record["patient"]["sex"] == "female"
    assert len(record["results"]) == 3


# --- the FHIR answer ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?store=false", {"Accept": FHIR_JSON}),
        ("?store=false&_format=fhir", {}),
        ("?store=false&_format=application/fhir%2Bjson", {"Accept": "application/json"}),
    ],
)
def test_the_fhir_answer_is_a_bundle_with_one_report_per_cbc(client, query, headers):
    response = post(client, next(SYNTHEA.glob("Whitney_Ortiz_*.json")).read_bytes(), query, **headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == FHIR_JSON
    answer = response.get_json(force=True)
    assert answer["resourceType"] == "Bundle" and answer["type"] == "collection"
    reports = [e for e in answer["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert len(reports) == 8  # README: 8 CBC panels


def test_json_is_the_default_and_format_json_overrides_accept(client):
    body = (SPEC / "observation-example-f005-hemoglobin.json").read_bytes()
    assert "interpretations" in answer_of(client, body, Accept="*/*")
    assert "interpretations" in answer_of(client, body, query="?store=false&_format=json", Accept=FHIR_JSON)
    problem = assert_problem(post(client, body, "?store=false&_format=xml"), 422)
    assert list(problem["errors"]) == ["_format"]


def test_application_json_is_accepted_too(client):
    response = post(
        client, (SPEC / "observation-example-f005-hemoglobin.json").read_bytes(), content_type="application/json"
    )
    assert response.status_code == 200


def test_non_final_results_are_labelled_on_the_answer(client):
    resource = bundle(
        report("r", ["Observation/p", "Observation/h"], status="preliminary"),
        observation("p", "777-3", 45, "10*3/uL", status="preliminary"),
        observation("h", "718-7", 13.5, "g/dL"),
    )
    [item] = answer_of(client, resource)["interpretations"]
    assert item["source"]["non_final"] == ["report: preliminary", "platelets: preliminary"]
    assert item["analytes"]["platelets"]["ctcae_grade"] == 3  # 45: < 50-25


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/fhir+xml"])
def test_other_content_types_are_415(client, content_type):
    assert_problem(post(client, b"{}", content_type=content_type), 415)


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"resourceType": "Observation", "valueQuantity": {"value": NaN}}', b"\xff\xfe"]
)
def test_not_json_is_400(client, raw):
    assert_problem(post(client, raw), 400)


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        ({"id": "x"}, "resourceType"),
        ({"resourceType": "Patient", "id": "p"}, "resourceType"),
        ({"resourceType": "Bundle", "type": "collection", "entry": {}}, "Bundle.entry"),
        (
            bundle(
                report("r", ["Observation/abc"]),
                {"resourceType": "Specimen", "id": "s"},
                {"resourceType": "Claim"},
                observation("abc", "777-3", valueQuantity={"value": "45", "unit": "10*3/uL"}),
            ),
            "Bundle.entry[3].resource(Observation/abc).valueQuantity.value",
        ),
    ],
)
def test_malformed_fhir_is_422_naming_the_path(client, resource, path):
    body = assert_problem(post(client, resource), 422)
    assert list(body["errors"]) == [path]
    assert body["detail"].startswith(path)


def test_an_unknown_unit_is_422_naming_the_observation(client):
    resource = bundle(report("r", ["Observation/plt"]), observation("plt", "777-3", 45, "furlongs"))
    body = assert_problem(post(client, resource), 422)
    assert list(body["errors"]) == ["Bundle.entry[1].resource(Observation/plt).valueQuantity.code"]
    assert "unknown unit 'furlongs' for platelets" in body["errors"][next(iter(body["errors"]))][0]


def test_an_implausible_value_is_422_naming_the_observation_with_the_unit_hint(client):
    resource = bundle(report("r", ["Observation/plt"]), observation("plt", "777-3", 210000, "10*9/L"))
    body = assert_problem(post(client, resource), 422)
    [(path, [message])] = body["errors"].items()
    assert path == "Bundle.entry[1].resource(Observation/plt).valueQuantity.value"
    assert "/uL" in message  # "did you mean /uL?" (clinical-rules §1)


def test_a_birth_date_after_collection_is_422_naming_the_patient(client):
    resource = bundle(
        patient("p", birth="2030-01-01"),
        observation(
            "o", "777-3", 200, "10*9/L", subject={"reference": "Patient/p"}, effectiveDateTime="2026-01-01T00:00:00Z"
        ),
    )
    body = assert_problem(post(client, resource), 422)
    assert list(body["errors"]) == ["Bundle.entry[0].resource(Patient/p).birthDate"]


def test_a_time_without_offset_is_422_naming_the_effective_time(client):
    resource = observation("o", "777-3", 200, "10*9/L", effectiveDateTime="2026-01-01T08:00:00")
    body = assert_problem(post(client, resource), 422)
    assert list(body["errors"]) == ["Observation(Observation/o).effectiveDateTime"]


def test_nothing_usable_is_422_listing_why(client):
    resource = bundle(
        observation("a", "777-3", valueString="clumped"),
        observation("b", "6690-2", 5, "10*9/L", status="entered-in-error"),
    )
    body = assert_problem(post(client, resource), 422)
    assert body["errors"] == {
        "Bundle.entry[0].resource(Observation/a)": ["platelets: the value is text ('clumped'), not a quantity"],
        "Bundle.entry[1].resource(Observation/b)": ["wbc: status entered-in-error: the result is withdrawn"],
    }


def test_no_cbc_code_at_all_is_422(client):
    body = assert_problem(post(client, bundle(observation("na", "2951-2", 140, "mmol/L"))), 422)
    assert list(body["errors"]) == ["body"]


def test_more_cbcs_than_the_batch_limit_is_413(make_app):
    client = make_app(MAX_BATCH_ITEMS=1).test_client()
    resource = bundle(
        observation("a", "777-3", 200, "10*9/L", effectiveDateTime="2026-01-01T00:00:00Z"),
        observation("b", "777-3", 210, "10*9/L", effectiveDateTime="2026-01-02T00:00:00Z"),
    )
    assert_problem(post(client, resource), 413)


# --- MIMIC-III rows carried through FHIR -----------------------------------------------------------


@pytest.fixture(scope="module")
def mimic_low_platelets() -> list[tuple[tuple[str, str], dict[str, tuple[str, str]]]]:
    """Every (HADM_ID, CHARTTIME) whose platelet count (ITEMID 51265) is below 150 or censored (<5)."""
    groups = mimic_cbcs(MIMIC_LABEVENTS)
    chosen = []
    for key, items in groups.items():
        if "51265" not in items:
            continue
        value = items["51265"][0].strip()
        try:
            low = float(value) < 150
        except ValueError:
            low = value.startswith("<")
        if low:
            chosen.append((key, items))
    return sorted(chosen)


def test_mimic_low_platelets_through_fhir_get_the_ctcae_grades_of_clinical_rules(make_app, mimic_low_platelets):
    client = make_app(MAX_CONTENT_LENGTH=32 * 1024 * 1024, CLOCK_SKEW_SECONDS=MIMIC_CLOCK_SKEW_SECONDS).test_client()
    body = answer_of(client, mimic_transaction(mimic_low_platelets))
    censored = [items for _, items in mimic_low_platelets if items["51265"][0].startswith("<")]
    assert len(censored) == 3  # README: 3 rows `<5`
    numeric = len(mimic_low_platelets) - len(censored)
    assert numeric == 862  # README: 862 platelet counts < 150
    by_report = {item["source"]["report"]: item for item in body["interpretations"]}
    below_50 = below_20 = 0
    for (hadm, charttime), items in mimic_low_platelets:
        value = items["51265"][0]
        report_ref = next(
            e["fullUrl"]
            for e in mimic_transaction([((hadm, charttime), items)])["entry"]
            if e["resource"]["resourceType"] == "DiagnosticReport"
        )
        item = by_report.get(report_ref)
        if value.startswith("<"):
            if item is not None:  # its WBC or haemoglobin made a CBC; the censored platelets did not
                assert "platelets" not in item["analytes"]
                assert "thrombocytopenia" in [n["code"] for n in item["not_assessed"]]
            continue
        platelets = float(value)
        analyte = item["analytes"]["platelets"]
        assert analyte["value"] == platelets
        assert analyte["ctcae_grade"] == ctcae_platelet_grade(platelets), (hadm, charttime, platelets)
        assert "thrombocytopenia" in codes(item)
        if platelets < 20:
            below_20 += 1
            assert analyte["flag"] == "LL" and "critical_value" in codes(item)
            assert item["urgency"] in ("urgent", "immediate")
        else:
            assert analyte["flag"] == "L"
        below_50 += platelets < 50
    assert (below_50, below_20) == (223, 68)  # README: 223 below 50, 68 below 20
    reasons = [u["reason"] for u in body["unused"] if u["reason"].startswith("platelets: the value is censored")]
    assert reasons == ["platelets: the value is censored (< 5); only an exact value can be interpreted"] * 3


def test_mimic_admission_history_is_stored_through_fhir(make_app, mimic_low_platelets):
    client = make_app(CLOCK_SKEW_SECONDS=MIMIC_CLOCK_SKEW_SECONDS).test_client()  # MIMIC dates lie in 2102-2202
    hadm = next(
        key[0]
        for key, _ in mimic_low_platelets
        if key[0] and sum(other[0] == key[0] for other, _ in mimic_low_platelets) >= 3
    )
    serial = [group for group in mimic_low_platelets if group[0][0] == hadm][:3]
    body = answer_of(client, mimic_transaction(serial), query="")
    assert all(item["stored"]["duplicate"] is False for item in body["interpretations"])
    assert all("delta" in item for item in body["interpretations"])
    record = client.get(f"/api/v1/patients/Patient/mimic-{hadm}/results").get_json()
    assert len(record["results"]) == len(serial)


# --- documentation --------------------------------------------------------------------------------


def test_the_openapi_document_describes_the_endpoint(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/fhir/interpret"]["post"]
    assert set(operation["requestBody"]["content"]) == {FHIR_JSON, "application/json"}
    assert set(operation["responses"]) >= {"200", "400", "413", "415", "422"}
    assert "FhirInterpretations" in spec["components"]["schemas"]


def test_the_documented_answer_schema_admits_the_source_block(client):
    """The answer is the Interpretation plus `source`; the schema once said allOf with Interpretation, whose
    additionalProperties: false refused `source` (schemathesis: response violates schema)."""
    from labservice.api.fhir import EXAMPLE, FhirInterpretationSchema

    [interpretation] = answer_of(client, EXAMPLE)["interpretations"]
    assert FhirInterpretationSchema().validate(interpretation) == {}
    documented = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]["FhirInterpretation"]
    assert set(interpretation) <= set(documented["properties"])
    assert documented["properties"]["source"]["allOf"] == [{"$ref": "#/components/schemas/FhirSource"}]
