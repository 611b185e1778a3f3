"""The FHIR R4 answer Bundle (labservice.adapters.fhir.output.to_bundle), checked with fhir.resources R4B.

Expected flags come from clinical-rules.md: section 2 (a value outside the range in use is L/H; the
laboratory's range comes first; a value on a bound is inside) and section 3 (LL/HH only past the
critical limits: platelets < 20, neutrophils < 0.5, haemoglobin < 7.0 g/dL, WBC < 2.0). Values and
ranges come from the fixture files (../shared/fixtures, CC0: FHIR R4 spec examples, US Core 9.0.0).
"""

from __future__ import annotations

import copy
import importlib
import json
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from labservice.adapters.fhir.output import to_bundle
from labservice.adapters.fhir.reader import read_fhir
from labservice.adapters.fhir.terminology import (
    FLAG_DETAIL_EXTENSION,
    FLAG_PRIORITY_EXTENSION,
    INTERPRETATION_SYSTEM,
    SNOMED_SYSTEM,
)
from labservice.core.ruleset import default_ruleset
from tests.adapters.fhir.test_output_builders import SPEC, US_CORE, interpret, load, spec_example_read
from tests.shared_data import FIXTURES


def validate(bundle: dict) -> None:
    """Every resource on its own, then the whole Bundle, through the R4B models (the oracle)."""
    for entry in bundle["entry"]:
        resource = entry["resource"]
        module = importlib.import_module(f"fhir.resources.R4B.{resource['resourceType'].lower()}")
        getattr(module, resource["resourceType"]).model_validate(resource)
    Bundle.model_validate(bundle)


def references(node: Any) -> list[str]:
    """Every Reference.reference string in a resource, at any depth."""
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


def check_links(bundle: dict) -> None:
    """fullUrls are unique; every urn: reference, and every reference the answer adds, resolves in the Bundle."""
    urls = [entry["fullUrl"] for entry in bundle["entry"]]
    assert len(urls) == len(set(urls))
    for entry in bundle["entry"]:
        for reference in references(entry["resource"]):
            if reference.startswith("urn:"):
                assert reference in urls, reference
    for report in by_type(bundle, "DiagnosticReport"):
        assert report["resource"]["result"]
        assert all(item["reference"] in urls for item in report["resource"]["result"])
    for flag in by_type(bundle, "Flag"):
        details = [
            e["valueReference"]["reference"] for e in flag["resource"]["extension"] if e["url"] == FLAG_DETAIL_EXTENSION
        ]
        assert details and all(reference in urls for reference in details)


def by_type(bundle: dict, resource_type: str) -> list[dict]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def flag_of(observation: dict) -> str | None:
    codes = [
        c["code"]
        for i in observation.get("interpretation", [])
        for c in i["coding"]
        if c["system"] == INTERPRETATION_SYSTEM
    ]
    assert len(codes) <= 1
    return codes[0] if codes else None


def flags_by_loinc(bundle: dict) -> dict[str, str | None]:
    out = {}
    for entry in by_type(bundle, "Observation"):
        loinc = next(c["code"] for c in entry["resource"]["code"]["coding"] if c.get("system") == "http://loinc.org")
        out[loinc] = flag_of(entry["resource"])
    return out


def answer_bundle(resource: dict) -> tuple[dict, list[dict]]:
    """Read with the FHIR reader, interpret as the endpoint does (not stored), answer as FHIR."""
    read = read_fhir(resource)
    answers = interpret(read)
    return to_bundle(read, answers, default_ruleset()), answers


def snomed_codes(report: dict) -> set[str]:
    return {
        c["code"]
        for concept in report.get("conclusionCode", [])
        for c in concept["coding"]
        if c["system"] == SNOMED_SYSTEM
    }


# --- the FHIR R4 specification's CBC examples ------------------------------------------------


def test_spec_example_bundle_is_valid_and_annotated():
    read, bundle_in = spec_example_read()
    original = copy.deepcopy(bundle_in)
    bundle = to_bundle(read, interpret(read), default_ruleset())
    validate(bundle)
    check_links(bundle)
    assert bundle["type"] == "collection"
    observations = {e["resource"]["id"]: e for e in by_type(bundle, "Observation")}
    # fullUrls of the client's Bundle are kept
    assert observations["r9"]["fullUrl"] == "https://example.com/base/Observation/r9"
    # Neutrophils 0.9 x10*9/L against the lab's 2.0-7.5: low, but not below the critical 0.5 (§3) -> L.
    # The spec example itself flags it LL; ours replaces it.
    assert bundle_in["entry"][9]["resource"]["interpretation"][0]["coding"][0]["code"] == "LL"
    assert flag_of(observations["r9"]["resource"]) == "L"
    # Lymphocytes 0.9 against 1.1-4.0 -> L; haemoglobin 176 g/L in 135-180 -> N; platelets 444 in 150-450 -> N
    assert flag_of(observations["r11"]["resource"]) == "L"
    assert flag_of(observations["r1"]["resource"]) == "N"
    assert flag_of(observations["r6"]["resource"]) == "N"
    # Haematocrit 55 % (38-52), MCV 99 fL (80-98), MCH 36 pg (27-35) -> H
    assert [flag_of(observations[i]["resource"]) for i in ("r3", "r4", "r5")] == ["H", "H", "H"]
    # The lab's range was used, in the Observation's own unit (haemoglobin in g/L)
    haemoglobin_range = observations["r1"]["resource"]["referenceRange"][0]
    assert (haemoglobin_range["low"]["value"], haemoglobin_range["high"]["value"]) == (135, 180)
    assert haemoglobin_range["low"]["code"] == "g/L"
    assert "laboratory" in haemoglobin_range["text"]
    assert bundle_in == original  # the input is never modified


