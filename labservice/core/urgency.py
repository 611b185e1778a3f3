"""One overall urgency per CBC: the highest any finding asks for (clinical-rules §9)."""

from __future__ import annotations

import numpy as np

from labservice.core.aplastic import SEVERE, AplasticAssessment
from labservice.core.compare import meets
from labservice.core.findings import FindingColumn
from labservice.core.ruleset import Ruleset
from labservice.core.skin import SkinAssessment
from labservice.core.table import CbcColumns

ROUTINE, SOON, URGENT, IMMEDIATE = 0, 1, 2, 3
URGENCY_NAMES = ("routine", "soon", "urgent", "immediate")


def urgency_triggers(
    cols: CbcColumns,
    findings: dict[str, FindingColumn],
    aplastic: AplasticAssessment,
    skin: SkinAssessment,
    rs: Ruleset,
) -> dict[str, tuple[int, np.ndarray]]:
    """Each reason that raises the urgency, with the level it asks for."""
    plt, neut = cols.values["platelets"], cols.values["neutrophils"]
    severity = findings["anemia"].extra["severity"]
    severity_labels = [b.label for b in rs.bands["anemia_severity_adult"]]
    moderate_or_severe = (severity == severity_labels.index("moderate")) | (severity == severity_labels.index("severe"))
    return {
        "fever_with_nonblanching_rash": (IMMEDIATE, findings["fever_with_nonblanching_rash"].present),
        "febrile_neutropenia": (IMMEDIATE, findings["febrile_neutropenia"].present),
        "unexplained_petechiae_child": (IMMEDIATE, findings["unexplained_petechiae_child"].present),
        "critical_value": (URGENT, findings["critical_value"].present),
        "pancytopenia": (URGENT, findings["pancytopenia"].present),
        "severe_aplastic_criteria": (URGENT, aplastic.assessment >= SEVERE),
        "nonblanching_lesions_low_platelets": (
            URGENT,
            (skin.hemorrhagic_count > 0) & meets(plt, rs.threshold("urgent_lesions_platelets")),
        ),
        "bicytopenia": (SOON, findings["bicytopenia"].present),
        "thrombocytopenia_below_100": (SOON, meets(plt, rs.threshold("soon_platelets"))),
        "neutropenia_below_1_0": (SOON, meets(neut, rs.threshold("soon_neutrophils"))),
        "moderate_or_severe_anemia": (SOON, findings["anemia"].present & moderate_or_severe),
    }


def overall_urgency(n: int, triggers: dict[str, tuple[int, np.ndarray]]) -> np.ndarray:
    levels = np.array([value for value, _ in triggers.values()], dtype=np.int8)
    masks = np.array([mask for _, mask in triggers.values()])
    if n == 0:
        return np.zeros(0, dtype=np.int8)
    return np.maximum.reduce(masks * levels[:, None], axis=0).astype(np.int8)
