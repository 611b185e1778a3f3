"""Delta checks: each CBC against the same patient's previous CBC within a window.

- `platelet_drop`: platelets fell by `platelet_drop` per cent or more (thresholds.csv; S23, S24).
- `new_cytopenia`: a cytopenia present now that the previous CBC had decided absent (not merely
  "not assessed") (S24, with the definitions of clinical-rules §4).
- the urgency compared with the previous CBC's: escalated, unchanged or de-escalated.

A CBC without a collection time, or with no previous CBC in the window, has no delta ("not
assessed", never "no change"). The previous CBC may be stored history or an earlier CBC of the
same call.

One implementation: `compare_with_previous` finds each CBC's previous one (a sorted list per patient,
so storing one CBC against its few previous ones costs microseconds, not a DataFrame merge) and applies
the rules once, vectorised over every compared CBC. `delta_block` and `delta_findings` turn a result into
the answer's delta block and findings; `delta_checks` gives the same results as a table.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from labservice.core.numbers import round_sig, text_number
from labservice.core.ruleset import Ruleset
from labservice.core.vocabulary import URGENCY_NAMES

DELTA_CODES = ("platelet_drop", "new_cytopenia")
CYTOPENIAS = ("thrombocytopenia", "neutropenia", "anemia", "leukopenia", "lymphopenia")
URGENCY_CHANGES = ("de-escalated", "unchanged", "escalated")
#: Columns of the tables delta_checks takes (findings and not_assessed are lists of codes).
DELTA_INPUT = ("patient", "collected_at", "platelets", "urgency_rank", "findings", "not_assessed", "ref")


@dataclass(frozen=True)
class DeltaCbc:
    """One CBC as the delta checks see it: a stored one or one being stored."""

    patient: str
    collected_at: datetime | None  # timezone-aware; None: never compared
    platelets: float  # NaN when not measured
    urgency_rank: int
    findings: Collection[str] = ()
    not_assessed: Collection[str] = ()  # cytopenias it could not decide are never "new" after it
    ref: Any = None  # what the caller names it by (a stored interpretation's id, say)


@dataclass(frozen=True)
class Delta:
    """A CBC compared with its previous one."""

    previous: DeltaCbc
    platelet_fall_percent: float  # rounded to 0.1; NaN when either count is missing (or the previous is 0)
    platelet_drop: bool
    new_cytopenias: tuple[str, ...]
    urgency_change: str  # one of URGENCY_CHANGES


def cytopenia_bits(codes: Sequence[Collection[str]]) -> np.ndarray:
    """Bit i set when CYTOPENIAS[i] is among a row's codes."""
    bits = np.zeros(len(codes), dtype=np.int64)
    for position, name in enumerate(CYTOPENIAS):
        bits |= np.fromiter((name in row for row in codes), dtype=bool, count=len(codes)).astype(np.int64) << position
    return bits


def previous_positions(current: Sequence[DeltaCbc], history: Sequence[DeltaCbc], window: timedelta) -> list[int | None]:
    """For each current CBC, the position in `[*history, *current]` of the same patient's CBC collected last
    before it (strictly earlier, at most `window` earlier), or None. Of CBCs collected at the same time, the
    last one listed."""
    pool = [*history, *current]
    times: dict[str, list[tuple[datetime, int]]] = {}
    for position, cbc in enumerate(pool):
        if cbc.collected_at is not None:
            times.setdefault(cbc.patient, []).append((cbc.collected_at, position))
    for entries in times.values():
        entries.sort(key=lambda entry: entry[0])  # stable: equal times keep the order listed
    out: list[int | None] = []
    for cbc in current:
        at = cbc.collected_at
        entries = times.get(cbc.patient, []) if at is not None else []
        before = bisect_left(entries, at, key=lambda entry: entry[0]) - 1 if entries else -1
        found = at is not None and before >= 0 and at - entries[before][0] <= window
        out.append(entries[before][1] if found else None)
    return out


