"""Blood-film words every input path reads the same way (clinical-rules §10 v2).

Graded schistocyte reports map to the contract's `none` / `present` / `many`: `occasional`, `1+` and
`few` are present; `2+` and above, `many` and `numerous` are many. A word not listed here is not
guessed: the caller names it as an error (JSON, CSV) or an unused result (FHIR, HL7 v2).

LOINC 800-3 "Schistocytes [Presence] in Blood by Light microscopy" is the ordinal film code read by
the FHIR and HL7 v2 adapters (verified in the LOINC erythrocyte morphology panel 58408-6 as published
in nmdp-ig/cibmtr-reporting-ig build/input/fsh/erythrocyte-morphology-blood-valueset.fsh, commit
bdd34bff30da4fc452d1d8db773f80c9649162db; MIMIC-III D_LABITEMS gives the same code for item 51287).
"""

from __future__ import annotations

import re

#: LOINC codes of a graded schistocyte report (see the module docstring for the source).
SCHISTOCYTE_LOINC = frozenset({"800-3"})

_GRADES = {
    "none": "none",
    "none seen": "none",
    "not seen": "none",
    "absent": "none",
    "negative": "none",
    "nil": "none",
    "0": "none",
    "present": "present",
    "positive": "present",
    "occasional": "present",
    "occ": "present",
    "few": "present",
    "1+": "present",
    "many": "many",
    "numerous": "many",
    "2+": "many",
    "3+": "many",
    "4+": "many",
}


def schistocyte_grade(text: str) -> str | None:
    """`none`, `present` or `many` for a graded film word (case and spacing ignored), else None."""
    key = re.sub(r"\s+", " ", str(text).strip().casefold())
    return _GRADES.get(key)


def grade_words() -> str:
    """The accepted words, for error messages."""
    return ", ".join(_GRADES)
