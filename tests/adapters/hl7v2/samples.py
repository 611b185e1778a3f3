"""The real HL7 v2 messages of ../shared/fixtures/hl7v2 (read as bytes, unchanged) and messy variants of them.

Variants are made by editing a real message the way senders garble them: other segment separators,
other encoding characters, a field emptied or replaced. Expected values in the tests come from these
files (quoted next to each constant here) and from clinical-rules.md, never from running the code.
"""

from __future__ import annotations

from pathlib import Path

from tests.shared_data import FIXTURES

HL7V2 = FIXTURES / "hl7v2"
NHAPI_ORU = HL7V2 / "nhapi" / "PipeParserV231Tests_ParseORUr01LongToXml.hl7"
NHAPI_ORF = HL7V2 / "nhapi" / "PipeParserV231Tests_ParseORFR04FromDHTest.hl7"
LAB_ORU_1 = HL7V2 / "fhir-converter" / "LAB-ORU-1.hl7"
LAB_ORU_2 = HL7V2 / "fhir-converter" / "LAB-ORU-2.hl7"
NIST_LRI = HL7V2 / "fhir-converter" / "LRI_2.0-NG_CBC_Typ_Message.hl7"
ALL_FILES = sorted(HL7V2.rglob("*.hl7"))
BOM = b"\xef\xbb\xbf"
ER7 = "x-application/hl7-v2+er7"


def raw(path: Path) -> bytes:
    return path.read_bytes()


def text(path: Path) -> str:
    """The message as text with CR between segments (no BOM), for editing."""
    body = raw(path).removeprefix(BOM).decode("utf-8")
    return "\r".join(line for line in body.replace("\r\n", "\n").replace("\r", "\n").split("\n") if line)


def segments(path: Path) -> list[str]:
    return text(path).split("\r")


def replace_field(message: str, location: tuple[str, int], field: int, value: str, sep: str = "|") -> str:
    """`message` with field `field` of the `location` = (segment id, nth occurrence) segment replaced."""
    seg_id, nth = location
    lines = message.split("\r")
    seen = 0
    for index, line in enumerate(lines):
        if line.startswith(seg_id + sep):
            seen += 1
            if seen == nth:
                fields = line.split(sep)
                while len(fields) <= field:
                    fields.append("")
                fields[field] = value
                lines[index] = sep.join(fields)
                return "\r".join(lines)
    raise AssertionError(f"no {seg_id} number {nth}")


def nth_of(path: Path, seg_id: str, predicate) -> int:
    """The occurrence number (1-based, among segments `seg_id`) of the first segment matching `predicate`."""
    matching = [line for line in segments(path) if line.startswith(seg_id)]
    return next(i for i, line in enumerate(matching, start=1) if predicate(line))
