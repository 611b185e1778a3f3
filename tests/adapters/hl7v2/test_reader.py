"""Real messages → our JSON CBC documents, with locations, source and every OBX not used.

Expected values are those of the fixture files (fixtures/README.md quotes them) and clinical-rules §1.
"""

from __future__ import annotations

from datetime import UTC

import pytest

from labservice.adapters.hl7v2.codes import load_code_map
from labservice.adapters.hl7v2.reader import ReadSettings, read_message, read_settings
from labservice.adapters.hl7v2.text import decode, normalise
from labservice.core.ruleset import default_ruleset
from tests.adapters.hl7v2.samples import (
    LAB_ORU_1,
    LAB_ORU_2,
    NHAPI_ORF,
    NHAPI_ORU,
    NIST_LRI,
    raw,
    replace_field,
    text,
)

RS = default_ruleset()
SETTINGS = ReadSettings(RS, load_code_map(RS), UTC, "UTC")


def read(path_or_text, settings=SETTINGS):
    body = raw(path_or_text) if not isinstance(path_or_text, str) else path_or_text.encode()
    return read_message(normalise(decode(body)), settings)


def unused_at(result, location):
    return next(entry for entry in result.unused if entry["location"] == location)


def test_nhapi_oru_local_codes_give_one_cbc():
    result = read(NHAPI_ORU)
    assert result.errors == {}
    [cbc] = result.cbcs
    doc = cbc.document
    assert doc["patient"] == {"id": "40206609", "sex": "female", "birth_date": "1955-10-05"}  # PID-3, -8, -7
    assert doc["collected_at"] == "2005-09-21T05:20:00+00:00"  # OBR-7 200509210520, no offset: UTC
    assert doc["results"]["platelets"] == {
        "value": 45.0,
        "unit": "k/uL",
        "reference_range": {"low": 150.0, "high": 400.0},
    }
    assert doc["results"]["wbc"]["value"] == 20.0
    assert doc["results"]["hemoglobin"] == {
        "value": 12.0,
        "unit": "g/dL",
        "reference_range": {"low": 14.0, "high": 24.0},
    }
    assert set(doc["results"]) == {"wbc", "rbc", "hemoglobin", "hematocrit", "mcv", "mch", "mchc", "rdw", "platelets"}
    assert cbc.source["observations"]["platelets"] == "OBR[1].OBX[17]"
    assert cbc.locations["results.platelets.unit"] == "OBR[1].OBX[17]-6"
    assert cbc.locations["patient.birth_date"] == "PID[1]-7"
    assert any("no UTC offset" in note for note in cbc.source["notes"])


def test_nhapi_status_z_is_used_and_labelled_not_final():
    [cbc] = read(NHAPI_ORU).cbcs
    labelled = {entry["analyte"]: entry["status"] for entry in cbc.source["non_final"]}
    assert labelled == dict.fromkeys(cbc.document["results"], "Z")


def test_nhapi_text_comments_and_mpv_are_reported_not_used():
    result = read(NHAPI_ORU)
    assert "TX" in unused_at(result, "OBR[1].OBX[18]")["reason"]  # PLTC's TX comment
    mpv = unused_at(result, "OBR[1].OBX[19]")
    assert mpv["code"] == "MPV" and "not in the local-code map" in mpv["reason"]
    assert len(result.unused) == 11  # 9 TX comments of the used results + MPV and its comment


def test_orf_r04_gives_three_cbcs_and_its_corrected_wbc_is_final():
    result = read(NHAPI_ORF)
    assert len(result.cbcs) == 3
    for number, cbc in enumerate(result.cbcs, start=1):
        assert cbc.source["obr"] == f"OBR[{number}]"
        assert cbc.document["results"]["platelets"]["value"] == 2.0  # PLTC 2 k/uL
        assert cbc.document["results"]["wbc"]["value"] == 1.1  # status C
        labelled = {entry["analyte"] for entry in cbc.source["non_final"]}
        assert "wbc" not in labelled and "platelets" in labelled  # C is final, Z is not
        assert cbc.document["patient"]["id"] == "2019877"


