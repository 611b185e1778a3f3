"""One CBC as the history rules see it, and the few helpers they share."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from labservice.core.ruleset import Ruleset

#: The analyte flags of a critical value (clinical-rules §3).
CRITICAL_FLAGS = ("LL", "HH")


@dataclass(frozen=True)
class PastCbc:
    """A stored CBC of a patient, or the one being stored."""

    collected_at: datetime | None  # timezone-aware; None: never compared
    platelets: float = math.nan  # canonical units; NaN when not measured
    mcv: float = math.nan
    criticals: frozenset[str] = frozenset()  # "platelets:LL", "wbc:HH": the critical values it had
    ref: Any = None  # what the caller names it by (a stored interpretation's id, say)


def critical_marks(analytes: dict[str, Any] | None) -> frozenset[str]:
    """The critical values of an answer's `analytes` block as "analyte:flag" (LL or HH)."""
    return frozenset(
        f"{name}:{entry.get('flag')}"
        for name, entry in (analytes or {}).items()
        if isinstance(entry, dict) and entry.get("flag") in CRITICAL_FLAGS
    )


def rounded(x: float) -> float:
    """A derived number to 6 significant figures, so a difference or a ratio lands exactly on a bound it meets
    (clinical-rules §1 v2): 91.1 - 88.1 is 3.0, not 2.9999999999999716."""
    return float(f"{x:.6g}") if math.isfinite(x) else x


def meets(rs: Ruleset, key: str, x: float) -> bool:
    """Whether `x` meets the rule `key` of thresholds.csv, with the rule's own operator."""
    th = rs.threshold(key)
    value = th.value
    return {
        "<": x < value,
        "<=": x <= value,
        ">": x > value,
        ">=": x >= value,
    }[th.operator]


def earlier_than(cbc: PastCbc, history: Iterable[PastCbc]) -> list[PastCbc]:
    """The CBCs of `history` collected strictly before `cbc`, oldest first (none when `cbc` has no time)."""
    at = cbc.collected_at
    if at is None:
        return []
    return sorted((p for p in history if p.collected_at is not None and p.collected_at < at), key=_time)


def latest_within(cbc: PastCbc, earlier: Sequence[PastCbc], window: timedelta, *, having: str | None = None):
    """The most recent of `earlier` (oldest first, all before `cbc`) collected at most `window` before `cbc` (and,
    with `having`, with that value measured), or None."""
    assert cbc.collected_at is not None
    for previous in reversed(earlier):
        assert previous.collected_at is not None
        if cbc.collected_at - previous.collected_at > window:
            return None
        if having is None or not math.isnan(getattr(previous, having)):
            return previous
    return None


def _time(cbc: PastCbc) -> datetime:
    assert cbc.collected_at is not None
    return cbc.collected_at


def number(x: float) -> float | None:
    """A JSON number, None for missing."""
    return None if x is None or math.isnan(x) else float(x)
