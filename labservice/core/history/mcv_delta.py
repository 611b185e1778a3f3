"""The MCV delta check (clinical-rules §12 v2): MCV changed by more than `mcv_delta` (3.0 fL) from the previous CBC
collected at most `mcv_delta_hours` (72 h) earlier -> `possible_sample_misidentification`, urgency `soon`.

The previous CBC is the most recent earlier one of the patient that measured MCV within those hours (a CBC that
sent no MCV in between cannot be compared, so it is passed over). Without one the check is not assessed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from labservice.core.history.points import PastCbc, latest_within, meets, rounded
from labservice.core.ruleset import Ruleset


def hours(rs: Ruleset) -> timedelta:
    """How far back the previous CBC may be (thresholds.csv mcv_delta_hours)."""
    return timedelta(hours=rs.value("mcv_delta_hours"))


def compare(cbc: PastCbc, earlier: Sequence[PastCbc], rs: Ruleset) -> dict[str, Any] | None:
    """The MCV delta block of `cbc` against `earlier` (oldest first, all collected before it); None when `cbc` has no
    MCV or no collection time (nothing to say)."""
    if math.isnan(cbc.mcv) or cbc.collected_at is None:
        return None
    previous = latest_within(cbc, earlier, hours(rs), having="mcv")
    if previous is None:
        return {
            "assessed": False,
            "reason": f"no earlier CBC of this patient with an MCV within {rs.value('mcv_delta_hours'):g} hours",
        }
    assert previous.collected_at is not None
    change = rounded(cbc.mcv - previous.mcv)
    elapsed = rounded((cbc.collected_at - previous.collected_at).total_seconds() / 3600.0)
    return {
        "assessed": True,
        "mcv": cbc.mcv,
        "previous_mcv": previous.mcv,
        "previous_collected_at": previous.collected_at.isoformat(),
        "change_fl": change,
        "hours": elapsed,
        "finding": meets(rs, "mcv_delta", abs(change)),
    }
