"""Aplastic anaemia severity (clinical-rules §6) as an urgency reason: severe blood-count criteria.

The assessment itself (labservice.core.aplastic) is reported in its own block of the answer; it
applies where pancytopenia or the marrow-failure range is present, so this family runs after the
combined one.
"""

from __future__ import annotations

from labservice.core.aplastic import SEVERE, assess_aplastic, not_applicable_reasons
from labservice.core.families.base import FindingColumn, Stage


def evaluate(stage: Stage) -> dict[str, FindingColumn]:
    applicable = stage.findings["pancytopenia"].present | stage.findings["marrow_failure_range"].present
    excluded_by = not_applicable_reasons(stage.cols, stage.ranges, stage.rs)
    stage.aplastic = aplastic = assess_aplastic(stage.cols, applicable, stage.rs, excluded_by)
    severe = aplastic.assessment >= SEVERE
    return {"severe_aplastic_criteria": FindingColumn("severe_aplastic_criteria", severe)}
