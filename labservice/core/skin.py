"""Skin presentation (clinical-rules §7): lesion typing, attribution to the platelet count and
the presentation the counts predict. The skin findings are in labservice.core.families.skin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labservice.core.compare import band_index, in_band
from labservice.core.ruleset import Ruleset
from labservice.core.table import CbcColumns

ATTRIBUTION_NONE, ATTRIBUTION_NOT_ASSESSED = "none", "not_assessed"


@dataclass
class SkinAssessment:
    lesion_type: np.ndarray  # object: petechiae / purpura / ecchymosis / "" (per lesion)
    lesion_type_from_size: np.ndarray  # bool per lesion
    lesion_hemorrhagic: np.ndarray  # bool per lesion
    hemorrhagic_count: np.ndarray  # per CBC row
    petechiae_count: np.ndarray  # hemorrhagic petechiae per CBC row
    palpable_count: np.ndarray  # hemorrhagic palpable lesions per CBC row
    attribution: np.ndarray  # object per CBC row
    escalate: np.ndarray  # bool per CBC row
    expected: np.ndarray  # int8 index into bands["skin_expected"] (-1 not assessed)


def type_lesions(cols: CbcColumns, rs: Ruleset) -> tuple[np.ndarray, np.ndarray]:
    """The stated type, else the type its size gives (petechiae < 2 mm, purpura 2-10, ecchymosis > 10)."""
    lesions = cols.lesions
    stated = lesions["type"]
    if stated.size == 0:
        return stated, np.zeros(0, dtype=bool)
    bands = rs.bands["lesion_size"]
    labels = np.array([b.label for b in bands] + [""], dtype=object)  # index -1 = no band
    by_size = labels[band_index(lesions["size_mm"], bands)]
    unstated = stated == ""
    return np.where(unstated, by_size, stated), unstated & (by_size != "")


def assess_skin(cols: CbcColumns, rs: Ruleset) -> SkinAssessment:
    lesions = cols.lesions
    lesion_type, from_size = type_lesions(cols, rs)
    # Petechiae, purpura and ecchymoses are non-blanching; one reported as blanching is not
    # haemorrhagic and is not attributed to platelets.
    hemorrhagic = lesions["blanching"] != 1.0
    rows = lesions["row"]
    n = cols.n

    def per_row(mask: np.ndarray) -> np.ndarray:
        return np.bincount(rows[mask], minlength=n).astype(np.int32) if rows.size else np.zeros(n, np.int32)

    hemorrhagic_count = per_row(hemorrhagic)
    petechiae_count = per_row(hemorrhagic & (lesion_type == "petechiae"))
    palpable_count = per_row(hemorrhagic & (lesions["palpable"] == 1.0))

    plt = cols.values["platelets"]
    attribution_bands = rs.bands["skin_attribution"]
    labels = np.array([b.label for b in attribution_bands] + [ATTRIBUTION_NOT_ASSESSED], dtype=object)
    attribution = labels[band_index(plt, attribution_bands)]  # -1 (NaN) picks "not_assessed"
    attribution = np.where(hemorrhagic_count == 0, ATTRIBUTION_NONE, attribution)
    escalate = (hemorrhagic_count > 0) & in_band(plt, rs.bands["skin_escalate"][0])
    expected = band_index(plt, rs.bands["skin_expected"])
    return SkinAssessment(
        lesion_type,
        from_size,
        hemorrhagic,
        hemorrhagic_count,
        petechiae_count,
        palpable_count,
        attribution,
        escalate,
        expected,
    )