def test_spec_example_report_is_the_clients_copy_with_our_conclusion():
    bundle_in = load(SPEC / "diagnosticreport-example.json")
    bundle, answers = answer_bundle(bundle_in)
    validate(bundle)
    check_links(bundle)
    [report] = by_type(bundle, "DiagnosticReport")
    resource = report["resource"]
    assert resource["id"] == "101" and resource["identifier"][0]["value"] == "5234342"
    assert resource["status"] == "final" and resource["subject"] == {"reference": "Patient/pat2"}
    assert resource["effectiveDateTime"] == "2011-03-04T08:30:00+11:00"
    assert "not a diagnosis" in resource["conclusion"] and answers[0]["summary"] in resource["conclusion"]
    # Neutropenia (0.9 < 1.5, §4) and lymphopenia (0.9 < 1.1): only neutropenia has a verified code (snomed_ct.csv)
    assert snomed_codes(resource) == {"165517008"}
    # clinical-rules §3 v2: the laboratory's LL on neutrophils 0.9 is honoured (a critical value), and §9 v2 a new
    # critical value asks for "immediate"; the Flag points at the report and the neutrophil Observation
    assert answers[0]["analytes"]["neutrophils"]["flag"] == "LL"
    assert answers[0]["analytes"]["neutrophils"]["flag_origin"] == "laboratory"
    [flag] = by_type(bundle, "Flag")
    assert flag["resource"]["code"]["coding"][0]["code"] == "immediate"
    assert flag["resource"]["subject"] == {"reference": "Patient/pat2"}
    details = [
        e["valueReference"]["reference"] for e in flag["resource"]["extension"] if e["url"] == FLAG_DETAIL_EXTENSION
    ]
    [neutrophils] = [e for e in by_type(bundle, "Observation") if e["resource"]["id"] == "r9"]
    assert details == [report["fullUrl"], neutrophils["fullUrl"]]
    assert not by_type(bundle, "OperationOutcome")


def test_ghp_panel_example_is_valid():
    """The General Health Profile report, whose CBC is a hasMember panel among chemistry results."""
    bundle, _ = answer_bundle(load(SPEC / "diagnosticreport-example-ghp.json"))
    validate(bundle)
    check_links(bundle)
    flags = flags_by_loinc(bundle)
    # neutrophils 0.9 flagged LL by the laboratory: honoured (clinical-rules §3 v2); platelets 444 (150-450) N
    assert flags["751-8"] == "LL" and flags["777-3"] == "N"


# --- US Core ---------------------------------------------------------------------------------


