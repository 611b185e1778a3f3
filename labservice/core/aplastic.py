"""Aplastic anaemia severity from blood counts, exactly as clinical-rules §6 ([S12]).

Counts alone cannot diagnose or grade aplastic anaemia; the caveat is always attached and the
output never says "non-severe aplastic anaemia".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from labservice.core.compare import NOT_ASSESSED, YES, meets, tristate
from labservice.core.ranges import RangeInUse
from labservice.core.ruleset import Ruleset
from labservice.core.table import CbcColumns

NOT_APPLICABLE, NOT_SEVERE, INDETERMINATE, SEVERE, VERY_SEVERE = 0, 1, 2, 3, 4
ASSESSMENT_NAMES = ("not_applicable", "not_severe", "indeterminate", "severe", "very_severe")
MARROW_NOT_PROVIDED, MARROW_MET, MARROW_NOT_MET = 0, 1, 2
MARROW_NAMES = ("not_provided", "met", "not_met")


def caveat(rs: Ruleset) -> str:
    """The caveat attached to every assessment, quoting the marrow criterion of thresholds.csv."""
    met, partial, residual = (
        f"{rs.value(key):g}"
        for key in ("marrow_cellularity_met", "marrow_cellularity_partial_max", "marrow_residual_met")
    )
    return (
        "Counts alone cannot diagnose or grade aplastic anaemia: severity also needs a bone marrow "
        f"cellularity below {met} % (or {met}-{partial} % with below {residual} % residual haematopoietic cells) "
        "and the exclusion of other causes [S12]."
    )


@dataclass(frozen=True)
class NotApplicableReason:
    """A reason why the counts are not those of marrow aplasia or cannot be read as such (§6 v2).

    `applies(cols, ranges, rs)` gives the rows it covers; `text` is the reason in words, which never
    names aplastic anaemia (§10: "the text never says aplastic")."""

    code: str
    applies: Callable[[CbcColumns, dict[str, RangeInUse], Ruleset], np.ndarray]
    text: str


def _wbc_above_range(cols: CbcColumns, ranges: dict[str, RangeInUse], rs: Ruleset) -> np.ndarray:
    return cols.values["wbc"] > ranges["wbc"].high  # NaN (not sent, no range) is never above


def _myelosuppressive_therapy(cols: CbcColumns, ranges: dict[str, RangeInUse], rs: Ruleset) -> np.ndarray:
    return cols.myelosuppressive_therapy == 1.0


def _blasts_reported(cols: CbcColumns, ranges: dict[str, RangeInUse], rs: Ruleset) -> np.ndarray:
    """Blasts on the differential (above the blasts_reported_percent row) or seen on the film (§10 v2),
    the rule of the film family's blasts_reported."""
    return meets(cols.values["blasts_percent"], rs.threshold("blasts_reported_percent")) | (
        cols.film["blasts_seen"] == 1.0
    )


#: §6 v2: the cases where the assessment is `not_applicable`, each computed from columns. Add a
#: reason with one entry here (blasts reported, §10, is the next); the assessment, the answer's
#: `not_applicable_reasons` and texts, and the marrow-failure-range wording all follow.
NOT_APPLICABLE_REASONS: list[NotApplicableReason] = [
    NotApplicableReason(
        "wbc_above_range",
        _wbc_above_range,
        "the white cell count is above the upper limit of its range, which is not the count of marrow aplasia",
    ),
    NotApplicableReason(
        "myelosuppressive_therapy",
        _myelosuppressive_therapy,
        "counts during myelosuppressive treatment cannot be read as marrow aplasia",
    ),
    NotApplicableReason(
        "blasts_reported",
        _blasts_reported,
        "blasts were reported on the differential: acute leukaemia must be excluded, and the counts cannot be "
        "read as marrow aplasia",
    ),
]


def not_applicable_reasons(cols: CbcColumns, ranges: dict[str, RangeInUse], rs: Ruleset) -> dict[str, np.ndarray]:
    """Per reason code of NOT_APPLICABLE_REASONS, the rows it covers (bool)."""
    return {reason.code: np.asarray(reason.applies(cols, ranges, rs), dtype=bool) for reason in NOT_APPLICABLE_REASONS}


