"""The engine: interpret a whole table of CBCs at once. One implementation for one CBC or a million.

result = interpret_cbc_table(table)              # DataFrame or mapping of arrays
result.urgency_names()                            # per-row urgency
render_interpretations(result)                    # JSON-ready dicts (labservice.core.render)
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from labservice.core.anemia import AnemiaCutoffs, anemia_cutoffs
from labservice.core.aplastic import ASSESSMENT_NAMES, AplasticAssessment
from labservice.core.derive import derive_missing_counts
from labservice.core.families import EVALUATION_ORDER, family
from labservice.core.families.base import FindingColumn, Lineages, Stage
from labservice.core.grading import FLAG_NAMES, ctcae_grades, flags_and_criticals
from labservice.core.ranges import RangeInUse, resolve_ranges
from labservice.core.ruleset import Ruleset, default_ruleset
from labservice.core.skin import SkinAssessment
from labservice.core.table import CbcColumns, to_columns
from labservice.core.urgency import URGENCY_NAMES, overall_urgency, urgency_triggers
from labservice.core.vocabulary import CTCAE_DEFAULT_VERSION, ENGINE_FINDING_CODES, FINDING, REASON

#: The contract's finding codes, in the order they are reported (the `order` of findings.csv).
FINDING_CODES = ENGINE_FINDING_CODES


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


def _evaluation_order(rs: Ruleset) -> tuple[ModuleType, ...]:
    """The family modules: EVALUATION_ORDER, then any other family of findings.csv (a new family
    runs last, when everything it might read is there)."""
    if "evaluation_order" not in rs._cache:
        named = {spec.family for spec in rs.finding_specs(FINDING, REASON)}
        names = EVALUATION_ORDER + tuple(sorted(named - set(EVALUATION_ORDER)))
        rs._cache["evaluation_order"] = tuple(family(name) for name in names)
    return rs._cache["evaluation_order"]


def interpret_cbc_table(table, lesions=None, ruleset: Ruleset | None = None) -> InterpretationTable:
    """Apply every rule of clinical-rules.md to every row of a CBC table, vectorised."""
    rs = ruleset or default_ruleset()
    cols = table if isinstance(table, CbcColumns) else to_columns(table, lesions)
    derive_missing_counts(cols, rs.thresholds.get("derived_count_imprecise_wbc"))
    versions = rs.ctcae_versions()
    known = cols.ctcae_version == versions[0]
    for version in versions[1:]:  # a version ctcae.csv does not define reads as the default
        known |= cols.ctcae_version == version
    if not known.all():
        cols.ctcae_version = np.where(known, cols.ctcae_version, CTCAE_DEFAULT_VERSION)
    ctcae_version = cols.ctcae_version.astype(object)
    cols.ctcae_version = ctcae_version
    ranges = resolve_ranges(cols, rs)
    flags, criticals = flags_and_criticals(cols, ranges, rs)
    grades = ctcae_grades(cols, ranges, rs)
    cutoffs = anemia_cutoffs(cols, rs)
    stage = Stage(cols, rs, ranges, criticals, grades, cutoffs)
    stage.flags = flags
    for module in _evaluation_order(rs):
        stage.findings.update(module.evaluate(stage))
    triggers = urgency_triggers(stage.findings, rs)
    urgency = overall_urgency(cols.n, triggers)
    ordered = {code: stage.findings[code] for code in rs.finding_codes()}
    assert stage.lineages is not None and stage.aplastic is not None and stage.skin is not None
    return InterpretationTable(
        cols,
        rs,
        ranges,
        flags,
        grades,
        cutoffs,
        stage.lineages,
        ordered,
        stage.states,
        stage.aplastic,
        stage.skin,
        triggers,
        urgency,
        ctcae_version,
    )
