"""Reflex tests a card may suggest, each only where a rule of clinical-rules.md calls for it.

| test | suggested when | rule, source |
|---|---|---|
| repeat platelet count in a citrate tube | finding `possible_pseudothrombocytopenia` | §8 pitfalls, S21 |
| blood film review (platelet clumps) | finding `possible_pseudothrombocytopenia` | §8 pitfalls, S21 |
| reticulocyte count | aplastic-anaemia assessment `indeterminate` | §6 ("would decide it"), S12 |
| blood film review | nucleated red cells with a cytopenia (a cytopenia finding's evidence holds them) | §10 v2 |

clinical-rules.md suggests no other test: it does not ask for a film for every cytopenia, nor a
reticulocyte count for every anaemia, and the seed articles recommend no test, so neither is
suggested here. A new row needs its rule and source first.

Each suggestion creates a draft FHIR R4 `ServiceRequest` (intent `proposal`) with a LOINC code:
777-3 "Platelets [#/volume] in Blood by Automated count" with the citrate tube as order detail;
11125-2 "Platelet morphology finding [Identifier] in Blood" (the film read for clumps);
60474-4 "Reticulocytes [#/volume] in Blood by Automated count" (clinical-rules §1; §6 sets the
analyser threshold); 5909-7 "Blood smear finding [Identifier] in Blood by Light microscopy" (loinc.org/5909-7,
a member of the Manual Differential panel 24318-8) for the film review of §10. Every rule stated it, so
each is `isRecommended`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labservice.core.ruleset import Ruleset

LOINC_SYSTEM = "http://loinc.org"


def _has_finding(code: str) -> Callable[[dict[str, Any]], bool]:
    return lambda answer: any(finding["code"] == code for finding in answer.get("findings", []))


def _nrbc_with_cytopenia(answer: dict[str, Any]) -> bool:
    """The engine names nucleated red cells in a cytopenia finding's evidence only when §10 v2 asks for
    the film review (> 0 per 100 leukocytes, older than 28 days)."""
    return any("nrbc_per_100_wbc" in finding.get("evidence", {}) for finding in answer.get("findings", []))


def _aplastic_indeterminate(answer: dict[str, Any]) -> bool:
    return (answer.get("aplastic_anemia") or {}).get("assessment") == "indeterminate"


@dataclass(frozen=True)
class ReflexTest:
    key: str
    label: str
    loinc: str
    display: str
    applies: Callable[[dict[str, Any]], bool]
    reason: str  # why, in the card's words
    rule: str  # where clinical-rules.md says so
    sources: tuple[str, ...]
    order_detail: str | None = None


REFLEX_TESTS: tuple[ReflexTest, ...] = (
    ReflexTest(
        key="citrate_platelet_count",
        label="Repeat the platelet count in a citrate tube",
        loinc="777-3",
        display="Platelets [#/volume] in Blood by Automated count",
        order_detail="Collect the sample in a sodium citrate tube (not EDTA)",
        applies=_has_finding("possible_pseudothrombocytopenia"),
        reason="possible EDTA pseudothrombocytopenia (platelet clumps in EDTA give a falsely low count)",
        rule="clinical-rules §8, laboratory pitfalls",
        sources=("S21",),
    ),
    ReflexTest(
        key="blood_film_platelet_clumps",
        label="Blood film review for platelet clumps",
        loinc="11125-2",
        display="Platelet morphology finding [Identifier] in Blood",
        applies=_has_finding("possible_pseudothrombocytopenia"),
        reason="possible EDTA pseudothrombocytopenia: a film shows whether platelets are clumped",
        rule="clinical-rules §8, laboratory pitfalls",
        sources=("S21",),
    ),
    ReflexTest(
        key="reticulocyte_count",
        label="Reticulocyte count",
        loinc="60474-4",
        display="Reticulocytes [#/volume] in Blood by Automated count",
        applies=_aplastic_indeterminate,
        reason="the blood-count criteria for severe aplastic anaemia are undecided; the reticulocyte count "
        "would decide them",
        rule="clinical-rules §6, aplastic anaemia severity from counts",
        sources=("S12",),
    ),
    ReflexTest(
        key="blood_film_review",
        label="Blood film review",
        loinc="5909-7",
        display="Blood smear finding [Identifier] in Blood by Light microscopy",
        applies=_nrbc_with_cytopenia,
        reason="nucleated red cells with a cytopenia: a leucoerythroblastic picture calls for a film review",
        rule="clinical-rules §10, nucleated red cells",
        sources=(),
    ),
)


def reflex_tests_for(answer: dict[str, Any]) -> list[ReflexTest]:
    return [test for test in REFLEX_TESTS if test.applies(answer)]


def suggestion(test: ReflexTest, ruleset: Ruleset, patient_id: str, encounter_id: str | None) -> dict[str, Any]:
    """One card suggestion: a draft ServiceRequest for the test, citing its rule and source."""
    citation = "; ".join(ruleset.cite(test.sources))
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": test.loinc, "display": test.display}], "text": test.label},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if test.order_detail:
        request["orderDetail"] = [{"text": test.order_detail}]
    if encounter_id:
        request["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    request["reasonCode"] = [{"text": test.reason}]
    request["note"] = [{"text": f"Suggested by labservice CBC review: {test.rule}. {citation}"}]
    return {
        "uuid": str(uuid.uuid4()),
        "label": test.label,
        "isRecommended": True,
        "actions": [
            {
                "type": "create",
                "description": f"Order: {test.label.lower()} ({test.reason}; {test.rule} {citation}).",
                "resource": request,
            }
        ],
    }
