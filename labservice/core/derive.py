"""Values computed from others when only the relative count was sent (clinical-rules §1)."""

from __future__ import annotations

import numpy as np

from labservice.core.table import CbcColumns


def derive_missing_counts(cols: CbcColumns) -> None:
    """Fill absolute neutrophils and reticulocytes from percentages, marking them derived.

    Neutrophils = WBC x neutrophil % / 100; reticulocytes (10^9/L) = reticulocyte % x RBC
    (10^12/L) x 10 [S13]. A measured value is never overwritten.
    """
    v = cols.values
    _fill(cols, "neutrophils", v["wbc"] * v["neutrophils_percent"] / 100.0)
    _fill(cols, "reticulocytes", v["reticulocytes_percent"] * v["rbc"] * 10.0)


def _fill(cols: CbcColumns, analyte: str, computed: np.ndarray) -> None:
    current = cols.values[analyte]
    gap = np.isnan(current) & ~np.isnan(computed)
    if gap.any():
        cols.values[analyte] = np.where(gap, computed, current)
        cols.derived[analyte] = cols.derived[analyte] | gap
        cols.mark_changed()
