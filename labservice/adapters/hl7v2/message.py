"""One HL7 v2 message parsed with python-hl7, its segments named by where they stand.

Locations count occurrences in the message, not Set IDs (senders repeat and reorder Set IDs:
nHapi's NM and TX OBX share one, FHIR-Converter's OBR 2 comes before OBR 1): "PID[1]", "OBR[2]",
"OBR[2].OBX[3]" (the third OBX after the second OBR), "SPM[1]", and "-6" appended for a field.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import hl7
import hl7.containers
import hl7.util

from labservice.adapters.hl7v2.problems import SEGMENT_SEQUENCE_ERROR, UNSUPPORTED_MESSAGE_TYPE, Hl7Problem

#: Message types interpreted here: unsolicited results, and results returned to a query.
ACCEPTED_TYPES = (("ORU", "R01"), ("ORF", "R04"))
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
_PREVIEW = 40
#: Most separators (field, component, repetition, subcomponent) one segment may hold. A CBC segment holds
#: tens; python-hl7 builds an object for every part and each read of a field joins its parts again, so a
#: field of a million `^` cost seconds. Counted on the text, before python-hl7 parses.
MAX_SEGMENT_SEPARATORS = 5_000

# python-hl7 logs a warning quoting the whole field for every empty escape sequence (`\\`) it unescapes:
# patient data in the logs, and a field of a million `\` wrote a field-sized line half a million times
# (a full disk). Only its errors are kept. Its loggers are named by file path.
for _module in (hl7.util, hl7.containers):
    logging.getLogger(_module.__file__).setLevel(logging.ERROR)


@dataclass
class Segment:
    """One segment with its location; fields are read unescaped, components 1-based."""

    id: str
    location: str
    occurrence: int  # the nth segment with this id in the message (HL7 ERR-2 "segment sequence")
    raw: hl7.Segment
    message: hl7.Message

    def field(self, number: int) -> str:
        """The field's text as sent (separators and escapes included); '' when absent."""
        return str(self.raw(number)) if number < len(self.raw) else ""

    def get(self, number: int, component: int = 1, repetition: int = 1) -> str:
        """One component of one repetition, unescaped and stripped (its first subcomponent)."""
        seps = self.message.separators  # "\r", field, repetition, component, subcomponent
        repetitions = self.field(number).split(seps[2])
        if repetition > len(repetitions):
            return ""
        components = repetitions[repetition - 1].split(seps[3])
        if component > len(components):
            return ""
        text = components[component - 1].split(seps[4])[0]
        return str(self.message.unescape(text)).strip() if self.message.esc in text else text.strip()

    def repetitions(self, number: int) -> int:
        text = self.field(number)
        return text.count(self.message.separators[2]) + 1 if text else 0


@dataclass
class OrderGroup:
    """An OBR and what follows it up to the next OBR or PID: one CBC when it holds one."""

    obr: Segment
    patient: Segment | None
    observations: list[Segment] = field(default_factory=list)
    specimens: list[Segment] = field(default_factory=list)
    #: RXA segments of the group's patient (after its PID, before or after this OBR; shared by the patient's groups)
    medications: list[Segment] = field(default_factory=list)


@dataclass
class Header:
    """What the MSH says about the message."""

    type: str
    trigger: str
    control_id: str
    version: str
    processing_id: str
    sending_application: str
    sending_facility: str

    def as_dict(self) -> dict[str, str]:
        return {
            "type": f"{self.type}^{self.trigger}" if self.trigger else self.type,
            "control_id": self.control_id,
            "version": self.version,
            "processing_id": self.processing_id,
            "sending_application": self.sending_application,
            "sending_facility": self.sending_facility,
        }


@dataclass
class ParsedMessage:
    message: hl7.Message
    header: Header
    segments: list[Segment]
    groups: list[OrderGroup]
    stray_observations: list[Segment]  # OBX with no OBR before them
    ignored_lines: list[tuple[int, str]]  # (line number, start of the line) that are not segments


def parse_message(text: str, max_groups: int | None = None) -> ParsedMessage:
    """Parse normalised text (CR between segments) into segments and order groups.

    Raises Hl7Problem: 400 when the text is not an HL7 v2 message, 422 when it holds several, 413 when
    it holds more than `max_groups` OBR segments or a segment with more than MAX_SEGMENT_SEPARATORS
    separators (both counted on the text, in one pass, before anything is parsed).
    """
    _check_header(text)
    kept, ignored = _segment_lines(text)
    starts = [i for i, line in enumerate(kept) if line[:3] in ("MSH", "BHS", "FHS")]
    if len(starts) > 1:
        raise Hl7Problem(
            422,
            f"The body holds {len(starts)} messages; send one message per request "
            "(the MLLP listener takes any number, one frame each).",
            {"MSH[2]": ["a second message header"]},
            default_code=SEGMENT_SEQUENCE_ERROR,
        )
    _check_size(text, kept, max_groups)
    try:
        message = hl7.parse("\r".join(kept))
    except Exception as error:  # python-hl7 raises assorted errors on malformed text
        raise Hl7Problem(
            400,
            f"The body is not an HL7 v2 message: {error}.",
            {"MSH": [f"python-hl7 could not parse the message: {error}"]},
            ack_code="AR",
            default_code=SEGMENT_SEQUENCE_ERROR,
        ) from None
    segments = _located(message)
    header = _header(segments[0])
    return ParsedMessage(message, header, segments, *_groups(segments), ignored)