def compare_with_previous(
    current: Sequence[DeltaCbc], history: Sequence[DeltaCbc], window: timedelta, rs: Ruleset
) -> list[Delta | None]:
    """Each current CBC compared with its previous CBC (stored `history` or an earlier one of `current`):
    None when there is none within the window. The rules run once, vectorised over the compared CBCs."""
    pool = [*history, *current]
    found = previous_positions(current, history, window)
    rows = [i for i, position in enumerate(found) if position is not None]
    if not rows:
        return [None] * len(current)
    now = [current[i] for i in rows]
    before = [pool[position] for position in found if position is not None]
    after = np.array([cbc.platelets for cbc in now], dtype=np.float64)
    earlier = np.array([cbc.platelets for cbc in before], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Rounded to 6 significant figures before it is compared (clinical-rules §1 v2: exact on bounds).
        fall = round_sig(np.where(earlier > 0, (earlier - after) / earlier * 100.0, np.nan))
    threshold = rs.value("platelet_drop")
    drop = fall >= threshold
    # Shown to 0.1 %, unless that would put it across the threshold it was compared with (§1 v2).
    shown = np.round(fall, 1)
    shown = np.where((shown >= threshold) == drop, shown, fall)
    new = (
        cytopenia_bits([cbc.findings for cbc in now])
        & ~cytopenia_bits([cbc.findings for cbc in before])
        & ~cytopenia_bits([cbc.not_assessed for cbc in before])
    )
    change = (
        np.sign(
            np.array([cbc.urgency_rank for cbc in now], dtype=np.int64)
            - np.array([cbc.urgency_rank for cbc in before], dtype=np.int64)
        )
        + 1
    )
    out: list[Delta | None] = [None] * len(current)
    for k, (i, previous) in enumerate(zip(rows, before, strict=True)):
        out[i] = Delta(
            previous=previous,
            platelet_fall_percent=float(shown[k]),
            platelet_drop=bool(drop[k]),
            new_cytopenias=tuple(name for bit, name in enumerate(CYTOPENIAS) if int(new[k]) >> bit & 1),
            urgency_change=URGENCY_CHANGES[int(change[k])],
        )
    return out


def delta_block(delta: Delta | None, window: timedelta, rs: Ruleset) -> dict[str, Any]:
    """The delta block of an answer: what was compared and what changed."""
    if delta is None:
        return {
            "assessed": False,
            "window_days": window.days,
            "reason": "no previous CBC of this patient within the window (or no collection time)",
        }
    previous = delta.previous
    assert previous.collected_at is not None  # a CBC without a time is never a previous one
    return {
        "assessed": True,
        "window_days": window.days,
        "previous": {
            "collected_at": previous.collected_at.isoformat(),
            "urgency": URGENCY_NAMES[previous.urgency_rank],
            "platelets": None if np.isnan(previous.platelets) else float(previous.platelets),
        },
        "platelet_fall_percent": None if np.isnan(delta.platelet_fall_percent) else delta.platelet_fall_percent,
        "platelet_drop": delta.platelet_drop,
        "new_cytopenias": list(delta.new_cytopenias),
        "urgency_change": delta.urgency_change,
        "sources": rs.cite(rs.threshold("platelet_drop").sources),
    }


def _cbcs(table: pd.DataFrame, own: bool) -> list[DeltaCbc]:
    """The rows of a DELTA_INPUT table as DeltaCbc (an own row without a ref is "row i")."""
    times = pd.to_datetime(table["collected_at"], utc=True)
    platelets = pd.to_numeric(table["platelets"], errors="coerce").astype(np.float64)
    return [
        DeltaCbc(
            patient=str(patient),
            collected_at=None if pd.isna(at) else at,
            platelets=float(count),
            urgency_rank=int(rank),
            findings=findings,
            not_assessed=not_assessed,
            ref=f"row {i}" if own and ref is None else ref,
        )
        for i, (patient, at, count, rank, findings, not_assessed, ref) in enumerate(
            zip(
                table["patient"].tolist(),
                times.tolist(),
                platelets.tolist(),
                table["urgency_rank"].tolist(),
                table["findings"].tolist(),
                table["not_assessed"].tolist(),
                table["ref"].tolist(),
                strict=True,
            )
        )
    ]


def delta_checks(current: pd.DataFrame, history: pd.DataFrame, window: pd.Timedelta, rs: Ruleset) -> pd.DataFrame:
    """compare_with_previous on tables: one row per row of `current` (same index), the previous CBC it was
    compared with and the deltas.

    Both tables have the DELTA_INPUT columns; `collected_at` is a timezone-aware timestamp (or NaT).
    `previous_ref` is the history row's `ref`, or "row i" for an earlier row of `current`.
    """
    deltas = compare_with_previous(_cbcs(current, own=True), _cbcs(history, own=False), window, rs)
    previous = [None if delta is None else delta.previous for delta in deltas]
    return pd.DataFrame(
        {
            "previous_ref": pd.Series([None if p is None else p.ref for p in previous], dtype=object),
            "previous_collected_at": pd.to_datetime(
                pd.Series([None if p is None else p.collected_at for p in previous], dtype=object), utc=True
            ).astype("datetime64[ns, UTC]"),
            "previous_urgency_rank": np.array([-1 if p is None else p.urgency_rank for p in previous], dtype=np.int64),
            "previous_platelets": np.array([np.nan if p is None else p.platelets for p in previous], dtype=np.float64),
            "platelet_fall_percent": np.array(
                [np.nan if d is None else d.platelet_fall_percent for d in deltas], dtype=np.float64
            ),
            "platelet_drop": np.array([d is not None and d.platelet_drop for d in deltas], dtype=bool),
            "new_cytopenias": pd.Series([() if d is None else d.new_cytopenias for d in deltas], dtype=object),
            "urgency_change": pd.Series([None if d is None else d.urgency_change for d in deltas], dtype=object),
        }
    ).set_axis(current.index)


def delta_findings(delta: dict, platelets_now: float | None, rs: Ruleset) -> list[dict]:
    """The answer's findings from a delta block (platelet_drop, new_cytopenia): title, rule and sources
    from their rows of findings.csv, texts from here."""
    if not delta.get("assessed"):
        return []
    out = []
    previous = delta["previous"]
    if delta["platelet_drop"]:
        spec = rs.finding("platelet_drop")
        fall = delta["platelet_fall_percent"]
        out.append(
            {
                "code": spec.code,
                "title": rs.text(spec.title),
                "detail": (
                    f"Platelets fell from {text_number(previous['platelets'])} to {text_number(platelets_now)} "
                    f"{rs.unit_text('platelets')} ({text_number(fall, [rs.value('platelet_drop')])} %) since the CBC "
                    f"of {previous['collected_at']}, "
                    f"within {delta['window_days']} days. A fall this large deserves review whatever the "
                    "count (e.g. heparin exposure, consumption, sampling error)."
                ),
                "grade": None,
                "severity": None,
                "evidence": {
                    "platelets": platelets_now,
                    "previous_platelets": previous["platelets"],
                    "fall_percent": delta["platelet_fall_percent"],
                },
                "rule": spec.rule,
                "sources": rs.cite(spec.sources),
            }
        )
    if delta["new_cytopenias"]:
        spec = rs.finding("new_cytopenia")
        out.append(
            {
                "code": spec.code,
                "title": rs.text(spec.title),
                "detail": (
                    f"{', '.join(delta['new_cytopenias'])} is present now and was absent on the CBC of "
                    f"{previous['collected_at']} (within {delta['window_days']} days)."
                ),
                "grade": None,
                "severity": None,
                "evidence": {"new": list(delta["new_cytopenias"])},
                "rule": spec.rule,
                "sources": rs.cite(spec.sources),
            }
        )
    return out