def test_lab_oru_1_pending_values_and_morphology_codes_are_reported():
    result = read(LAB_ORU_1)
    hemogram = result.cbcs[0]
    # Only the haematocrit (20570-8, 40.1 %, status P) is a CBC count of clinical-rules §1 with a value
    assert hemogram.document["results"] == {"hematocrit": {"value": 40.1, "unit": "%"}}
    assert hemogram.source["non_final"] == [
        {"analyte": "hematocrit", "observation": "OBR[1].OBX[4]", "status": "P", "meaning": "preliminary"}
    ]
    hgb = unused_at(result, "OBR[1].OBX[3]")
    assert hgb["code"] == "20509-6" and "status I" in hgb["reason"] and "not assessed" in hgb["reason"]
    leukocytes = unused_at(result, "OBR[1].OBX[1]")
    assert leukocytes["code"] == "11156-7" and "LOINC 11156-7" in leukocytes["reason"]
    platelets = unused_at(result, "OBR[1].OBX[5]")
    assert platelets["code"] == "11125-2" and platelets["value"] == "221"
    # OBR-7 is empty: the specimen's SPM-17 20141006053500+0700 is the collection time
    assert hemogram.document["collected_at"] == "2014-10-06T05:35:00+07:00"
    assert hemogram.source["collected_at"] == "SPM[1]-17"


def test_a_site_map_reads_fhir_converter_morphology_codes_as_counts(tmp_path):
    site = tmp_path / "site.csv"
    site.write_text("code,coding_system,analyte\n11125-2,LN,platelets\n11156-7,LN,wbc\n", encoding="utf-8")
    result = read(LAB_ORU_1, read_settings(RS, site))
    hemogram = result.cbcs[0]
    assert hemogram.document["results"]["platelets"] == {"value": 221.0, "unit": "giga.l-1"}
    assert hemogram.source["observations"]["platelets"] == "OBR[1].OBX[5]"
    assert "wbc" not in hemogram.document["results"]  # 11156-7 is mapped, but its value is pending (I)
    assert "status I" in unused_at(result, "OBR[1].OBX[1]")["reason"]


def test_lab_oru_2_keeps_its_unit_for_the_validator():
    # HGB 13.4 'g/l-1' is not a unit of units.csv: the reader passes it on; validation refuses it
    result = read(LAB_ORU_2)
    hemogram = result.cbcs[1]
    assert hemogram.document["results"]["hemoglobin"] == {"value": 13.4, "unit": "g/l-1"}
    assert hemogram.locations["results.hemoglobin.unit"] == "OBR[2].OBX[1]-6"


def test_nist_lri_values_and_ranges_as_sent():
    [cbc] = read(NIST_LRI).cbcs
    results = cbc.document["results"]
    assert results["wbc"] == {
        "value": 105600.0,
        "unit": "{cells}/uL",
        "reference_range": {"low": 4300.0, "high": 10800.0},
    }
    assert results["platelets"] == {
        "value": 210000.0,
        "unit": "{cells}/uL",
        "reference_range": {"low": 150000.0, "high": 350000.0},
    }
    assert results["hemoglobin"]["unit"] == "g/mL"
    assert results["rbc"]["reference_range"] == {"low": 4.3, "high": 6.2}  # "4.3 to 6.2"
    assert cbc.document["collected_at"] == "2011-01-03T14:34:28-08:00"
    assert cbc.document["patient"] == {"id": "PATID1234", "sex": "male", "birth_date": "1961-06-15"}


def test_empty_obx5_is_not_assessed_and_a_non_number_is_an_error():
    body = replace_field(text(NHAPI_ORU), ("OBX", 17), 5, "")
    result = read(body)
    assert "platelets" not in result.cbcs[0].document["results"]
    assert "no value in OBX-5" in unused_at(result, "OBR[1].OBX[17]")["reason"]
    result = read(replace_field(text(NHAPI_ORU), ("OBX", 17), 5, "many"))
    assert result.errors == {"OBR[1].OBX[17]-5": ["platelets: 'many' is not a number"]}


@pytest.mark.parametrize("status", ["X", "D", "W", "I"])
def test_withdrawn_or_missing_results_are_never_used(status):
    result = read(replace_field(text(NHAPI_ORU), ("OBX", 17), 11, status))
    assert "platelets" not in result.cbcs[0].document["results"]
    assert f"status {status}" in unused_at(result, "OBR[1].OBX[17]")["reason"]


def test_a_censored_count_is_not_assessed():
    body = replace_field(replace_field(text(NHAPI_ORU), ("OBX", 17), 2, "SN"), ("OBX", 17), 5, "<^5")
    result = read(body)
    assert "platelets" not in result.cbcs[0].document["results"]
    assert "censored value <5" in unused_at(result, "OBR[1].OBX[17]")["reason"]


def test_missing_obx6_is_an_error_unless_the_site_map_gives_the_unit(tmp_path):
    body = replace_field(text(NHAPI_ORU), ("OBX", 17), 6, "")
    result = read(body)
    assert list(result.errors) == ["OBR[1].OBX[17]-6"]
    assert result.codes["OBR[1].OBX[17]-6"] == "101"  # HL7 table 0357: required field missing
    site = tmp_path / "site.csv"
    site.write_text("code,analyte,unit\nPLTC,platelets,k/uL\n", encoding="utf-8")
    result = read(body, read_settings(RS, site))
    assert result.errors == {}
    assert result.cbcs[0].document["results"]["platelets"]["unit"] == "k/uL"