def check_type(header: Header) -> None:
    """Only ORU^R01 and ORF^R04 carry results read here; anything else is rejected (AR)."""
    if (header.type, header.trigger) in ACCEPTED_TYPES:
        return
    sent = f"{header.type}^{header.trigger}" if header.trigger else (header.type or "empty")
    accepted = " and ".join(f"{t}^{e}" for t, e in ACCEPTED_TYPES)
    raise Hl7Problem(
        422,
        f"Message type {sent} is not interpreted here; send {accepted}.",
        {"MSH-9": [f"message type {sent} is not one of {accepted}"]},
        ack_code="AR",
        default_code=UNSUPPORTED_MESSAGE_TYPE,
    )


def _check_header(text: str) -> None:
    if not text.startswith("MSH"):
        start = text[:_PREVIEW].replace("\r", " ")
        raise Hl7Problem(
            400,
            "The body is not an HL7 v2 message: it does not start with an MSH segment"
            + (f" (it starts with {start!r})." if start else " (it is empty)."),
            {"MSH": ["no MSH segment at the start of the message"]},
            ack_code="AR",
            default_code=SEGMENT_SEQUENCE_ERROR,
        )
    separator = text[3:4]
    end = text.find(separator, 4) if separator else -1
    if not separator or separator.isalnum() or separator.isspace() or not 2 <= end - 4 <= 5:
        raise Hl7Problem(
            400,
            "The MSH segment does not start with a field separator and 2 to 5 encoding characters (e.g. MSH|^~\\&|).",
            {"MSH-2": ["no encoding characters after the field separator"]},
            ack_code="AR",
            default_code=SEGMENT_SEQUENCE_ERROR,
        )


def _check_size(text: str, kept: list[str], max_groups: int | None) -> None:
    """413 before parsing: too many order groups, or a segment with too many parts (see parse_message)."""
    separators = text[3 : text.find(text[3], 4)]  # the field separator and the encoding characters
    counts: dict[str, int] = {}
    for line in kept:
        segment_id = line[:3]
        counts[segment_id] = counts.get(segment_id, 0) + 1
        parts = sum(line.count(separator) for separator in separators)
        if parts > MAX_SEGMENT_SEPARATORS:
            location = f"{segment_id}[{counts[segment_id]}]"
            raise Hl7Problem(
                413,
                f"{location} holds {parts} separators; at most {MAX_SEGMENT_SEPARATORS} per segment are read.",
                {
                    location: [
                        f"at most {MAX_SEGMENT_SEPARATORS} field, component and repetition separators per segment"
                    ]
                },
            )
    groups = counts.get("OBR", 0)
    if max_groups is not None and groups > max_groups:
        raise Hl7Problem(
            413,
            f"The message holds {groups} order groups (OBR); the limit is {max_groups} per message.",
            {"OBR": [f"at most {max_groups} order groups per message"]},
        )


def _segment_lines(text: str) -> tuple[list[str], list[tuple[int, str]]]:
    """Lines that are segments (a 3-character id, then the field separator), and the others."""
    separator = text[3]
    kept, ignored = [], []
    for number, line in enumerate(text.split("\r"), start=1):
        if _SEGMENT_ID.match(line[:3]) and (len(line) == 3 or line[3] == separator):
            kept.append(line)
        else:
            ignored.append((number, line[:_PREVIEW]))
    return kept, ignored


def _located(message: hl7.Message) -> list[Segment]:
    counts: dict[str, int] = {}
    in_order = False  # an OBX after an OBR (and no PID since) belongs to that OBR
    obx_in_group = 0
    out = []
    for raw in message:
        seg_id = str(raw[0])
        counts[seg_id] = counts.get(seg_id, 0) + 1
        if seg_id == "MSH":
            location = "MSH"
        elif seg_id == "OBR":
            in_order, obx_in_group = True, 0
            location = f"OBR[{counts['OBR']}]"
        elif seg_id == "OBX" and in_order:
            obx_in_group += 1
            location = f"OBR[{counts['OBR']}].OBX[{obx_in_group}]"
        else:
            in_order = in_order and seg_id != "PID"
            location = f"{seg_id}[{counts[seg_id]}]"
        out.append(Segment(seg_id, location, counts[seg_id], raw, message))
    return out


def _header(msh: Segment) -> Header:
    return Header(
        type=msh.get(9, 1).upper(),
        trigger=msh.get(9, 2).upper(),
        control_id=msh.get(10),
        version=msh.get(12),
        processing_id=msh.get(11),
        sending_application=msh.get(3),
        sending_facility=msh.get(4),
    )


def _groups(segments: list[Segment]) -> tuple[list[OrderGroup], list[Segment]]:
    groups: list[OrderGroup] = []
    stray: list[Segment] = []
    patient: Segment | None = None
    current: OrderGroup | None = None
    medications: list[Segment] = []  # the RXA segments of the current patient
    for segment in segments:
        if segment.id == "PID":
            patient, current, medications = segment, None, []
        elif segment.id == "OBR":
            current = OrderGroup(segment, patient, medications=medications)
            groups.append(current)
        elif segment.id == "RXA":
            medications.append(segment)
        elif segment.id == "OBX":
            (current.observations if current else stray).append(segment)
        elif segment.id == "SPM" and current is not None:
            current.specimens.append(segment)
    return groups, stray
