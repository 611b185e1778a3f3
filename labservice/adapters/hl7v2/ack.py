"""The HL7 acknowledgment (original mode) for one message: AA, or AE / AR with ERR segments.

MSH swaps the sender and receiver of the message, keeps its encoding characters, processing id and
version, and gets a new control id (python-hl7's `generate_message_control_id`). MSA-2 is the
message's control id; MSA-3 the detail (80 characters, as v2.3.1 limits it). One ERR segment per
problem location (at most MAX_ERR_SEGMENTS), filled for old and new receivers alike: ERR-1
(v2.3.1-2.4: segment^sequence^field^code), ERR-2 (v2.5+: segment^sequence^field), ERR-3 (HL7
table 0357 code), ERR-4 (severity E) and ERR-8 (the message for a person). A body that is not HL7
at all is answered AR from a stand-in header, with an empty MSA-2.

python-hl7's own `Message.create_ack` is not used: it raises on an MSH-9 without components
(`ADT`) and on a short MSH, exactly the messages that most need an AR.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import hl7
from hl7.util import generate_message_control_id

from labservice.adapters.hl7v2.message import Segment
from labservice.adapters.hl7v2.problems import ERROR_TEXTS, Hl7Problem

APPLICATION = "labservice"
MAX_ERR_SEGMENTS = 20
MSA3_LENGTH = 80
_STAND_IN = "MSH|^~\\&|||||||||P|2.5"
_LOCATION = re.compile(r"(?P<segment>[A-Z][A-Z0-9]{2}(?:\[\d+\])?(?:\.[A-Z][A-Z0-9]{2}\[\d+\])?)(?:-(?P<field>\d+))?")


def build_ack(message: hl7.Message | None, segments: list[Segment], problem: Hl7Problem | None = None) -> str:
    """The ACK text (CR between segments, ending in CR) for `message`; AA when there is no problem."""
    source = message if message is not None else hl7.parse(_STAND_IN)
    msh = source.segment("MSH")
    field_sep, component = source.separators[1], source.separators[3]

    def raw(number: int) -> str:
        return str(msh(number)) if number < len(msh) else ""

    trigger = raw(9).split(component)[1] if component in raw(9) else ""
    header = [
        "MSH",
        raw(2),
        raw(5) or APPLICATION,
        raw(6),
        raw(3),
        raw(4),
        datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000"),
        "",
        component.join(["ACK", trigger, "ACK"]) if trigger else "ACK",
        generate_message_control_id(),
        raw(11) or "P",
        raw(12) or "2.5",
    ]
    code = "AA" if problem is None else problem.ack_code
    acknowledgment = ["MSA", code, raw(10)]
    if problem is not None:
        acknowledgment.append(source.escape(problem.detail[:MSA3_LENGTH]))
    lines = [field_sep.join(header), field_sep.join(acknowledgment)]
    if problem is not None:
        index = {segment.location: segment for segment in segments}
        errors = [
            _err(source, location, text, problem.code_for(location), index)
            for location, messages in problem.errors.items()
            for text in messages
        ][:MAX_ERR_SEGMENTS]
        lines += errors or [_err(source, "", problem.detail, problem.default_code, index)]
    return "\r".join(lines) + "\r"


def _err(message: hl7.Message, location: str, text: str, code: str, index: dict[str, Segment]) -> str:
    field_sep, component, subcomponent = message.separators[1], message.separators[3], message.separators[4]
    segment_id, sequence, position = _position(location, index)
    code_text = ERROR_TEXTS.get(code, "")
    eld = component.join(
        [segment_id, sequence, position, subcomponent.join([code, message.escape(code_text), "HL70357"])]
    )
    erl = component.join([segment_id, sequence, position]) if segment_id else ""
    cwe = component.join([code, message.escape(code_text), "HL70357"])
    user_message = message.escape(f"{location}: {text}" if location else text)
    fields = ["ERR", eld, erl, cwe, "E", "", "", "", user_message]
    return field_sep.join(fields)


def _position(location: str, index: dict[str, Segment]) -> tuple[str, str, str]:
    """(segment id, its occurrence in the message, field number) of "OBR[1].OBX[3]-6"."""
    match = _LOCATION.match(location)
    if not match:
        return "", "", ""
    name, field = match.group("segment"), match.group("field") or ""
    segment = index.get(name)
    if segment is not None:
        return segment.id, str(segment.occurrence), field
    return name.split(".")[-1][:3], "", field
