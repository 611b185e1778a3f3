"""read_fhir on the real-client fixtures; expected values are those of the files and their README."""

from __future__ import annotations

import json

import pytest

from labservice.adapters.fhir.reader import read_fhir
from tests.shared_data import FIXTURES

SPEC = FIXTURES / "fhir-r4-spec-examples"
US_CORE = FIXTURES / "us-core-cbc"
SYNTHEA = FIXTURES / "synthea-r4-bundles"

# fixtures/README.md, synthea-r4-bundles: CBC panels (58410-2) and platelet values per file.
SYNTHEA_PANELS = {
    "Micah_Schinner": (9, 227.8, 441.0),
    "Granville_Crooks": (8, 212.7, 379.1),
    "Cleo_Friesen": (8, 213.7, 433.2),
    "Whitney_Ortiz": (8, 207.6, 446.3),
    "Lavern_Kassulke": (8, 154.7, 417.3),
    "Jordan_Cruickshank": (2, 180.1, 392.4),
    "Clemente_Kreiger": (2, 151.4, 306.0),
    "Asa_Hermiston": (2, 150.3, 186.8),
    "Stanley_Balistreri": (2, 236.1, 320.7),
    "Joie_Morissette": (2, 325.8, 328.1),
}


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _synthea(name):
    return next(SYNTHEA.glob(f"{name}_*.json"))


def _panel_code(cbc):
    return cbc.report["code"]["coding"][0]["code"]


# --- FHIR specification examples ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["diagnosticreport-example.json", "diagnosticreport-example-ghp.json"])
def test_the_spec_cbc_reports_give_one_cbc_with_the_values_of_the_file(name):
    read = read_fhir(_load(SPEC / name))
    assert len(read.cbcs) == 1
    results = read.cbcs[0].document["results"]
    assert results["platelets"] == {"value": 444.0, "unit": "10*9/L", "reference_range": {"low": 150.0, "high": 450.0}}
    assert results["neutrophils"] == {"value": 0.9, "unit": "10*9/L", "reference_range": {"low": 2.0, "high": 7.5}}
    assert results["neutrophils_percent"] == {"value": 20.0, "unit": "%"}
    assert results["hemoglobin"] == {"value": 176.0, "unit": "g/L", "reference_range": {"low": 135.0, "high": 180.0}}
    assert results["hematocrit"] == {"value": 55.0, "unit": "%", "reference_range": {"low": 38.0, "high": 52.0}}
    assert results["wbc"]["value"] == 4.6 and results["rbc"]["value"] == 5.9
    assert read.cbcs[0].document["patient"] == {"id": "Patient/pat2"}  # the Patient is not in the file
    assert read.unused == []


def test_ghp_groups_the_cbc_panel_under_its_report_and_ignores_chemistry_and_urinalysis():
    read = read_fhir(_load(SPEC / "diagnosticreport-example-ghp.json"))
    cbc = read.cbcs[0]
    assert cbc.report_reference == "DiagnosticReport/ghp"
    assert cbc.document["collected_at"] == "2015-08-16T06:40:17Z"
    # 51 Observations: 11 CBC analytes used (clinical-rules §1 v2: lymphocyte %, LOINC 736-9, is now one)
    # and the CBC panel p2; the 6 other differential results (% and absolute monocytes, eosinophils,
    # basophils), chemistry p1 + o1-o22 and urinalysis p3 + u1-u9 are ignored, as are the 3 Specimens.
    assert len(cbc.observations) == 11
    assert "lymphocytes_percent" in cbc.document["results"]
    assert read.ignored == {"Observation": 39, "Specimen": 3}


def test_f001_bloodexam_holds_only_references_so_each_is_unused_with_the_reason():
    read = read_fhir(_load(SPEC / "diagnosticreport-example-f001-bloodexam.json"))
    assert read.cbcs == []
    assert [(u.resource_type, u.id) for u in read.unused] == [
        ("Observation", "f001"),
        ("Observation", "f002"),
        ("Observation", "f003"),
        ("Observation", "f004"),
        ("Observation", "f005"),
        ("DiagnosticReport", "f001"),
    ]
    assert read.unused[0].path == "Bundle.entry[0].resource(DiagnosticReport/f001).result[0]"
    assert read.unused[0].reason == "the reference 'Observation/f001' does not resolve in the input"
    assert read.ignored == {"ServiceRequest": 1}


def test_f004_and_f005_single_observations():
    rbc = read_fhir(_load(SPEC / "observation-example-f004-erythrocyte.json")).cbcs[0]
    assert rbc.document["results"]["rbc"]["value"] == 4.12
    assert rbc.document["results"]["rbc"]["unit"] == "10*12/L"  # the UCUM code, not the text 10^12/L
    hb = read_fhir(_load(SPEC / "observation-example-f005-hemoglobin.json")).cbcs[0]
    assert hb.document["results"]["hemoglobin"] == {
        "value": 7.2,
        "unit": "g/dL",
        "reference_range": {"low": 7.5, "high": 10.0},
    }
    assert hb.document["collected_at"] == "2013-04-05T10:30:10+01:00"  # effectivePeriod.start