def us_core_bundle() -> dict:
    """The US Core CBC report and its 8 Observations, sent together as a collection Bundle."""
    report = load(US_CORE / "diagnosticreport-cbc.json")
    entries = [{"fullUrl": "https://fhir.example.org/r4/DiagnosticReport/cbc", "resource": report}]
    for item in report["result"]:
        name = item["reference"].split("/", 1)[1]
        entries.append(
            {
                "fullUrl": f"https://fhir.example.org/r4/{item['reference']}",
                "resource": load(US_CORE / f"observation-{name}.json"),
            }
        )
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def test_us_core_cbc():
    bundle_in = us_core_bundle()
    original = copy.deepcopy(bundle_in)
    bundle, _ = answer_bundle(bundle_in)
    validate(bundle)
    check_links(bundle)
    assert bundle_in == original
    flags = flags_by_loinc(bundle)
    # With the fixture's own ranges: WBC 10 (4.5-11), RBC 4.58 (4.1-6.1), Hb 17 (16.5-21.5), PLT 200 (150-450) -> N;
    # MCHC 34.7 g/dL above its range 30-34 -> H. Haematocrit, MCV and MCH carry inverted ranges (46-38,
    # 87.3-82.4, 33.2-27.5), so the fallback applies (§2): Hct 43 % in 36-50 (no sex: envelope), MCV 85 in 83-101,
    # MCH 30 in 27-32 -> N.
    assert flags == {
        "6690-2": "N",
        "789-8": "N",
        "718-7": "N",
        "4544-3": "N",
        "787-2": "N",
        "785-6": "N",
        "786-4": "H",
        "777-3": "N",
    }
    [report] = by_type(bundle, "DiagnosticReport")
    assert report["resource"]["id"] == "cbc"
    assert report["resource"]["meta"]["profile"] == load(US_CORE / "diagnosticreport-cbc.json")["meta"]["profile"]
    assert len(report["resource"]["result"]) == 8
    assert "conclusionCode" not in report["resource"]  # no finding
    ids = {e["resource"]["id"] for e in by_type(bundle, "Observation")}
    assert ids == {
        "cbc-leukocytes",
        "cbc-erythrocytes",
        "cbc-hemoglobin",
        "cbc-hematocrit",
        "cbc-mcv",
        "cbc-mch",
        "cbc-mchc",
        "cbc-platelets",
    }
    # The inverted ranges are reported, each at its place in the input
    [outcome] = by_type(bundle, "OperationOutcome")
    expressions = [issue["expression"][0] for issue in outcome["resource"]["issue"]]
    assert expressions == [
        f"Bundle.entry[{i}].resource(Observation/cbc-{name}).referenceRange[0]"
        for i, name in ((4, "hematocrit"), (5, "mcv"), (6, "mch"))
    ]
    mch = next(e for e in by_type(bundle, "Observation") if e["resource"]["id"] == "cbc-mch")["resource"]
    assert (mch["referenceRange"][0]["low"]["value"], mch["referenceRange"][0]["high"]["value"]) == (27, 32)
    assert "fallback" in mch["referenceRange"][0]["text"]


# --- a pancytopenia CBC, no report, one result preliminary -------------------------------------


def observation(code: str, display: str, value: float, unit: str, status: str = "final") -> dict:
    return {
        "resourceType": "Observation",
        "id": f"obs-{code}",
        "status": status,
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": {"reference": "urn:uuid:11111111-2222-4333-8444-555555555555"},
        "effectiveDateTime": "2026-11-20T08:30:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def pancytopenia_bundle() -> dict:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-05-01"}
    observations = [
        observation("777-3", "Platelets", 12, "10*3/uL"),
        observation("6690-2", "Leukocytes", 1.1, "10*3/uL"),
        observation("751-8", "Neutrophils", 0.3, "10*3/uL", status="preliminary"),
        observation("718-7", "Hemoglobin", 7.5, "g/dL"),
    ]
    entries = [{"fullUrl": "urn:uuid:11111111-2222-4333-8444-555555555555", "resource": patient}]
    entries += [
        {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}", "resource": obs}
        for i, obs in enumerate(observations)
    ]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def test_pancytopenia_cbc_without_report():
    bundle, answers = answer_bundle(pancytopenia_bundle())
    validate(bundle)
    check_links(bundle)
    # §3: platelets 12 < 20, neutrophils 0.3 < 0.5, WBC 1.1 < 2.0 are critical (LL); Hb 7.5 g/dL is low
    # against the adult female range 12.0-15.0 (§2) but not below the critical 7.0 -> L
    assert flags_by_loinc(bundle) == {"777-3": "LL", "6690-2": "LL", "751-8": "LL", "718-7": "L"}
    [report] = by_type(bundle, "DiagnosticReport")
    resource = report["resource"]
    assert resource["code"]["coding"][0]["code"] == "58410-2"  # a new CBC panel report
    assert resource["status"] == "preliminary"  # one result is preliminary
    assert resource["subject"] == {"reference": "urn:uuid:11111111-2222-4333-8444-555555555555"}
    assert resource["effectiveDateTime"] == "2026-11-20T08:30:00Z"
    # §4-§5: thrombocytopenia, neutropenia, anaemia (< 12.0, women), leukopenia (< 4.0) and pancytopenia;
    # their codes from snomed_ct.csv (marrow-failure range and critical value have none)
    assert snomed_codes(resource) == {"302215000", "165517008", "271737000", "84828003", "127034005"}
    # §9: new critical values ask for "immediate" and pancytopenia for "urgent"; the Flag cites them and the
    # Observations behind them. v2 changes this v1 expectation (`urgent`): clinical-rules.md §3 lines 99-102 and
    # §9 line 243 (*v2*: a new critical value asks for `immediate`).
    [flag] = by_type(bundle, "Flag")
    flag_resource = flag["resource"]
    assert flag_resource["code"]["coding"][0]["code"] == "immediate" == answers[0]["urgency"]
    assert "notify the treating clinician now" in flag_resource["code"]["text"]
    priority = next(e for e in flag_resource["extension"] if e["url"] == FLAG_PRIORITY_EXTENSION)
    assert priority["valueCodeableConcept"]["coding"][0]["code"] == "PH"
    assert "Pancytopenia" in flag_resource["code"]["text"] and "Critical value" in flag_resource["code"]["text"]
    details = {
        e["valueReference"]["reference"] for e in flag_resource["extension"] if e["url"] == FLAG_DETAIL_EXTENSION
    }
    assert details == {report["fullUrl"], *(f"urn:uuid:00000000-0000-4000-8000-00000000000{i}" for i in range(4))}
    assert flag_resource["subject"] == resource["subject"]
    # The Patient the subject points to comes along, so the reference resolves inside the answer
    [patient] = by_type(bundle, "Patient")
    assert patient["fullUrl"] == "urn:uuid:11111111-2222-4333-8444-555555555555"
    # The preliminary neutrophil count is named, at its place in the input
    [outcome] = by_type(bundle, "OperationOutcome")
    [issue] = outcome["resource"]["issue"]
    assert "neutrophils: preliminary" in issue["details"]["text"]
    assert issue["expression"][0].startswith("Bundle.entry[3].resource")


