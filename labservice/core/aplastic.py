"""Aplastic anaemia severity from blood counts, exactly as clinical-rules §6 ([S12]).

Counts alone cannot diagnose or grade aplastic anaemia; the caveat is always attached and the
output never says "non-severe aplastic anaemia".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labservice.core.compare import NOT_ASSESSED, YES, meets, tristate
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


@dataclass
class AplasticAssessment:
    assessment: np.ndarray  # int8 codes above
    neutrophils: np.ndarray  # tri-state criterion (a)
    platelets: np.ndarray  # tri-state criterion (b)
    reticulocytes: np.ndarray  # tri-state criterion (c)
    marrow: np.ndarray  # int8 MARROW_*
    marrow_needs_residual: np.ndarray  # bool: cellularity 25-50 % and residual not sent
    sources: tuple[str, ...] = ("S12",)
    blasts: np.ndarray | None = None  # bool: not applicable because blasts were reported (§6, §10 v2)


def assess_aplastic(cols: CbcColumns, applicable: np.ndarray, rs: Ruleset) -> AplasticAssessment:
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
    # Indeterminate: not yet severe, but the counts not sent could still make it so
    # (the rules' case: exactly one of (a)(b) met and no reticulocyte count).
    indeterminate = ~severe & (met + unknown >= need)
    assessment = np.full(cols.n, NOT_SEVERE, dtype=np.int8)
    assessment[indeterminate] = INDETERMINATE
    assessment[severe] = SEVERE
    assessment[very_severe] = VERY_SEVERE
    assessment[~applicable] = NOT_APPLICABLE
    marrow, needs_residual = marrow_criterion(cols, rs)
    return AplasticAssessment(assessment, a, b, c, marrow, needs_residual)


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