# --- US Core --------------------------------------------------------------------------------------


def test_us_core_report_alone_has_eight_unresolved_results():
    read = read_fhir(_load(US_CORE / "diagnosticreport-cbc.json"))
    assert read.cbcs == []
    assert [u.id for u in read.unused] == [
        "cbc-leukocytes",
        "cbc-erythrocytes",
        "cbc-hemoglobin",
        "cbc-hematocrit",
        "cbc-mcv",
        "cbc-mch",
        "cbc-mchc",
        "cbc-platelets",
        "cbc",
    ]


def test_us_core_files_in_one_bundle_make_one_cbc_and_the_inverted_ranges_are_said():
    resources = [_load(path) for path in sorted(US_CORE.glob("*.json"))]
    read = read_fhir(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource} for resource in resources]}
    )
    assert len(read.cbcs) == 1
    results = read.cbcs[0].document["results"]
    assert results["platelets"] == {"value": 200.0, "unit": "10*3/uL", "reference_range": {"low": 150.0, "high": 450.0}}
    assert results["wbc"]["value"] == 10.0 and results["hemoglobin"]["value"] == 17.0
    assert len(results) == 8
    # The US Core examples give hematocrit 46-38 %, MCV 87.3-82.4 fL and MCH 33.2-27.5 pg as low-high.
    assert sorted(u.id for u in read.unused) == ["cbc-hematocrit", "cbc-mch", "cbc-mcv"]
    assert all("inverted" in u.reason for u in read.unused)
    assert "collected_at" not in read.cbcs[0].document  # effectiveDateTime is a date: 2005-07-05


# --- Synthea --------------------------------------------------------------------------------------


def test_synthea_51_cbc_panels_across_the_ten_bundles():
    panels = 0
    for name, (count, low, high) in SYNTHEA_PANELS.items():
        read = read_fhir(_load(_synthea(name)))
        cbcs = [c for c in read.cbcs if _panel_code(c) == "58410-2"]
        assert len(cbcs) == count, name
        platelets = [c.document["results"]["platelets"]["value"] for c in cbcs]
        assert (round(min(platelets), 1), round(max(platelets), 1)) == (low, high), name
        assert all(c.document["results"]["platelets"]["unit"] == "10*3/uL" for c in cbcs)
        panels += len(cbcs)
    assert panels == 51


def test_synthea_patient_context_comes_from_the_bundle_patient():
    read = read_fhir(_load(_synthea("Jordan_Cruickshank")))
    patient = read.cbcs[0].document["patient"]
    # The Patient: MR identifier 5de38439-..., female, born 1965-07-05.
    assert patient == {"id": "5de38439-d320-46d3-854d-3c098e88de4c", "sex": "female", "birth_date": "1965-07-05"}
    assert read.cbcs[0].document["collected_at"] == "2011-07-25T13:09:09+00:00"
    assert read.cbcs[0].subject == "urn:uuid:3afaeb2a-9f18-40b5-8fe7-dfd882de2f2b"


def test_jordan_cruickshank_alternative_codes_and_units():
    read = read_fhir(_load(_synthea("Jordan_Cruickshank")))
    other = [c for c in read.cbcs if _panel_code(c) != "58410-2"]
    assert len(other) == 1
    results = other[0].document["results"]
    codes = {u.analyte: u.resource["code"]["coding"][0]["code"] for u in other[0].observations}
    assert codes["platelets"] == "26515-7" and codes["wbc"] == "26464-8" and codes["mcv"] == "30428-7"
    assert codes["hematocrit"] == "20570-8"
    assert round(results["platelets"]["value"], 1) == 189.6 and results["platelets"]["unit"] == "K/uL"
    assert round(results["wbc"]["value"], 2) == 11.07 and results["wbc"]["unit"] == "K/uL"
    assert "rdw" not in results  # 30385-9 (RDW in %) is not a code of clinical-rules §1


def test_synthea_rdw_sd_in_fl_is_used_for_every_panel():
    """clinical-rules §1 v2: "21000-5 is RDW-SD in fL (Synthea sends it). Accept RDW-SD as its own analyte
    `rdw_sd` (fL)": the Synthea RDW, once unused, is now read in every panel."""
    read = read_fhir(_load(_synthea("Micah_Schinner")))
    assert read.unused == []
    assert len(read.cbcs) == 9  # one 21000-5 RDW in fL per panel (fixtures README: "RDW (21000-5) is given in fL")
    for cbc in read.cbcs:
        assert cbc.document["results"]["rdw_sd"]["unit"] == "fL"
        assert "rdw" not in cbc.document["results"]
