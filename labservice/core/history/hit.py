"""The heparin-induced thrombocytopenia pattern: the 4Ts items that counts and dates can score (clinical-rules §12
v2 [S27]: Lo 2006, tag S23 here; Cuker 2018, tag S27), over every stored CBC of the patient since heparin started.

- baseline: the highest platelet count from the day heparin started (day 0, in the offset the start was given in)
  up to this CBC, this one included;
- fall = (baseline - this count) / baseline; nadir: the lowest count collected since heparin started, this one
  included;
- onset: the first CBC after the start whose own fall (against the highest count from day 0 up to it) is 30 % or
  more;
- fall item, in this order: 2 points for a fall > 50 % with a nadir >= 20; 0 for a fall < 30 % or a nadir < 10;
  otherwise 1;
- timing item (days are calendar days after the day heparin started): 2 points for an onset on days 5-10, or
  within 1 day with heparin in the previous 30 days; 0 for an onset within 4 days without recent heparin;
  otherwise (after day 10, or no onset yet) 1. An onset within 4 days when recent heparin is not stated could
  score 0, 1 or 2: not assessed;
- thrombosis and other causes of thrombocytopenia: never scored by the service, listed as not assessed;
- fall 2 + timing 2: `heparin_induced_thrombocytopenia_possible`, urgency `immediate` ("a 4Ts score of at least 4
  is not low probability; the remaining items decide").

A fall needs an earlier platelet count from day 0: with none, the fall item is not assessed (never 0).
Every bound is a row of thresholds.csv (hit_*), compared with its own operator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from labservice.core.history.points import PastCbc, meets, number, rounded
from labservice.core.ruleset import Ruleset

NOT_SCORED = {
    "thrombosis": "thrombosis or other sequelae are clinical findings the service is never sent",
    "other_causes": "other causes of thrombocytopenia are a clinical judgement the service never makes",
}


def start_of_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def day_number(started_at: datetime, moment: datetime) -> int:
    """Calendar days from the day heparin started (day 0), in the offset the start was given in."""
    assert started_at.tzinfo is not None
    return (moment.astimezone(started_at.tzinfo).date() - started_at.date()).days


def _fall_percent(baseline: float, count: float) -> float:
    return rounded((baseline - count) / baseline * 100.0) if baseline > 0 else math.nan


def score_4ts(
    cbc: PastCbc, earlier: Sequence[PastCbc], started_at: datetime, recent_heparin: bool | None, rs: Ruleset
) -> dict[str, Any]:
    """The `hit_4ts` block of `cbc`: each item's points (None: not assessed) and why, the items not assessed, and
    whether fall and timing score 2 + 2. `earlier`: the patient's CBCs collected before `cbc`, oldest first."""
    if cbc.collected_at is None:
        return not_assessed_block(started_at, recent_heparin, "this CBC has no collection time")
    if cbc.collected_at < started_at:
        return not_assessed_block(started_at, recent_heparin, "this CBC was collected before heparin started")
    day0 = start_of_day(started_at)
    since_day0 = [p for p in earlier if p.collected_at is not None and p.collected_at >= day0]
    counted = [p for p in since_day0 if not math.isnan(p.platelets)]
    fall = _fall_item(cbc, counted, started_at, rs)
    timing = _timing_item(cbc, counted, started_at, recent_heparin, rs)
    items = {"fall": fall, "timing": timing}
    for name, reason in NOT_SCORED.items():
        items[name] = {"points": None, "reason": reason}
    not_assessed = [name for name, item in items.items() if item["points"] is None]
    scored = [item["points"] for item in (fall, timing) if item["points"] is not None]
    return {
        "heparin_started_at": started_at.isoformat(),
        "heparin_in_previous_30_days": recent_heparin,
        "assessed": True,
        "items": items,
        "points": sum(scored),
        "not_assessed": not_assessed,
        # Each item scores at most 2, so fall + timing >= 4 is exactly "2 + 2".
        "pattern": len(scored) == 2 and meets(rs, "hit_possible_points", sum(scored)),
        "sources": rs.cite(rs.finding("heparin_induced_thrombocytopenia_possible").sources),
    }