def test_a_range_not_understood_is_noted_and_left_out():
    result = read(replace_field(text(NHAPI_ORU), ("OBX", 17), 7, "see report"))
    cbc = result.cbcs[0]
    assert "reference_range" not in cbc.document["results"]["platelets"]
    assert any(note.startswith("OBR[1].OBX[17]-7") for note in cbc.source["notes"])


def test_no_collection_time_means_no_age_and_a_note():
    result = read(replace_field(text(NHAPI_ORU), ("OBR", 1), 7, ""))
    cbc = result.cbcs[0]
    assert "collected_at" not in cbc.document
    assert "birth_date" not in cbc.document["patient"]
    assert any("no collection time" in note for note in cbc.source["notes"])


def test_a_message_without_pid_has_no_patient():
    body = "\r".join(line for line in text(NHAPI_ORU).split("\r") if not line.startswith("PID"))
    cbc = read(body).cbcs[0]
    assert "patient" not in cbc.document
    assert any("no PID" in note for note in cbc.source["notes"])


def test_the_medical_record_number_is_preferred_in_pid3():
    body = replace_field(text(NIST_LRI), ("PID", 1), 3, "X99^^^OTHER^PI~PATID1234^^^NIST MPI^MR")
    assert read(body).cbcs[0].document["patient"]["id"] == "PATID1234"


def test_an_alternate_loinc_identifier_is_read():
    body = replace_field(text(NHAPI_ORU), ("OBX", 17), 3, "PLATELETS^Platelet count^99LOCAL^777-3^^LN")
    assert read(body).cbcs[0].document["results"]["platelets"]["value"] == 45.0


def test_without_obr7_and_spm_the_observation_time_is_the_collection_time():
    # NIST LRI: OBR-7 and SPM-17 are 20110103143428-0800, and so is every OBX-14
    lines = [line for line in text(NIST_LRI).split("\r") if not line.startswith("SPM")]
    body = replace_field("\r".join(lines), ("OBR", 1), 7, "")
    cbc = read(body).cbcs[0]
    assert cbc.document["collected_at"] == "2011-01-03T14:34:28-08:00"
    assert cbc.source["collected_at"] == "OBR[1].OBX[1]-14"


def _with_second_platelet_result(first_status: str, second_status: str) -> str:
    """nHapi's ORU with its PLTC (OBX 17, 45 k/uL) given `first_status`, and a second PLTC 40 after it."""
    body = replace_field(text(NHAPI_ORU), ("OBX", 17), 11, first_status)
    lines = body.split("\r")
    index = next(i for i, line in enumerate(lines) if line.startswith("OBX|9|NM|PLTC|"))
    lines.insert(index + 1, f"OBX|9|NM|PLTC||40|k/uL|150-400|L|||{second_status}")
    return "\r".join(lines)


def test_a_second_result_for_an_analyte_is_reported_not_used():
    result = read(_with_second_platelet_result("F", "F"))
    assert result.cbcs[0].document["results"]["platelets"]["value"] == 45.0
    assert "the first (OBR[1].OBX[17]) is used" in unused_at(result, "OBR[1].OBX[18]")["reason"]


def test_a_final_result_replaces_a_preliminary_one_of_the_same_group():
    result = read(_with_second_platelet_result("P", "C"))
    cbc = result.cbcs[0]
    assert cbc.document["results"]["platelets"]["value"] == 40.0
    assert cbc.source["observations"]["platelets"] == "OBR[1].OBX[18]"
    assert "platelets" not in {entry["analyte"] for entry in cbc.source["non_final"]}
    assert "replaced by the final result" in unused_at(result, "OBR[1].OBX[17]")["reason"]


def test_nist_lri_critical_flags_in_obx8_are_handed_on():
    # clinical-rules §3 v2: OBX-8 LL / HH / AA is the laboratory's critical flag, honoured by the engine. The NIST
    # LRI message flags WBC 105600 {cells}/uL, lymphocytes 41.2 and neutrophils 58 (10*3/uL) HH; its other CBC
    # OBX-8 are N or L, which the service sets itself.
    [cbc] = read(NIST_LRI).cbcs
    assert cbc.document["laboratory_flags"] == {"wbc": "HH", "lymphocytes": "HH", "neutrophils": "HH"}
    assert cbc.locations["laboratory_flags.lymphocytes"].endswith("-8")
