"""The film and context of a CBC read from HL7 v2 (adapters/hl7v2/context.py; clinical-rules §8, §10-§12 v2).

Messages are the fixtures' (../shared/fixtures/hl7v2: the nHapi ORU^R01 test message, BARNES^TEST, OBR-7
200509210520) with segments added the way the documented encoding writes them (docs/interoperability.md): an RXA
after the PID (RXA-3 start, RXA-4 end, RXA-5 the code with coding system WC = WHO ATC or RXNORM, HL7 table 0396),
and OBX coded with the LOINC codes of reference_ranges/context_codes.csv, answered as the NIST LRI CBC message
answers its [Presence] observations (SNOMED CT 260415000 "not detected").
"""

from __future__ import annotations

from labservice.adapters.hl7v2.reader import read_message
from labservice.adapters.hl7v2.text import decode, normalise
from tests.adapters.hl7v2.samples import NHAPI_ORU, text
from tests.adapters.hl7v2.test_reader import SETTINGS


def with_segments(after_pid: list[str], after_obr: list[str]) -> str:
    lines = text(NHAPI_ORU).split("\r")
    pid = next(i for i, line in enumerate(lines) if line.startswith("PID|"))
    lines[pid + 1 : pid + 1] = after_pid
    obr = next(i for i, line in enumerate(lines) if line.startswith("OBR|"))
    lines[obr + 1 : obr + 1] = after_obr
    return "\r".join(lines)


def read(message: str):
    return read_message(normalise(decode(message.encode())), SETTINGS)


def test_rxa_segments_give_the_heparin_start_and_myelosuppressive_therapy() -> None:
    # Collected 2005-09-21 05:20 (OBR-7): enoxaparin from 09-15 (6 days before), oxaliplatin on 09-01 (20 days,
    # inside the 42 days of clinical-rules §11 v2), cisplatin in March (outside), a refused dose (RXA-20 RE).
    message = with_segments(
        [
            "RXA|0|1|200509150900||B01AB05^enoxaparin^WC|40|mg",
            "RXA|0|1|200509011000|200509011200|L01XA03^oxaliplatin^WC|150|mg",
            "RXA|0|1|200503011000|200503011200|L01XA01^cisplatin^WC|100|mg",
            "RXA|0|1|200509200900||5224^heparin^RXNORM|5000|[iU]|||||||||||||RE",  # RXA-20 RE: refused
            "RXA|0|1|200509170900||5224^heparin^RXNORM|5000|[iU]",  # a later dose: read, the start is 09-15
        ],
        [],
    )
    result = read(message)
    [cbc] = result.cbcs
    assert cbc.document["context"] == {
        "heparin_started_at": "2005-09-15T09:00:00+00:00",
        "myelosuppressive_therapy": True,
    }
    assert cbc.source["observations"]["context.heparin_started_at"] == "RXA[1]"
    assert cbc.source["observations"]["context.myelosuppressive_therapy"] == "RXA[2]"
    reasons = {entry["location"]: entry["reason"] for entry in result.unused if entry["location"].startswith("RXA")}
    assert reasons == {
        "RXA[3]": "myelosuppressive therapy: ended more than 42 days before the CBC",
        "RXA[4]": "not given (RXA-20 'RE', RXA-21 '')",
    }


def test_an_rxa_with_a_code_not_listed_is_reported_unused() -> None:
    result = read(with_segments(["RXA|0|1|200509150900||855332^Warfarin Sodium 5 MG Oral Tablet^RXNORM|5|mg"], []))
    assert "context" not in result.cbcs[0].document
    [entry] = [e for e in result.unused if e["location"] == "RXA[1]"]
    assert entry["reason"] == "not a medication code listed in reference_ranges/context_codes.csv"


def test_obx_with_the_context_codes_fill_the_film_and_context() -> None:
    message = with_segments(
        [],
        [
            "OBX|1|CWE|7796-6^Platelet clump [Presence] in Blood by Light microscopy^LN||260415000^not detected^SCT"
            "^^^^^^None seen|||N|||F",
            "OBX|2|NM|6301-6^INR in Platelet poor plasma by Coagulation assay^LN||1.3|{INR}|||||F",
            "OBX|3|NM|1971-1^Bilirubin.indirect^LN||2.6|mg/dL|||||F",
            "OBX|4|NM|2160-0^Creatinine^LN||115|umol/L|||||F",
        ],
    )
    result = read(message)
    [cbc] = result.cbcs
    assert cbc.document["film"] == {"platelet_clumps": False}
    assert cbc.document["context"] == {"inr": 1.3, "indirect_bilirubin_mg_dl": 2.6}
    [creatinine] = [e for e in result.unused if e["code"] == "2160-0"]
    assert creatinine["reason"] == "creatinine_mg_dl: a value in 'umol/L', mg/dL expected"


def test_haptoglobin_below_its_detection_limit_is_undetectable() -> None:
    result = read(with_segments([], ["OBX|1|SN|4542-7^Haptoglobin^LN||<^10|mg/dL|||||F"]))
    assert result.cbcs[0].document["context"] == {"haptoglobin_undetectable": True}
