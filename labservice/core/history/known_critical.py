"""Known and new critical values (clinical-rules §3 v2).

A critical value of the same analyte in the same direction already present in the patient's most recent stored
CBC before this one, within the delta window, is known: it stays LL/HH and `critical_value` (with
`evidence.known: true`) but asks only for `urgent` (reason `known_critical_value`). A critical value that is not in
that CBC is new (`immediate`, reason `new_critical_value`, as the engine says). When every critical value of the CBC
is known the CBC asks for `urgent` for it; one new critical value keeps `immediate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from labservice.core.history.points import PastCbc, latest_within


def compare(cbc: PastCbc, earlier: Sequence[PastCbc], window: timedelta) -> dict[str, Any] | None:
    """The critical values of `cbc` split into known and new against the patient's most recent earlier CBC within
    `window` (`earlier`: oldest first, all collected before `cbc`); None when `cbc` has no critical value."""
    if not cbc.criticals:
        return None
    previous = latest_within(cbc, earlier, window) if cbc.collected_at is not None else None
    before = previous.criticals if previous is not None else frozenset()
    known = sorted(cbc.criticals & before)
    return {
        "known": bool(known) and len(known) == len(cbc.criticals),
        "known_values": known,
        "new_values": sorted(cbc.criticals - before),
        "previous_collected_at": None
        if previous is None or previous.collected_at is None
        else previous.collected_at.isoformat(),
        "window_days": window.days,
    }
