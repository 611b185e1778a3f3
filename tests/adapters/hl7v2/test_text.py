"""Bytes of one message → text with CR between segments, whatever the sender did to it."""

from __future__ import annotations

import pytest

from labservice.adapters.hl7v2.problems import Hl7Problem
from labservice.adapters.hl7v2.text import decode, normalise
from tests.adapters.hl7v2.samples import BOM, LAB_ORU_1, NHAPI_ORU, raw


def test_fhir_converter_files_lose_their_bom_and_lf_separators():
    body = raw(LAB_ORU_1)
    assert body.startswith(BOM) and b"\r" not in body  # as fixtures/README.md says
    out = normalise(decode(body))
    assert out.startswith("MSH|^~\\&|SomeSystem|")
    assert "\n" not in out
    assert out.count("\r") == body.count(b"\n")  # the last line has no line break


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"])
def test_cr_lf_and_crlf_give_the_same_text(separator):
    segments = raw(NHAPI_ORU).decode().split("\r")
    assert normalise(separator.join(segments)) == raw(NHAPI_ORU).decode()


def test_blank_lines_trailing_spaces_and_mllp_framing_are_dropped():
    segments = raw(NHAPI_ORU).decode().split("\r")
    sent = "\x0b" + "\r\n\r\n".join(segment + "  " for segment in segments) + "\r\n\x1c\r"
    assert normalise(sent) == raw(NHAPI_ORU).decode()


def test_latin1_is_read_when_msh18_says_8859_1():
    body = "MSH|^~\\&|LIS||||20260101||ORU^R01|1|P|2.5|||||| 8859/1\rPID|1||42||M\xfcller^Anna\r".encode("latin-1")
    assert "Müller" in decode(body)


def test_bytes_that_are_not_utf8_without_msh18_are_refused_naming_the_byte():
    body = "MSH|^~\\&|LIS||||20260101||ORU^R01|1|P|2.5\rPID|1||42||M\xfcller\r".encode("latin-1")
    with pytest.raises(Hl7Problem) as caught:
        decode(body)
    assert caught.value.status == 400
    assert f"byte {body.index(0xFC)}" in caught.value.detail


def test_the_charset_of_the_content_type_wins():
    assert decode("MSH|^~\\&|Ü".encode("utf-16"), "utf-16").endswith("Ü")
    with pytest.raises(Hl7Problem) as caught:
        decode(b"MSH", "no-such-charset")
    assert caught.value.status == 415


@pytest.mark.parametrize("declared", ["UNICODE UTF-8", "ASCII"])
def test_bytes_that_msh18_says_are_utf8_or_ascii_but_are_not_are_refused(declared):
    """Found by hypothesis (tests/services/test_hl7v2_receive_generated_messages.py): the MSH-18 fallback decoded
    strictly and its UnicodeDecodeError escaped (a 500 over HTTP)."""
    body = f"MSH|^~\\&|LIS||||20260101||ORU^R01|1|P|2.5||||||{declared}\rPID|1||42||M\xfcller\r".encode("latin-1")
    with pytest.raises(Hl7Problem) as caught:
        decode(body)
    assert caught.value.status == 400
    assert declared in caught.value.detail and f"byte {body.index(0xFC)}" in caught.value.detail
