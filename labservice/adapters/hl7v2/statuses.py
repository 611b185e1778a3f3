"""OBX-11, the observation result status (HL7 table 0085): which results are used, and how.

- Final (F, C, U, and the v2.8 A, B, V): used.
- Not final but holding a value (P preliminary, R not verified, S partial), and any status that is
  not in table 0085 or is empty (nHapi's messages send `Z`): used, and listed in the answer's
  `source.non_final` with the status and its meaning. A preliminary platelet count of 2 is exactly
  the result that must not wait for its final version; the label keeps it from passing as final.
- No result (I pending, O order only, N not asked, X cannot be obtained) and withdrawn results
  (D deleted, W posted as wrong): never used; reported in `unused`.
"""

from __future__ import annotations

from dataclasses import dataclass

MEANINGS = {
    "F": "final",
    "C": "corrected (replaces a final result)",
    "U": "changed to final without retransmission",
    "A": "amended (patient demographics)",
    "B": "appended report",
    "V": "verified",
    "P": "preliminary",
    "R": "entered, not verified",
    "S": "partial",
    "I": "specimen in lab, results pending",
    "O": "order detail only, no result",
    "N": "not asked",
    "X": "results cannot be obtained",
    "D": "deletes the OBX record",
    "W": "posted as wrong (e.g. wrong patient)",
}
FINAL = frozenset("FCUABV")
NOT_FINAL = frozenset("PRS")
NEVER_USED = frozenset("IONXDW")


@dataclass(frozen=True)
class Status:
    code: str
    used: bool
    final: bool
    meaning: str


def read_status(text: str) -> Status:
    code = text.strip().upper()
    if code in FINAL:
        return Status(code, True, True, MEANINGS[code])
    if code in NOT_FINAL:
        return Status(code, True, False, MEANINGS[code])
    if code in NEVER_USED:
        return Status(code, False, False, MEANINGS[code])
    meaning = "no result status" if not code else f"{code!r} is not in HL7 table 0085; read as not final"
    return Status(code, True, False, meaning)