def not_applicable_text(code: str) -> str:
    return next(reason.text for reason in NOT_APPLICABLE_REASONS if reason.code == code)


@dataclass
class AplasticAssessment:
    assessment: np.ndarray  # int8 codes above
    neutrophils: np.ndarray  # tri-state criterion (a)
    platelets: np.ndarray  # tri-state criterion (b)
    reticulocytes: np.ndarray  # tri-state criterion (c)
    marrow: np.ndarray  # int8 MARROW_*
    marrow_needs_residual: np.ndarray  # bool: cellularity 25-50 % and residual not sent
    #: §6 v2: reason code -> rows where the counts cannot be read as marrow aplasia
    excluded_by: dict[str, np.ndarray] = field(default_factory=dict)
    sources: tuple[str, ...] = ("S12",)
    #: rows `not_applicable` for a reason of NOT_APPLICABLE_REASONS (no criteria, no caveat)
    excluded: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.excluded = np.zeros(self.assessment.shape, dtype=bool)
        for mask in self.excluded_by.values():
            self.excluded |= mask


def assess_aplastic(
    cols: CbcColumns, applicable: np.ndarray, rs: Ruleset, excluded_by: dict[str, np.ndarray] | None = None
) -> AplasticAssessment:
    """§6 on every row; `applicable` (pancytopenia or the marrow-failure range) and no reason of
    `excluded_by` (not_applicable_reasons) leaves the assessment decided, otherwise not_applicable."""
    excluded_by = excluded_by if excluded_by is not None else {}
    v = cols.values
    a = tristate(v["neutrophils"], rs.threshold("aa_neutrophils"))
    b = tristate(v["platelets"], rs.threshold("aa_platelets"))
    retic_bound = np.where(
        cols.reticulocyte_manual, rs.value("aa_reticulocytes_manual"), rs.value("aa_reticulocytes_automated")
    )
    c = (v["reticulocytes"] < retic_bound).astype(np.int8)  # YES = 1, NO = 0
    c[np.isnan(v["reticulocytes"])] = NOT_ASSESSED
    met = (a == YES).astype(np.int8) + (b == YES) + (c == YES)
    unknown = (a == NOT_ASSESSED).astype(np.int8) + (b == NOT_ASSESSED) + (c == NOT_ASSESSED)
    need = rs.value("aa_min_criteria")
    severe = met >= need
    very_severe = severe & meets(v["neutrophils"], rs.threshold("aa_very_severe_neutrophils"))
    # Indeterminate (§6 v2, the general form): fewer than two met, but the criteria whose analyte
    # was not sent could still bring it to two (exactly one of (a)(b) and no reticulocytes is one case).
    indeterminate = ~severe & (met + unknown >= need)
    assessment = np.full(cols.n, NOT_SEVERE, dtype=np.int8)
    assessment[indeterminate] = INDETERMINATE
    assessment[severe] = SEVERE
    assessment[very_severe] = VERY_SEVERE
    assessment[~applicable] = NOT_APPLICABLE
    for mask in excluded_by.values():
        assessment[mask] = NOT_APPLICABLE
    marrow, needs_residual = marrow_criterion(cols, rs)
    return AplasticAssessment(assessment, a, b, c, marrow, needs_residual, excluded_by)


def marrow_criterion(cols: CbcColumns, rs: Ruleset) -> tuple[np.ndarray, np.ndarray]:
    cell, residual = cols.marrow_cellularity, cols.marrow_residual
    if not np.count_nonzero(cell == cell):  # no marrow data at all (the usual case)
        return np.full(cols.n, MARROW_NOT_PROVIDED, dtype=np.int8), np.zeros(cols.n, dtype=bool)
    low = meets(cell, rs.threshold("marrow_cellularity_met"))
    partial = ~low & meets(cell, rs.threshold("marrow_cellularity_partial_max")) & ~np.isnan(cell)
    residual_low = meets(residual, rs.threshold("marrow_residual_met"))
    needs_residual = partial & np.isnan(residual)
    marrow = np.full(cols.n, MARROW_NOT_MET, dtype=np.int8)
    marrow[needs_residual | np.isnan(cell)] = MARROW_NOT_PROVIDED
    marrow[low | (partial & residual_low)] = MARROW_MET
    return marrow, needs_residual
