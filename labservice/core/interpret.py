"""The engine: interpret a whole table of CBCs at once. One implementation for one CBC or a million.

result = interpret_cbc_table(table)              # DataFrame or mapping of arrays
result.urgency_names()                            # per-row urgency
render_interpretations(result)                    # JSON-ready dicts (labservice.core.render)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labservice.core.anemia import AnemiaCutoffs, anemia_cutoffs
from labservice.core.aplastic import ASSESSMENT_NAMES, AplasticAssessment, assess_aplastic
from labservice.core.derive import derive_missing_counts
from labservice.core.findings import (
    FindingColumn,
    Lineages,
    combined,
    critical_value,
    lineages_from,
    pitfalls,
    single_lineage,
)
from labservice.core.grading import FLAG_NAMES, ctcae_grades, flags_and_criticals
from labservice.core.ranges import RangeInUse, resolve_ranges
from labservice.core.red_flags import red_flags
from labservice.core.ruleset import Ruleset, default_ruleset
from labservice.core.skin import SkinAssessment, assess_skin, vasculitis_pattern
from labservice.core.table import CbcColumns, to_columns
from labservice.core.urgency import URGENCY_NAMES, overall_urgency, urgency_triggers

# The contract's finding codes, in the order they are reported.
FINDING_CODES = (
    "fever_with_nonblanching_rash",
    "febrile_neutropenia",
    "unexplained_petechiae_child",
    "critical_value",
    "pancytopenia",
    "bicytopenia",
    "marrow_failure_range",
    "thrombocytopenia",
    "neutropenia",
    "anemia",
    "leukopenia",
    "lymphopenia",
    "thrombocytosis",
    "possible_pseudothrombocytopenia",
    "gestational_thrombocytopenia_possible",
    "vasculitis_pattern",
)


@dataclass
class InterpretationTable:
    """Everything the engine concluded, as columns over the input rows."""

    cols: CbcColumns
    ruleset: Ruleset
    ranges: dict[str, RangeInUse]
    flags: dict[str, np.ndarray]
    grades: dict[str, np.ndarray]
    anemia: AnemiaCutoffs
    lineages: Lineages
    findings: dict[str, FindingColumn]
    states: dict[str, np.ndarray]  # tri-state per assessable finding, for "not assessed"
    aplastic: AplasticAssessment
    skin: SkinAssessment
    triggers: dict[str, tuple[int, np.ndarray]]
    urgency: np.ndarray  # int8 index into URGENCY_NAMES
    ctcae_version: np.ndarray  # object: the CTCAE version applied per row

    @property
    def n(self) -> int:
        return self.cols.n

    def urgency_names(self) -> np.ndarray:
        return np.asarray(URGENCY_NAMES, dtype=object)[self.urgency]

    def aplastic_names(self) -> np.ndarray:
        return np.asarray(ASSESSMENT_NAMES, dtype=object)[self.aplastic.assessment]

    def flag_names(self, analyte: str) -> np.ndarray:
        return np.asarray(FLAG_NAMES, dtype=object)[self.flags[analyte]]


def interpret_cbc_table(table, lesions=None, ruleset: Ruleset | None = None) -> InterpretationTable:
    """Apply every rule of clinical-rules.md to every row of a CBC table, vectorised."""
    rs = ruleset or default_ruleset()
    cols = table if isinstance(table, CbcColumns) else to_columns(table, lesions)
    derive_missing_counts(cols)
    ctcae_version = np.where(cols.ctcae_version == "6.0", "6.0", "5.0").astype(object)
    cols.ctcae_version = ctcae_version
    ranges = resolve_ranges(cols, rs)
    flags, criticals = flags_and_criticals(cols, ranges, rs)
    grades = ctcae_grades(cols, ranges, rs)
    cutoffs = anemia_cutoffs(cols, rs)
    findings, states = single_lineage(cols, ranges, grades, cutoffs, rs)
    lineages = lineages_from(states, cols)
    combined_findings, combined_states = combined(cols, lineages, rs)
    findings.update(combined_findings)
    states.update(combined_states)
    findings["critical_value"] = critical_value(criticals, rs)
    skin = assess_skin(cols, rs)
    findings.update(pitfalls(cols, lineages, skin.hemorrhagic_count, rs))
    findings["vasculitis_pattern"] = vasculitis_pattern(skin)
    findings.update(red_flags(cols, skin, rs))
    applicable = findings["pancytopenia"].present | findings["marrow_failure_range"].present
    aplastic = assess_aplastic(cols, applicable, rs)
    triggers = urgency_triggers(cols, findings, aplastic, skin, rs)
    urgency = overall_urgency(cols.n, triggers)
    ordered = {code: findings[code] for code in FINDING_CODES}
    return InterpretationTable(
        cols,
        rs,
        ranges,
        flags,
        grades,
        cutoffs,
        lineages,
        ordered,
        states,
        aplastic,
        skin,
        triggers,
        urgency,
        ctcae_version,
    )
