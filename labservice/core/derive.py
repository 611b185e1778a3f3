"""Values computed from others when only the relative count was sent (clinical-rules §1)."""

from __future__ import annotations

import numpy as np

from labservice.core.compare import meets
from labservice.core.numbers import round_sig
from labservice.core.ruleset import Threshold
from labservice.core.table import CbcColumns

#: Counts derived from WBC x a percentage of the automated differential (clinical-rules §1; lymphocytes v2).
DIFFERENTIAL_DERIVED = ("neutrophils", "lymphocytes")


def derive_missing_counts(cols: CbcColumns, imprecise_wbc: Threshold | None = None) -> None:
    """Fill absolute neutrophils, lymphocytes and reticulocytes from percentages, marking them derived.

    Neutrophils = WBC x neutrophil % / 100 and, *v2*, lymphocytes = WBC x lymphocyte % / 100;
    reticulocytes (10^9/L) = reticulocyte % x RBC (10^12/L) x 10 [S13]. A measured value is never
    overwritten. Each derived value is rounded to 6 significant figures before anything compares
    it (clinical-rules §1 v2: exact on bounds). With `imprecise_wbc` (thresholds.csv
    derived_count_imprecise_wbc: WBC < 1.0), a count derived from a WBC meeting it is marked imprecise
    (§1 v2: an automated differential of very few cells).
    """
    v = cols.values
    present = set(cols.present_analytes())  # a product with a column nobody sent fills nothing: skip it
    if {"wbc", "neutrophils_percent"} <= present:
        _fill(cols, "neutrophils", v["wbc"] * v["neutrophils_percent"] / 100.0)
    if {"wbc", "lymphocytes_percent"} <= present:
        _fill(cols, "lymphocytes", v["wbc"] * v["lymphocytes_percent"] / 100.0)
    if {"reticulocytes_percent", "rbc"} <= present:
        _fill(cols, "reticulocytes", v["reticulocytes_percent"] * v["rbc"] * 10.0)
    if imprecise_wbc is not None:
        few_cells = meets(v["wbc"], imprecise_wbc)
        for analyte in DIFFERENTIAL_DERIVED:
            marked = cols.derived[analyte] & few_cells
            if marked.any():
                cols.imprecise[analyte] = marked


def _fill(cols: CbcColumns, analyte: str, computed: np.ndarray) -> None:
    current = cols.values[analyte]
    gap = np.isnan(current) & ~np.isnan(computed)
    if gap.any():
        cols.values[analyte] = np.where(gap, round_sig(computed), current)
        cols.derived[analyte] = cols.derived[analyte] | gap
        cols.mark_changed()
