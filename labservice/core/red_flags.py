"""Red flags that ask for immediate assessment whatever the counts (clinical-rules §7)."""

from __future__ import annotations

import numpy as np

from labservice.core.compare import meets
from labservice.core.findings import FindingColumn
from labservice.core.ruleset import Ruleset
from labservice.core.skin import SkinAssessment
from labservice.core.table import CbcColumns


def red_flags(cols: CbcColumns, skin: SkinAssessment, rs: Ruleset) -> dict[str, FindingColumn]:
    fever = cols.fever == 1.0
    rash = FindingColumn(
        "fever_with_nonblanching_rash",
        fever & (skin.hemorrhagic_count > 0),
        "red_flags:fever_with_nonblanching_rash",
        ("S19",),
    )
    febrile_threshold = rs.threshold("febrile_neutropenia")
    neut = cols.values["neutrophils"]
    febrile = FindingColumn(
        "febrile_neutropenia",
        fever & meets(neut, febrile_threshold),
        "thresholds.csv:febrile_neutropenia",
        febrile_threshold.sources,
        extra={
            "fever_unknown_low_neutrophils": np.isnan(cols.fever) & meets(neut, febrile_threshold),
            "fever_neutrophils_missing": fever & np.isnan(neut),
        },
    )
    child = meets(cols.age_years, rs.threshold("child_age_years"))
    petechiae = skin.petechiae_count > 0
    child_flag = FindingColumn(
        "unexplained_petechiae_child",
        petechiae & child,
        "thresholds.csv:child_age_years",
        rs.threshold("child_age_years").sources,
        extra={"age_unknown": petechiae & np.isnan(cols.age_years)},
    )
    return {f.code: f for f in (rash, febrile, child_flag)}
