"""The ACK: MSH swapped and in the message's own encoding characters, MSA, ERR naming segment and field."""

from __future__ import annotations

from datetime import UTC

import hl7

from labservice.adapters.hl7v2.codes import load_code_map
from labservice.adapters.hl7v2.reader import ReadSettings
from labservice.core.ruleset import default_ruleset
from labservice.services.hl7v2_receive import receive_message
from tests.adapters.hl7v2.samples import LAB_ORU_2, NHAPI_ORU, NIST_LRI, nth_of, raw, replace_field, text

RS = default_ruleset()
SETTINGS = ReadSettings(RS, load_code_map(RS), UTC, "UTC")


def ack_of(body: bytes) -> hl7.Message:
    received = receive_message(body, SETTINGS)
    assert received.ack.endswith("\r") and "\n" not in received.ack
    return hl7.parse(received.ack)


def test_aa_swaps_sender_and_receiver_and_echoes_the_control_id():
    ack = ack_of(raw(NHAPI_ORU))
    msh, msa = ack.segment("MSH"), ack.segment("MSA")
    # nHapi MSH: |^~\$|LAB|DHC|LCR|DH|200511291403||ORU^R01|52780002432|P|2.3.1
    assert str(msh(2)) == "^~\\$"
    assert [str(msh(n)) for n in (3, 4, 5, 6)] == ["LCR", "DH", "LAB", "DHC"]
    assert str(msh(9)) == "ACK^R01^ACK"
    assert (str(msh(11)), str(msh(12))) == ("P", "2.3.1")
    assert str(msh(10)) and str(msh(10)) != "52780002432"
    assert (str(msa(1)), str(msa(2))) == ("AA", "52780002432")
    assert len(ack) == 2


def test_ae_for_an_unknown_unit_names_the_obx_and_its_field():
    ack = ack_of(raw(LAB_ORU_2))
    assert (str(ack.segment("MSA")(1)), str(ack.segment("MSA")(2))) == ("AE", "ControlID")
    err = ack.segment("ERR")
    # HGB 'g/l-1' is OBX 1 of the second OBR group: the message's 6th OBX, field 6 (units)
    sixth = nth_of(LAB_ORU_2, "OBX", lambda line: "g/l-1" in line)
    assert sixth == 6
    assert str(err(2)) == f"OBX^{sixth}^6"
    assert str(err(3)) == "103^Table value not found^HL70357"
    assert str(err(1)).startswith(f"OBX^{sixth}^6^103")
    assert str(err(4)) == "E"
    assert "OBR[2].OBX[1]-6" in str(err(8)) and "g/l-1" in str(err(8))


def test_ae_for_an_implausible_haemoglobin_names_its_value_field():
    ack = ack_of(raw(NIST_LRI))
    err = ack.segment("ERR")
    assert str(ack.segment("MSA")(1)) == "AE"
    assert str(err(2)) == "OBX^2^5"  # HGB 12.5 g/mL is OBX 2
    assert str(err(3)).startswith("102^")
    assert "12.5 g/mL" in ack.unescape(str(err(8)))


def test_ar_for_a_message_type_not_taken():
    ack = ack_of(replace_field(text(NHAPI_ORU), ("MSH", 1), 8, "ADT^A01").encode())
    assert str(ack.segment("MSA")(1)) == "AR"
    assert str(ack.segment("MSH")(9)) == "ACK^A01^ACK"
    assert str(ack.segment("ERR")(3)).startswith("200^Unsupported message type")
    assert str(ack.segment("ERR")(2)) == "MSH^1^9"


def test_ar_for_text_that_is_not_hl7_has_no_control_id_to_echo():
    ack = ack_of(b"this is not an HL7 message")
    assert str(ack.segment("MSA")(1)) == "AR"
    assert str(ack.segment("MSA")(2)) == ""
    assert str(ack.segment("MSH")(3)) == "labservice"


def test_error_text_with_separators_is_escaped_in_the_message_encoding():
    # a unit holding the subcomponent separator of nHapi's MSH-2 ($) must not break the ACK's structure
    body = replace_field(text(NHAPI_ORU), ("OBX", 17), 6, "k\\T\\uL").encode()
    ack = ack_of(body)
    err = ack.segment("ERR")
    assert "k$uL" in ack.unescape(str(err(8)))
    assert len(err) == 9  # ERR-1 .. ERR-8, nothing split by an unescaped separator
