"""Delta checks: each CBC against the same patient's previous CBC within a window, vectorised.

- `platelet_drop`: platelets fell by `platelet_drop` per cent or more (thresholds.csv; S23, S24).
- `new_cytopenia`: a cytopenia present now that the previous CBC had decided absent (not merely
  "not assessed") (S24, with the definitions of clinical-rules §4).
- the urgency compared with the previous CBC's: escalated, unchanged or de-escalated.

A CBC without a collection time, or with no previous CBC in the window, has no delta ("not
assessed", never "no change"). The previous CBC may be stored history or an earlier row of the
same table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labservice.core.ruleset import Ruleset

DELTA_CODES = ("platelet_drop", "new_cytopenia")
CYTOPENIAS = ("thrombocytopenia", "neutropenia", "anemia", "leukopenia", "lymphopenia")
URGENCY_CHANGES = ("de-escalated", "unchanged", "escalated")
#: Columns of the tables delta_checks takes (findings and not_assessed are lists of codes).
DELTA_INPUT = ("patient", "collected_at", "platelets", "urgency_rank", "findings", "not_assessed", "ref")


def _empty(n: int, index: pd.Index) -> pd.DataFrame:
    """The delta table when nothing was compared: no previous CBC, nothing assessed."""
    out = pd.DataFrame({
        "previous_ref": pd.Series([None] * n, dtype=object),
        "previous_collected_at": pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]"),
        "previous_urgency_rank": np.full(n, -1, dtype=np.int64),
        "previous_platelets": np.full(n, np.nan),
        "platelet_fall_percent": np.full(n, np.nan),
        "platelet_drop": np.zeros(n, dtype=bool),
        "new_cytopenias": pd.Series([()] * n, dtype=object),
        "urgency_change": pd.Series([None] * n, dtype=object),
    })
    out.index = index
    return out


def _normalised(table: pd.DataFrame) -> pd.DataFrame:
    """Patients as text and times as UTC nanoseconds, so stored history and new rows merge."""
    out = table.copy()
    out["patient"] = out["patient"].astype(object).map(str).astype("str")
    out["collected_at"] = pd.to_datetime(out["collected_at"], utc=True).astype("datetime64[ns, UTC]")
    out["platelets"] = pd.to_numeric(out["platelets"], errors="coerce").astype(np.float64)
    return out


def cytopenia_bits(codes: pd.Series) -> np.ndarray:
    """Bit i set when CYTOPENIAS[i] is among a row's codes."""
    bits = np.zeros(len(codes), dtype=np.int64)
    for position, name in enumerate(CYTOPENIAS):
        bits |= np.fromiter((name in row for row in codes), dtype=bool, count=len(codes)).astype(np.int64) << position
    return bits