def not_assessed_block(started_at: datetime | None, recent_heparin: bool | None, reason: str) -> dict[str, Any]:
    """The `hit_4ts` block where the items cannot be scored at all (no stored history, no collection time...)."""
    items: dict[str, dict[str, Any]] = {name: {"points": None, "reason": reason} for name in ("fall", "timing")}
    for name, why in NOT_SCORED.items():
        items[name] = {"points": None, "reason": why}
    return {
        "heparin_started_at": None if started_at is None else started_at.isoformat(),
        "heparin_in_previous_30_days": recent_heparin,
        "assessed": False,
        "reason": reason,
        "items": items,
        "points": 0,
        "not_assessed": list(items),
        "pattern": False,
    }


def _fall_item(cbc: PastCbc, counted: Sequence[PastCbc], started_at: datetime, rs: Ruleset) -> dict[str, Any]:
    if math.isnan(cbc.platelets):
        return {"points": None, "reason": "this CBC has no platelet count"}
    if not counted:
        return {"points": None, "reason": "no earlier platelet count since the day heparin started"}
    top = max(counted, key=lambda p: p.platelets)
    baseline = max(top.platelets, cbc.platelets)
    fall = _fall_percent(baseline, cbc.platelets)
    if math.isnan(fall):
        return {"points": None, "reason": "the baseline platelet count is 0"}
    nadir = min([p.platelets for p in counted if p.collected_at >= started_at] + [cbc.platelets])  # type: ignore[operator]
    if meets(rs, "hit_fall_two_points", fall) and meets(rs, "hit_nadir_two_points", nadir):
        points = 2
    elif meets(rs, "hit_fall_zero_points", fall) or meets(rs, "hit_nadir_zero_points", nadir):
        points = 0
    else:
        points = 1
    return {
        "points": points,
        "baseline": baseline,
        "baseline_collected_at": (top.collected_at if top.platelets >= cbc.platelets else cbc.collected_at).isoformat(),  # type: ignore[union-attr]
        "platelets": cbc.platelets,
        "fall_percent": fall,
        "nadir": nadir,
    }


def _timing_item(
    cbc: PastCbc, counted: Sequence[PastCbc], started_at: datetime, recent: bool | None, rs: Ruleset
) -> dict[str, Any]:
    series = [*counted, cbc] if not math.isnan(cbc.platelets) and cbc.collected_at is not None else list(counted)
    onset = None
    highest = -math.inf
    for p in series:  # oldest first: each CBC's fall against the highest count from day 0 up to it
        highest = max(highest, p.platelets)
        assert p.collected_at is not None
        if p.collected_at > started_at and meets(rs, "hit_onset_fall", _fall_percent(highest, p.platelets)):
            onset = p
            break
    if onset is None:
        return {"points": 1, "onset_collected_at": None, "onset_day": None, "reason": "no fall of 30 % or more yet"}
    assert onset.collected_at is not None
    day = day_number(started_at, onset.collected_at)
    out: dict[str, Any] = {"onset_collected_at": onset.collected_at.isoformat(), "onset_day": day}
    window = meets(rs, "hit_onset_from_day", day) and meets(rs, "hit_onset_to_day", day)
    if window or (recent is True and meets(rs, "hit_onset_recent_heparin_days", day)):
        out["points"] = 2
    elif meets(rs, "hit_onset_too_early_days", day):
        if recent is None:
            out["points"] = None
            out["reason"] = (
                f"onset on day {day}: whether heparin was given in the previous 30 days decides "
                "(context.heparin_in_previous_30_days)"
            )
        else:
            out["points"] = 0 if recent is False else 1
    else:
        out["points"] = 1
    return out


def detail(block: dict[str, Any]) -> str:
    """The finding's text, from its `hit_4ts` block."""
    fall, timing = block["items"]["fall"], block["items"]["timing"]
    return (
        f"4Ts items the counts and dates can score: fall {fall['points']} (platelets {fall['platelets']:g}, "
        f"{fall['fall_percent']:g} % below the baseline {fall['baseline']:g} since heparin started, nadir "
        f"{fall['nadir']:g}); timing {timing['points']} (onset on day {timing['onset_day']} after heparin started). "
        "A 4Ts score of at least 4 is not low probability; the remaining items decide (thrombosis and other causes "
        "of thrombocytopenia are not assessed by the service)."
    )


def evidence(block: dict[str, Any]) -> dict[str, Any]:
    fall, timing = block["items"]["fall"], block["items"]["timing"]
    return {
        "platelets": number(fall["platelets"]),
        "baseline": number(fall["baseline"]),
        "fall_percent": fall["fall_percent"],
        "nadir": number(fall["nadir"]),
        "onset_day": timing["onset_day"],
        "fall_points": fall["points"],
        "timing_points": timing["points"],
    }
