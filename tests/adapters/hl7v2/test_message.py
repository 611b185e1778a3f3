"""Parsing with python-hl7: segments named by occurrence, order groups, message types, not-HL7 input."""

from __future__ import annotations

import pytest

from labservice.adapters.hl7v2.message import check_type, parse_message
from labservice.adapters.hl7v2.problems import Hl7Problem
from labservice.adapters.hl7v2.text import decode, normalise
from tests.adapters.hl7v2.samples import LAB_ORU_1, NHAPI_ORF, NHAPI_ORU, raw, replace_field, text


def parsed(path):
    return parse_message(normalise(decode(raw(path))))


def test_nhapi_unusual_subcomponent_separator_is_read_from_msh2():
    message = parsed(NHAPI_ORU)
    assert str(message.message.segment("MSH")(2)) == "^~\\$"  # fixtures/README.md: MSH-2 is ^~\$
    assert message.message.separators[4] == "$"
    assert message.header.type == "ORU" and message.header.trigger == "R01"
    assert message.header.control_id == "52780002432"
    assert message.header.version == "2.3.1"


def test_locations_count_occurrences_not_set_ids():
    # nHapi: each NM OBX is followed by a TX OBX with the same Set ID; PLTC 45 is the 9th NM OBX, i.e. OBX 17
    group = parsed(NHAPI_ORU).groups[0]
    plt = group.observations[16]
    assert plt.location == "OBR[1].OBX[17]"
    assert (plt.get(1), plt.get(3), plt.get(5), plt.get(6)) == ("9", "PLTC", "45", "k/uL")
    assert group.observations[17].get(1) == "9" and group.observations[17].get(2) == "TX"


def test_fhir_converter_obr_set_ids_in_reverse_order_keep_their_place():
    # LAB-ORU-1 sends OBR|2 (hemogram) before OBR|1 (differential)
    groups = parsed(LAB_ORU_1).groups
    assert [g.obr.location for g in groups] == ["OBR[1]", "OBR[2]"]
    assert [g.obr.get(1) for g in groups] == ["2", "1"]
    assert [g.obr.get(4) for g in groups] == ["24317-0", "26464-8"]
    assert [len(g.observations) for g in groups] == [5, 5]
    assert [s.location for s in groups[0].specimens] == ["SPM[1]"]


def test_orf_r04_has_three_order_groups_under_one_patient():
    message = parsed(NHAPI_ORF)
    assert (message.header.type, message.header.trigger) == ("ORF", "R04")
    assert len(message.groups) == 3
    assert all(group.patient is not None and group.patient.location == "PID[1]" for group in message.groups)
    assert message.groups[2].observations[0].location == "OBR[3].OBX[1]"
    assert message.groups[2].observations[0].occurrence == 2 * 23 + 1  # 23 OBX per group before it


def test_obx_before_any_obr_and_lines_that_are_not_segments_are_kept_apart():
    body = text(NHAPI_ORU).replace("\rOBR|", "\rOBX|1|NM|PLTC||50|k/uL\rnot a segment\rOBR|", 1)
    message = parse_message(body)
    assert [obx.location for obx in message.stray_observations] == ["OBX[1]"]
    assert message.ignored_lines == [(4, "not a segment")]


def test_a_second_pid_starts_a_new_patient():
    body = text(NHAPI_ORU)
    pid, rest = body.split("\rPID|", 1)[1].split("\r", 1)
    second = body + "\rPID|" + pid.replace("40206609", "40206610") + "\r" + rest
    message = parse_message(second)
    assert [g.patient.location for g in message.groups] == ["PID[1]", "PID[2]"]
    assert message.groups[1].patient.get(3) == "40206610"


@pytest.mark.parametrize(
    ("body", "status"),
    [("", 400), ("hello", 400), ("PID|1||42", 400), ("MSH", 400), ("MSH|", 400), ("MSHx^~\\&|", 400)],
)
def test_text_that_is_not_hl7_is_refused_as_ar(body, status):
    with pytest.raises(Hl7Problem) as caught:
        parse_message(body)
    assert caught.value.status == status
    assert caught.value.ack_code == "AR"
    assert next(iter(caught.value.errors)).startswith("MSH")


def test_two_messages_in_one_body_are_refused_naming_the_second_header():
    with pytest.raises(Hl7Problem) as caught:
        parse_message(text(NHAPI_ORU) + "\r" + text(NHAPI_ORU))
    assert caught.value.status == 422
    assert list(caught.value.errors) == ["MSH[2]"]


@pytest.mark.parametrize("message_type", ["ADT^A01", "ORU^R30", "ORM^O01", "ORU", ""])
def test_only_oru_r01_and_orf_r04_are_taken(message_type):
    # split on |, MSH-n is item n-1 (MSH-1 is the separator itself): MSH-9 is item 8
    message = parse_message(replace_field(text(NHAPI_ORU), ("MSH", 1), 8, message_type))
    with pytest.raises(Hl7Problem) as caught:
        check_type(message.header)
    assert (caught.value.status, caught.value.ack_code, list(caught.value.errors)) == (422, "AR", ["MSH-9"])
    assert caught.value.code_for("MSH-9") == "200"  # HL7 table 0357: unsupported message type
