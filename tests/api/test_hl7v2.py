"""POST /api/v1/hl7v2/interpret with the real HL7 v2 fixtures, messy variants of them, and each error.

Values come from the fixture files (quoted in fixtures/README.md) and the decisions from
clinical-rules.md: counts in 10^9/L (§1: k/uL = 10^9/L; {cells}/uL ÷ 1000); thrombocytopenia < 150 and
CTCAE v5.0 platelet grades 1 = < LLN-75, 2 = < 75-50, 3 = < 50-25, 4 = < 25 (§4); WBC grade 3 = < 2.0-1.0
(§4); critical values platelets < 20, WBC < 2.0 and WBC > 30 (§3); anaemia below the WHO cut-off, 13.0
g/dL for men (§4), mild down to 11.0; an implausible value (haemoglobin > 30 g/dL) is refused with the
likely unit slip (§1); urgency `urgent` for a critical value, `soon` for thrombocytopenia < 100 (§9).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import hl7
import pytest
from sqlalchemy import select

from labservice.adapters.hl7v2.codes import LocalCodeError
from labservice.store.database import Database
from labservice.store.models import CbcResult
from labservice.store.repository import as_utc
from tests.adapters.hl7v2.samples import (
    ALL_FILES,
    BOM,
    ER7,
    LAB_ORU_1,
    LAB_ORU_2,
    NHAPI_ORF,
    NHAPI_ORU,
    NIST_LRI,
    raw,
    replace_field,
    text,
)
from tests.api.helpers import assert_problem

URL = "/api/v1/hl7v2/interpret"


def post(client, body: bytes | str, query: str = "?store=false", content_type: str = ER7, **headers: str):
    data = body.encode() if isinstance(body, str) else body
    return client.post(f"{URL}{query}", data=data, content_type=content_type, headers=headers)


def answer_of(client, body: bytes | str, query: str = "?store=false", **headers: str) -> dict[str, Any]:
    response = post(client, body, query, **headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def codes(interpretation: dict[str, Any]) -> list[str]:
    return [finding["code"] for finding in interpretation["findings"]]


def finding(interpretation: dict[str, Any], code: str) -> dict[str, Any]:
    return next(item for item in interpretation["findings"] if item["code"] == code)


def ack_of(response) -> hl7.Message:
    assert response.mimetype == ER7
    return hl7.parse(response.get_data(as_text=True))


# --- every fixture file ---------------------------------------------------------------------------

#: What each file gives: interpretations, or the 422 and the field it names.
EXPECTED = {
    "PipeParserV231Tests_ParseORUr01LongToXml.hl7": 1,
    "PipeParserV231Tests_ParseORFR04FromDHTest.hl7": 3,
    "LAB-ORU-1.hl7": 2,
    "LAB-ORU-2.hl7": "OBR[2].OBX[1]-6",  # HGB 13.4 'g/l-1': not a unit
    "LRI_2.0-NG_CBC_Typ_Message.hl7": "OBR[1].OBX[2]-5",  # HGB 12.5 g/mL = 1250 g/dL: implausible
}


def test_every_fixture_file_is_listed():
    assert {path.name for path in ALL_FILES} == set(EXPECTED)


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda path: path.name)
def test_every_fixture_file_through_the_endpoint(client, path):
    expected = EXPECTED[path.name]
    response = post(client, raw(path))
    if isinstance(expected, int):
        assert response.status_code == 200, response.get_data(as_text=True)
        answer = response.get_json()
        assert len(answer["interpretations"]) == expected
        for interpretation in answer["interpretations"]:
            assert interpretation["source"]["obr"].startswith("OBR[")
            assert interpretation["source"]["observations"]
        assert all(entry["reason"] for entry in answer["unused"])
    else:
        body = assert_problem(response, 422)
        assert expected in body["errors"]


def test_nhapi_pltc_45_is_grade_3_thrombocytopenia(client):
    answer = answer_of(client, raw(NHAPI_ORU))
    assert answer["message"]["control_id"] == "52780002432"
    [cbc] = answer["interpretations"]
    platelets = cbc["analytes"]["platelets"]
    assert (platelets["value"], platelets["unit"]) == (45.0, "10*9/L")  # 45 k/uL
    assert platelets["reference_range"]["low"] == 150.0  # the lab's 150-400
    assert platelets["flag"] == "L" and platelets["ctcae_grade"] == 3  # < 50-25
    assert finding(cbc, "thrombocytopenia")["grade"] == 3
    assert "critical_value" not in codes(cbc)  # 45 is not < 20
    assert cbc["urgency"] == "soon"  # thrombocytopenia < 100
    assert cbc["source"]["observations"]["platelets"] == "OBR[1].OBX[17]"
    assert {
        "analyte": "platelets",
        "observation": "OBR[1].OBX[17]",
        "status": "Z",
        "meaning": "'Z' is not in HL7 table 0085; read as not final",
    } in cbc["source"]["non_final"]


def test_nhapi_orf_pltc_2_is_grade_4_in_three_identical_cbcs(client):
    answer = answer_of(client, raw(NHAPI_ORF))
    assert [cbc["source"]["obr"] for cbc in answer["interpretations"]] == ["OBR[1]", "OBR[2]", "OBR[3]"]
    for cbc in answer["interpretations"]:
        platelets, wbc = cbc["analytes"]["platelets"], cbc["analytes"]["wbc"]
        assert (platelets["value"], platelets["ctcae_grade"], platelets["flag"]) == (2.0, 4, "LL")
        assert finding(cbc, "thrombocytopenia")["grade"] == 4
        assert (wbc["value"], wbc["ctcae_grade"], wbc["flag"]) == (1.1, 3, "LL")  # < 2.0-1.0; critical < 2.0
        assert {"critical_value", "leukopenia", "bicytopenia"} <= set(codes(cbc))
        # clinical-rules §3 (lines 99-105) and §9 (line 243) v2: a new critical value asks for `immediate`;
        # the three CBCs share one collection time, so none has an earlier stored CBC making it known.
        assert cbc["urgency"] == "immediate"
        assert "wbc" not in {entry["analyte"] for entry in cbc["source"]["non_final"]}  # status C


def test_lab_oru_1_pending_and_preliminary_results(client):
    answer = answer_of(client, raw(LAB_ORU_1))  # BOM and LF separators
    hemogram = answer["interpretations"][0]
    assert hemogram["source"]["obr"] == "OBR[1]"
    assert set(hemogram["analytes"]) == {"hematocrit"}
    assert hemogram["analytes"]["hematocrit"]["value"] == 40.1
    assert hemogram["source"]["non_final"][0]["status"] == "P"
    not_assessed = {entry["code"] for entry in hemogram["not_assessed"]}
    assert {"anemia", "thrombocytopenia", "leukopenia"} <= not_assessed  # never "normal"
    unused = {entry["location"]: entry for entry in answer["unused"]}
    assert unused["OBR[1].OBX[3]"]["status"] == "I" and unused["OBR[1].OBX[3]"]["code"] == "20509-6"
    assert unused["OBR[1].OBX[1]"]["status"] == "I" and unused["OBR[1].OBX[1]"]["code"] == "11156-7"
    assert "LOINC 11125-2" in unused["OBR[1].OBX[5]"]["reason"]  # PLT 221 under a morphology code


def test_a_site_local_code_map_reads_the_fhir_converter_platelets(make_app, tmp_path):
    site = tmp_path / "site.csv"
    site.write_text("code,coding_system,analyte\n11125-2,LN,platelets\n11156-7,LN,wbc\n", encoding="utf-8")
    client = make_app(HL7_LOCAL_CODES=str(site)).test_client()
    hemogram = answer_of(client, raw(LAB_ORU_1))["interpretations"][0]
    assert hemogram["analytes"]["platelets"]["value"] == 221.0  # 221 giga.l-1
    assert "thrombocytopenia" not in codes(hemogram)
    assert hemogram["source"]["observations"]["platelets"] == "OBR[1].OBX[5]"
    assert "wbc" not in hemogram["analytes"]  # mapped, but pending (I)


def test_lab_oru_2_unknown_unit_names_segment_and_field(client):
    body = assert_problem(post(client, raw(LAB_ORU_2)), 422)
    [message] = body["errors"]["OBR[2].OBX[1]-6"]
    assert "'g/l-1'" in message and "hemoglobin" in message
    assert body["detail"].startswith("OBR[2].OBX[1]-6: unknown unit 'g/l-1'")


def test_nist_lri_haemoglobin_in_g_per_ml_is_refused_as_implausible(client):
    assert raw(NIST_LRI).startswith(BOM) and b"\r" not in raw(NIST_LRI)
    body = assert_problem(post(client, raw(NIST_LRI), query=""), 422)
    [message] = body["errors"]["OBR[1].OBX[2]-5"]
    assert "12.5 g/mL" in message and "plausibility" in message and "did you mean g/dL?" in message
    # nothing was interpreted, so nothing was stored: the patient has no results
    assert client.get("/api/v1/patients/PATID1234/results").status_code == 404


def test_nist_lri_with_its_haemoglobin_unit_corrected(client):
    body = replace_field(text(NIST_LRI), ("OBX", 2), 6, "g/dL^grams per deciliter^UCUM")
    [cbc] = answer_of(client, body)["interpretations"]
    analytes = cbc["analytes"]
    assert analytes["wbc"]["value"] == 105.6  # 105600 {cells}/uL
    assert analytes["platelets"]["value"] == 210.0  # 210000 {cells}/uL
    assert analytes["platelets"]["reference_range"]["low"] == 150.0  # 150000 to 350000 {cells}/uL
    assert analytes["platelets"]["flag"] == "N"
    assert analytes["neutrophils"]["value"] == 58.0  # 58 10*3/uL
    assert analytes["lymphocytes"]["value"] == 41.2
    assert analytes["wbc"]["flag"] == "HH"  # > 30 critical
    assert analytes["hemoglobin"]["value"] == 12.5
    assert "thrombocytopenia" not in codes(cbc)
    assert {"critical_value", "anemia"} <= set(codes(cbc))  # man, 12.5 < 13.0
    assert cbc["urgency"] == "immediate"  # clinical-rules §3 (lines 99-105), §9 (line 243) v2: a new critical value


# --- storing -------------------------------------------------------------------------------------


@pytest.fixture
def database(database_url: str):
    database = Database.connect(database_url)
    yield database
    database.engine.dispose()


def stored_results(database: Database) -> list[CbcResult]:
    with database.session() as session:
        return list(session.scalars(select(CbcResult).order_by(CbcResult.id)))


def test_results_are_stored_like_the_json_endpoint(make_app, database_url, database):
    client = make_app(DATABASE_URL=database_url).test_client()
    answer = answer_of(client, raw(NHAPI_ORF), query="")
    stored = [cbc["stored"] for cbc in answer["interpretations"]]
    assert [item["duplicate"] for item in stored] == [False, True, True]  # 3 identical groups, kept once
    assert len({item["cbc_id"] for item in stored}) == 1
    assert stored[0]["referral_id"] is not None  # urgent: a referral opens
    [result] = stored_results(database)
    assert result.source == "hl7v2"
    assert result.platelets == 2.0
    assert as_utc(result.collected_at) == datetime(2005, 11, 7, 15, 5, tzinfo=UTC)  # OBR-7 200511071505
    assert result.raw["patient"]["id"] == "2019877"
    assert result.raw["hl7v2"]["obr"] == "OBR[1]"
    history = client.get("/api/v1/patients/2019877/results")
    assert history.status_code == 200


def test_store_false_stores_nothing(make_app, database_url, database):
    client = make_app(DATABASE_URL=database_url).test_client()
    answer = answer_of(client, raw(NHAPI_ORU), query="?store=false")
    assert "stored" not in answer["interpretations"][0]
    assert stored_results(database) == []


def test_times_without_offset_are_read_in_hl7_timezone(make_app, database_url, database):
    client = make_app(DATABASE_URL=database_url, HL7_TIMEZONE="America/Denver").test_client()
    cbc = answer_of(client, raw(NHAPI_ORU), query="")["interpretations"][0]
    assert any("America/Denver" in note for note in cbc["source"]["notes"])
    [result] = stored_results(database)
    # OBR-7 200509210520 in Denver (MDT, UTC-6 in September) is 11:20 UTC
    assert as_utc(result.collected_at) == datetime(2005, 9, 21, 11, 20, tzinfo=UTC)


def test_bad_hl7_settings_stop_the_app(make_app, tmp_path):
    with pytest.raises(ValueError, match="Mars/Olympus"):
        make_app(HL7_TIMEZONE="Mars/Olympus")
    site = tmp_path / "site.csv"
    site.write_text("code,analyte\nPLT,thrombocytes\n", encoding="utf-8")
    with pytest.raises(LocalCodeError, match=f"{site}:2"):
        make_app(HL7_LOCAL_CODES=str(site))


# --- messy variants ------------------------------------------------------------------------------


def platelets_of(client, body: bytes | str, **headers: str) -> float:
    return answer_of(client, body, **headers)["interpretations"][0]["analytes"]["platelets"]["value"]


@pytest.mark.parametrize("separator", [b"\r\n", b"\n", b"\n\n"])
def test_crlf_lf_and_blank_lines_between_segments(client, separator):
    assert platelets_of(client, raw(NHAPI_ORU).replace(b"\r", separator)) == 45.0


def test_bom_crlf_and_mllp_framing_posted_over_http(client):
    body = b"\x0b" + BOM + raw(NHAPI_ORU).replace(b"\r", b"\r\n") + b"\x1c\r"
    assert platelets_of(client, body) == 45.0


def test_other_encoding_characters(client):
    # nHapi's message with every delimiter changed: field !, component @, repetition `, escape ?, subcomponent *
    original = text(NHAPI_ORU)
    assert not set("!@`?*") & set(original)
    recoded = original.replace("MSH|^~\\$|", "MSH!@`?*!").translate(str.maketrans("|^~$", "!@`*"))
    answer = answer_of(client, recoded)
    assert answer["interpretations"][0]["analytes"]["platelets"]["value"] == 45.0
    ack = hl7.parse(post(client, recoded, query="?store=false&ack=true").get_data(as_text=True))
    assert str(ack.segment("MSA")(1)) == "AA"
    assert str(ack.segment("MSH")(2)) == "@`?*"


@pytest.mark.parametrize(
    ("obx", "unit", "analyte", "expected"),
    [
        (3, "tera.l-1", "rbc", 4.0),  # nHapi RBC 4.00 (OBX 3), in LAB-ORU-1's spelling of 10^12/L
        (17, "giga.l-1", "platelets", 45.0),  # nHapi PLTC 45 (OBX 17), in LAB-ORU-1's spelling of 10^9/L
        (17, "{cells}/uL", "platelets", 0.045),  # 45 cells per microlitre: 0.045 x 10^9/L (§1, ÷ 1000)
        (5, "g/L", "hemoglobin", 1.2),  # nHapi HGB 12.0 (OBX 5) read as g/L: 1.2 g/dL (÷ 10)
    ],
)
def test_unit_spellings_of_clinical_rules_1(client, obx, unit, analyte, expected):
    body = replace_field(text(NHAPI_ORU), ("OBX", obx), 6, unit)
    if analyte == "hemoglobin":  # the lab's 14.0-24.0 in g/L would be 1.4-2.4 g/dL; drop it
        body = replace_field(body, ("OBX", obx), 7, "")
    cbc = answer_of(client, body)["interpretations"][0]
    assert cbc["analytes"][analyte]["value"] == pytest.approx(expected)


def test_missing_obx6_is_refused_naming_the_field(client):
    body = assert_problem(post(client, replace_field(text(NHAPI_ORU), ("OBX", 17), 6, "")), 422)
    assert list(body["errors"]) == ["OBR[1].OBX[17]-6"]
    assert "never assumed" in body["errors"]["OBR[1].OBX[17]-6"][0]


def test_text_plain_and_a_latin1_charset(client):
    body = text(NHAPI_ORU).replace("BARNES^TEST", "BÄRNES^TEST").encode("latin-1")
    assert platelets_of(client, body, content_type="text/plain; charset=ISO-8859-1") == 45.0


def test_a_value_sent_as_structured_numeric(client):
    body = replace_field(replace_field(text(NHAPI_ORU), ("OBX", 17), 2, "SN"), ("OBX", 17), 5, "^45")
    assert platelets_of(client, body) == 45.0


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"hello", b"PID|1||42||DOE^JANE", b"<ORU_R01/>", b'{"resourceType": 1}'])
def test_a_body_that_is_not_hl7_is_400_naming_msh(client, body):
    problem = assert_problem(post(client, body), 400)
    assert "MSH" in problem["errors"]


def test_a_message_type_not_taken_is_422_naming_msh9(client):
    body = replace_field(text(NHAPI_ORU), ("MSH", 1), 8, "ADT^A01")  # MSH-9 is item 8 of the split
    problem = assert_problem(post(client, body), 422)
    assert list(problem["errors"]) == ["MSH-9"]
    assert "ADT^A01" in problem["detail"]


def test_no_obx_with_a_cbc_result_is_422_listing_why(client):
    lines = text(NHAPI_ORU).split("\r")
    body = "\r".join(line for line in lines if not line.startswith("OBX") or "|MPV|" in line)
    problem = assert_problem(post(client, body), 422)
    # MPV and its comment, and the order group that is left without a CBC result
    assert set(problem["errors"]) == {"OBR[1].OBX[1]", "OBR[1].OBX[2]", "OBR[1]"}
    assert "local-code map" in problem["errors"]["OBR[1].OBX[1]"][0]


def test_an_obx5_that_is_not_a_number_is_422(client):
    problem = assert_problem(post(client, replace_field(text(NHAPI_ORU), ("OBX", 17), 5, "clumped")), 422)
    assert problem["errors"] == {"OBR[1].OBX[17]-5": ["platelets: 'clumped' is not a number"]}


def test_an_implausible_platelet_count_suggests_the_unit(client):
    # NIST LRI's 210000 with the unit changed to 10*3/uL: 210000 x 10^9/L is over 5000 (§1)
    body = replace_field(text(NIST_LRI), ("OBX", 5), 6, "10*3/uL")
    body = replace_field(body, ("OBX", 2), 6, "g/dL")
    problem = assert_problem(post(client, body), 422)
    [message] = problem["errors"]["OBR[1].OBX[5]-5"]
    assert "did you mean /uL?" in message


def test_two_messages_in_one_body_is_422(client):
    problem = assert_problem(post(client, raw(NHAPI_ORU) + b"\r" + raw(NHAPI_ORU)), 422)
    assert list(problem["errors"]) == ["MSH[2]"]


@pytest.mark.parametrize("content_type", ["application/json", "application/hl7-v2+xml", "text/csv"])
def test_other_media_types_are_415(client, content_type):
    assert_problem(post(client, raw(NHAPI_ORU), content_type=content_type), 415)


def test_an_unknown_charset_is_415(client):
    assert_problem(post(client, raw(NHAPI_ORU), content_type="text/plain; charset=klingon"), 415)


def test_a_body_over_the_limit_is_413(make_app):
    client = make_app(MAX_CONTENT_LENGTH=100).test_client()
    assert_problem(post(client, raw(NHAPI_ORU)), 413)


def test_more_cbcs_than_max_batch_items_is_413(make_app):
    client = make_app(MAX_BATCH_ITEMS=2).test_client()
    assert_problem(post(client, raw(NHAPI_ORF)), 413)  # 3 order groups


# --- the ACK -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", [{"query": "?store=false&ack=true"}, {"Accept": ER7}])
def test_aa_on_request(client, how):
    response = post(client, raw(NHAPI_ORU), **how)
    assert response.status_code == 200
    ack = ack_of(response)
    assert (str(ack.segment("MSA")(1)), str(ack.segment("MSA")(2))) == ("AA", "52780002432")
    assert "Accept" in response.headers["Vary"]


def test_ae_is_http_200_with_err_naming_the_obx(client):
    response = post(client, raw(LAB_ORU_2), query="?store=false&ack=true")
    assert response.status_code == 200
    ack = ack_of(response)
    assert str(ack.segment("MSA")(1)) == "AE"
    assert "OBR[2].OBX[1]-6" in str(ack.segment("ERR")(8))


def test_ar_for_a_message_type_not_taken(client):
    body = replace_field(text(NHAPI_ORU), ("MSH", 1), 8, "ADT^A01")
    response = post(client, body, Accept=ER7)
    assert response.status_code == 200
    assert str(ack_of(response).segment("MSA")(1)) == "AR"


def test_ar_for_a_body_that_is_not_hl7_keeps_http_400(client):
    response = post(client, b"hello", Accept=ER7)
    assert response.status_code == 400
    assert str(ack_of(response).segment("MSA")(1)) == "AR"


def test_ack_must_be_true_or_false(client):
    assert_problem(post(client, raw(NHAPI_ORU), query="?ack=maybe"), 422)


def test_the_endpoint_is_documented(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"][URL]["post"]
    assert set(operation["requestBody"]["content"]) == {ER7, "text/plain"}
    assert {"200", "400", "413", "415", "422"} <= set(operation["responses"])
    assert "Hl7v2Interpretations" in spec["components"]["schemas"]


def test_the_documented_answer_schema_admits_the_source_block(client):
    """The answer is the Interpretation plus `source`; the schema once said allOf with Interpretation, whose
    additionalProperties: false refused `source` (schemathesis: response violates schema)."""
    from labservice.api.hl7v2 import EXAMPLE, Hl7v2InterpretationSchema

    [interpretation] = answer_of(client, EXAMPLE)["interpretations"]
    assert Hl7v2InterpretationSchema().validate(interpretation) == {}
    spec = client.get("/api/v1/openapi.json").get_json()
    documented = spec["components"]["schemas"]["Hl7v2Interpretation"]
    assert set(interpretation) <= set(documented["properties"])


def test_an_ack_answering_an_error_is_documented_for_that_status(client):
    """With ?ack=true a body that is not HL7 is answered 400 with an AR ACK, not problem+json."""
    response = post(client, "{}", query="?store=false&ack=true")
    assert response.status_code == 400 and response.mimetype == ER7
    assert response.get_data(as_text=True).split("\r")[1].startswith("MSA|AR|")
    operation = client.get("/api/v1/openapi.json").get_json()["paths"][URL]["post"]
    assert set(operation["responses"]["400"]["content"]) == {"application/problem+json", ER7}