def delta_checks(current: pd.DataFrame, history: pd.DataFrame, window: pd.Timedelta, rs: Ruleset) -> pd.DataFrame:
    """One row per row of `current` (same index): the previous CBC it was compared with and the deltas.

    Both tables have the DELTA_INPUT columns; `collected_at` is a timezone-aware timestamp (or NaT).
    `previous_ref` is the history row's `ref`, or "row i" for an earlier row of `current`.
    """
    n = len(current)
    if len(history) == 0 and not current["patient"].duplicated().any():
        return _empty(n, current.index)  # nothing to compare with (the common single new CBC): skip the merge
    cur = _normalised(current.reset_index(drop=True))
    history = _normalised(history)
    out = _empty(n, pd.RangeIndex(n))
    timed = cur["collected_at"].notna().to_numpy()
    if n == 0 or not timed.any():
        out.index = current.index
        return out
    own = cur[list(DELTA_INPUT)].copy()
    own["ref"] = [ref if ref is not None else f"row {i}" for i, ref in enumerate(own["ref"].tolist())]
    pool = pd.concat([history[list(DELTA_INPUT)], own], ignore_index=True)
    pool = pool[pool["collected_at"].notna()].copy()
    pool["prev_bits"] = cytopenia_bits(pool["findings"])
    pool["prev_undecided"] = cytopenia_bits(pool["not_assessed"])
    pool = pool.rename(columns={"collected_at": "previous_collected_at", "platelets": "previous_platelets",
                                "urgency_rank": "previous_urgency_rank", "ref": "previous_ref"})
    pool["at"] = pool["previous_collected_at"]
    pool = pool.drop(columns=["findings", "not_assessed"]).sort_values("at", kind="stable")
    left = cur.loc[timed, ["patient", "collected_at"]].copy()
    left["row"] = np.flatnonzero(timed)
    left = left.rename(columns={"collected_at": "at"}).sort_values("at", kind="stable")
    matched = pd.merge_asof(left, pool, on="at", by="patient", direction="backward", allow_exact_matches=False,
                            tolerance=window)
    found = matched["previous_collected_at"].notna().to_numpy()
    matched = matched[found]
    rows = matched["row"].to_numpy()
    if rows.size == 0:
        out.index = current.index
        return out
    out.loc[rows, "previous_ref"] = matched["previous_ref"].to_numpy()
    out.loc[rows, "previous_collected_at"] = matched["previous_collected_at"].to_numpy()
    previous_rank = matched["previous_urgency_rank"].to_numpy(dtype=np.int64)
    out.loc[rows, "previous_urgency_rank"] = previous_rank
    before = matched["previous_platelets"].to_numpy(dtype=np.float64)
    now = cur["platelets"].to_numpy(dtype=np.float64)[rows]
    out.loc[rows, "previous_platelets"] = before
    with np.errstate(divide="ignore", invalid="ignore"):
        fall = np.where(before > 0, (before - now) / before * 100.0, np.nan)
    out.loc[rows, "platelet_fall_percent"] = np.round(fall, 1)
    out.loc[rows, "platelet_drop"] = fall >= rs.value("platelet_drop")
    now_bits = cytopenia_bits(cur["findings"])[rows]
    new_bits = (now_bits & ~matched["prev_bits"].to_numpy(dtype=np.int64)
                & ~matched["prev_undecided"].to_numpy(dtype=np.int64))
    out.loc[rows, "new_cytopenias"] = pd.Series(
        [tuple(name for i, name in enumerate(CYTOPENIAS) if bits >> i & 1) for bits in new_bits.tolist()],
        index=rows, dtype=object)
    change = np.sign(cur["urgency_rank"].to_numpy(dtype=np.int64)[rows] - previous_rank) + 1
    out.loc[rows, "urgency_change"] = np.asarray(URGENCY_CHANGES, dtype=object)[change]
    out.index = current.index
    return out


def delta_findings(delta: dict, platelets_now: float | None, rs: Ruleset) -> list[dict]:
    """The answer's findings from a delta block (platelet_drop, new_cytopenia): title, rule and sources
    from their rows of findings.csv, texts from here. The store's delta findings can come from this."""
    if not delta.get("assessed"):
        return []
    out = []
    previous = delta["previous"]
    if delta["platelet_drop"]:
        spec = rs.finding("platelet_drop")
        out.append({
            "code": spec.code, "title": rs.text(spec.title),
            "detail": (f"Platelets fell from {previous['platelets']:g} to {platelets_now:g} x10^9/L "
                       f"({delta['platelet_fall_percent']:g} %) since the CBC of {previous['collected_at']}, "
                       f"within {delta['window_days']} days. A fall this large deserves review whatever the "
                       "count (e.g. heparin exposure, consumption, sampling error)."),
            "grade": None, "severity": None,
            "evidence": {"platelets": platelets_now, "previous_platelets": previous["platelets"],
                         "fall_percent": delta["platelet_fall_percent"]},
            "rule": spec.rule, "sources": rs.cite(spec.sources)})
    if delta["new_cytopenias"]:
        spec = rs.finding("new_cytopenia")
        out.append({
            "code": spec.code, "title": rs.text(spec.title),
            "detail": (f"{', '.join(delta['new_cytopenias'])} is present now and was absent on the CBC of "
                       f"{previous['collected_at']} (within {delta['window_days']} days)."),
            "grade": None, "severity": None, "evidence": {"new": list(delta["new_cytopenias"])},
            "rule": spec.rule, "sources": rs.cite(spec.sources)})
    return out
