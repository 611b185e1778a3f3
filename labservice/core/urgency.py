"""One overall urgency per CBC: the highest any finding asks for (clinical-rules §9).

Which finding raises which urgency, under which reason code, is declared in findings.csv; each
family says on which rows (`FindingColumn.urgency_mask`).
"""

from __future__ import annotations

import numpy as np

from labservice.core.families.base import FindingColumn
from labservice.core.ruleset import Ruleset
from labservice.core.vocabulary import FINDING, REASON, URGENCY_NAMES, Urgency

ROUTINE, SOON, URGENT, IMMEDIATE = (u.rank for u in Urgency)
__all__ = ["IMMEDIATE", "ROUTINE", "SOON", "URGENCY_NAMES", "URGENT", "overall_urgency", "urgency_triggers"]


def urgency_triggers(columns: dict[str, FindingColumn], rs: Ruleset) -> dict[str, tuple[int, np.ndarray]]:
    """Each reason that raises the urgency, in the table's order, with the level it asks for."""
    if "urgency_reasons" not in rs._cache:
        rs._cache["urgency_reasons"] = tuple(
            (spec.reason, spec.urgency_rank, spec.code) for spec in rs.finding_specs(FINDING, REASON) if spec.reason
        )
    return {reason: (rank, columns[code].urgency_mask()) for reason, rank, code in rs._cache["urgency_reasons"]}


def overall_urgency(n: int, triggers: dict[str, tuple[int, np.ndarray]]) -> np.ndarray:
    if n == 0 or not triggers:
        return np.zeros(n, dtype=np.int8)
    levels = np.array([value for value, _ in triggers.values()], dtype=np.int8)
    masks = np.array([mask for _, mask in triggers.values()])
    return np.maximum.reduce(masks * levels[:, None], axis=0).astype(np.int8)
