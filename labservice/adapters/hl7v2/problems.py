"""Why a message cannot be interpreted: an HTTP status, the HL7 acknowledgment it earns, and where.

One exception carries both answers a sender may ask for: RFC 9457 problem details (status,
detail, errors keyed by segment and field, e.g. "OBR[1].OBX[3]-6") and an HL7 ACK (AE for content
the sender can correct, AR for a message this service does not take), with the HL7 table 0357
error code for each location.
"""

from __future__ import annotations

#: HL7 table 0357 (message error condition codes) used here.
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
APPLICATION_ERROR = "207"
ERROR_TEXTS = {
    "0": "Message accepted",
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    APPLICATION_ERROR: "Application error",
}


class Hl7Problem(Exception):
    """A message (or request) that cannot be interpreted, with everything both answers need."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: dict[str, list[str]],
        *,
        ack_code: str = "AE",
        codes: dict[str, str] | None = None,
        default_code: str = DATA_TYPE_ERROR,
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.ack_code = ack_code
        #: HL7 table 0357 code per error location; locations not listed get `default_code`.
        self.codes = codes or {}
        self.default_code = default_code

    def code_for(self, location: str) -> str:
        return self.codes.get(location, self.default_code)
