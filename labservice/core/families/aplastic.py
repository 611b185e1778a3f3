"""Aplastic anaemia severity (clinical-rules §6) as an urgency reason: severe blood-count criteria.

The assessment itself (labservice.core.aplastic) is reported in its own block of the answer; it
applies where pancytopenia or the marrow-failure range is present, so this family runs after the
combined one.
"""

from __future__ import annotations

from labservice.core.aplastic import SEVERE, assess_aplastic
from labservice.core.families.base import FindingColumn, Stage


def evaluate(stage: Stage) -> dict[str, FindingColumn]:
    prompted = stage.findings["pancytopenia"].present | stage.findings["marrow_failure_range"].present
    # Blasts reported (clinical-rules §6, §10 v2): the counts are not those of marrow aplasia.
    blasts = stage.findings["blasts_reported"].present
    stage.aplastic = aplastic = assess_aplastic(stage.cols, prompted & ~blasts, stage.rs)
    aplastic.blasts = prompted & blasts
    severe = aplastic.assessment >= SEVERE
    return {"severe_aplastic_criteria": FindingColumn("severe_aplastic_criteria", severe)}
