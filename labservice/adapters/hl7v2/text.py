"""The bytes of one HL7 v2 message → text with CR segment separators, as python-hl7 expects.

Real senders differ from the standard: a UTF-8 byte-order mark, LF or CRLF between segments
(FHIR-Converter's samples), blank lines, and MLLP framing characters left on a message posted over
HTTP. python-hl7 only splits segments on CR, so everything is normalised here first.
"""

from __future__ import annotations

import codecs
import re

from labservice.adapters.hl7v2.problems import Hl7Problem

BOM = "\ufeff"
MLLP_START, MLLP_END = "\x0b", "\x1c"
#: MSH-18 character sets (HL7 table 0211) read here besides UTF-8 and ASCII.
MSH18_CODECS = {"8859/1": "latin-1", "8859/15": "iso8859-15", "UNICODE UTF-8": "utf-8", "ASCII": "ascii"}
_LINE_BREAKS = re.compile(r"\r\n|\n|\r")
_MSH18 = re.compile(rb"^(?:\xef\xbb\xbf)?\s*\x0b?MSH(.)")


def decode(body: bytes, charset: str | None = None) -> str:
    """The message as text: the charset the client named, else UTF-8, else the MSH-18 character set."""
    if charset:
        try:
            codec = codecs.lookup(charset).name
        except LookupError:
            raise Hl7Problem(415, f"Unknown charset {charset!r} in the Content-Type.", {}) from None
        try:
            return body.decode(codec)
        except UnicodeDecodeError as error:
            raise Hl7Problem(
                400,
                f"The body is not {charset} text (byte {error.start}).",
                {"MSH": [f"byte {error.start} cannot be decoded as {charset}"]},
            ) from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        declared = _msh18(body)
        if declared in MSH18_CODECS:
            try:
                return body.decode(MSH18_CODECS[declared], errors="strict")
            except UnicodeDecodeError as declared_error:
                raise Hl7Problem(
                    400,
                    f"The body is not {declared} text as MSH-18 says (byte {declared_error.start}).",
                    {"MSH-18": [f"byte {declared_error.start} cannot be decoded as {declared}"]},
                ) from None
        raise Hl7Problem(
            400,
            f"The body is not UTF-8 text (byte {error.start}), and MSH-18 does not name a "
            f"character set read here ({', '.join(MSH18_CODECS)}).",
            {"MSH-18": [f"byte {error.start} is not UTF-8; MSH-18 is {declared or 'empty'}"]},
        ) from None


def _msh18(body: bytes) -> str:
    """MSH-18 (character set) read from raw bytes, upper-cased; '' when absent."""
    match = _MSH18.match(body)
    if match is None:
        return ""
    header = body[match.start(1) :].split(b"\r", 1)[0].split(b"\n", 1)[0]
    fields = header.split(match.group(1))
    # fields[0] is empty (the text between MSH and its first separator): fields[n] is MSH-(n+1).
    return fields[17].decode("ascii", "replace").split("^")[0].strip().upper() if len(fields) > 17 else ""


def normalise(text: str) -> str:
    """One message's text with CR between segments: no BOM, no MLLP framing, no blank lines."""
    text = text.lstrip(BOM + MLLP_START + " \t\r\n")
    end = text.find(MLLP_END)
    if end != -1 and not text[end + 1 :].strip():
        text = text[:end]
    lines = (line.strip(" \t") for line in _LINE_BREAKS.split(text))
    return "\r".join(line for line in lines if line)