def test_single_observation_gets_a_new_report():
    """observation-example-f005-hemoglobin.json: haemoglobin 7.2 g/dL sent alone, with the lab's range 7.5-10."""
    resource_in = load(SPEC / "observation-example-f005-hemoglobin.json")
    bundle, _ = answer_bundle(resource_in)
    validate(bundle)
    check_links(bundle)
    [observation_entry] = by_type(bundle, "Observation")
    assert observation_entry["resource"]["id"] == "f005"
    assert flag_of(observation_entry["resource"]) == "L"  # 7.2 < 7.5 (the lab's), not < 7.0 (critical, §3)
    [report] = by_type(bundle, "DiagnosticReport")
    assert report["resource"]["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "58410-2",
        "display": "CBC panel - Blood by Automated count",
    }
    assert report["resource"]["status"] == "final"
    assert report["resource"]["result"] == [
        {"reference": observation_entry["fullUrl"], "display": "Hemoglobin [Mass/volume] in Blood"}
    ]
    assert report["resource"]["subject"] == {"reference": "Patient/f001"}
    assert report["resource"]["effectiveDateTime"] == "2013-04-05T10:30:10+01:00"
    assert not by_type(bundle, "OperationOutcome")


# --- unused resources ------------------------------------------------------------------------


def test_unused_resources_are_listed_with_id_path_and_reason():
    """A Synthea bundle whose RDW-SD Observations (21000-5, fL) are recoded as RDW-CV (788-0): a width in fL
    cannot be RDW-CV (%), so the reader cannot use them (reference_ranges/units.csv). Unchanged, Synthea's
    RDW-SD is used as `rdw_sd` (clinical-rules §1 v2)."""
    path = FIXTURES / "synthea-r4-bundles" / "Asa_Hermiston_4384bf23-1dc3-48ca-8c84-89fbaff201ae.json"
    text = path.read_text(encoding="utf-8")
    resource_in = json.loads(text.replace('"code": "21000-5"', '"code": "788-0"'))
    read = read_fhir(resource_in)
    assert read.unused  # the fixture's RDW Observations in fL, recoded as RDW-CV
    bundle = to_bundle(read, interpret(read), default_ruleset())
    validate(bundle)
    check_links(bundle)
    [outcome] = by_type(bundle, "OperationOutcome")
    issues = outcome["resource"]["issue"]
    assert [issue["expression"] for issue in issues] == [[unused.path] for unused in read.unused]
    for issue, unused in zip(issues, read.unused, strict=True):
        assert unused.id in issue["details"]["text"] and unused.reason in issue["details"]["text"]
        assert issue["diagnostics"] == unused.reason
    assert len(by_type(bundle, "DiagnosticReport")) == len(read.cbcs) == 2
    assert len(by_type(bundle, "Patient")) == 1  # one Patient for both CBCs


# --- ids -------------------------------------------------------------------------------------


def test_same_answers_give_the_same_bundle_and_ids_follow_the_interpretation():
    read = read_fhir(pancytopenia_bundle())
    answers = interpret(read)
    first = to_bundle(read, answers, default_ruleset())
    assert to_bundle(read, answers, default_ruleset()) == first
    other = to_bundle(read, interpret(read), default_ruleset())  # a new interpretation id
    assert other["id"] != first["id"]
    assert by_type(other, "Flag")[0]["fullUrl"] != by_type(first, "Flag")[0]["fullUrl"]
    [flag] = by_type(first, "Flag")
    assert flag["resource"]["identifier"][0]["value"] == answers[0]["id"]
    assert flag["fullUrl"] == f"urn:uuid:{flag['resource']['id']}"
