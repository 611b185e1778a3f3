"""Delta checks: each CBC against the same patient's previous CBC within a window.

- `platelet_drop`: platelets fell by `platelet_drop` per cent or more (thresholds.csv; S23, S24).
- `new_cytopenia`: a cytopenia present now that the previous CBC had decided absent (not merely
  "not assessed") (S24, with the definitions of clinical-rules §4).
- the urgency compared with the previous CBC's: escalated, unchanged or de-escalated.

A CBC without a collection time, or with no previous CBC in the window, has no delta ("not
assessed", never "no change"). The previous CBC may be stored history or an earlier CBC of the
same call.

One implementation, vectorised over numpy arrays: `previous_of` finds each CBC's previous one with one
lexsort over the pool (the patient's stored history and the CBCs being stored), and `delta_rules` applies the
rules once over every compared pair. `compare_with_previous` runs both on plain CBCs (DeltaCbc): storing one CBC
against its few previous ones costs tens of microseconds, and a batch chunk of thousands of CBCs takes the same
path (no pandas, no per-patient Python loop). `delta_block` and `delta_findings` turn a result into
the answer's delta block and findings; `delta_checks` gives the same results as a table.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from labservice.core.numbers import round_sig, text_number
from labservice.core.ruleset import Ruleset
from labservice.core.vocabulary import URGENCY_NAMES

DELTA_CODES = ("platelet_drop", "new_cytopenia")
CYTOPENIAS = ("thrombocytopenia", "neutropenia", "anemia", "leukopenia", "lymphopenia")
URGENCY_CHANGES = ("de-escalated", "unchanged", "escalated")
_CYTOPENIA_BITS = {name: 1 << position for position, name in enumerate(CYTOPENIAS)}
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
    # One pass in Python and one array: a row holds a handful of codes, and a one-row call (a single CBC) pays no
    # per-cytopenia numpy overhead.
    return np.fromiter(
        (sum(bit for name, bit in _CYTOPENIA_BITS.items() if name in row) for row in codes),
        dtype=np.int64,
        count=len(codes),
    )


#: Microseconds since the epoch of a CBC without a collection time (never compared, never a previous one).
NO_TIME = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def time_codes(times: Sequence[datetime | None]) -> np.ndarray:
    """Timezone-aware times as int64 microseconds since the epoch (exact); NO_TIME for None."""
    return np.fromiter(
        (NO_TIME if at is None else (at - _EPOCH) // _MICROSECOND for at in times), dtype=np.int64, count=len(times)
    )


def previous_of(patients: np.ndarray, times: np.ndarray, window: timedelta) -> np.ndarray:
    """For each CBC of a pool (`patients`: integer codes, `times`: time_codes), the position of the same
    patient's CBC collected last before it (strictly earlier, at most `window` earlier), or -1. Of CBCs collected
    at the same time, the last one listed. Vectorised: one lexsort, no per-patient Python loop."""
    n = len(patients)
    out = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return out
    order = np.lexsort((np.arange(n), times, patients))  # by patient, then time, then position
    pat, at = patients[order], times[order]
    starts = np.ones(n, dtype=bool)  # where a (patient, time) group begins in the sorted order
    starts[1:] = (pat[1:] != pat[:-1]) | (at[1:] != at[:-1])
    group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    before = group_start - 1  # the last CBC of the group collected just earlier (if the same patient's)
    safe = np.maximum(before, 0)
    found = (
        (before >= 0)
        & (pat[safe] == pat)
        & (at != NO_TIME)
        & (at[safe] != NO_TIME)
        & (at - at[safe] <= window // _MICROSECOND)
    )
    out[order[found]] = order[safe[found]]
    return out


@dataclass(frozen=True)
class DeltaArrays:
    """The delta rules applied to CBCs (`compared`) and their previous ones, as arrays (one entry per compared
    CBC): what compare_with_previous returns as Delta objects, and what a batch chunk uses as is."""

    platelet_fall_percent: np.ndarray  # float64, shown to 0.1 (unless that crosses the threshold; §1 v2); NaN: missing
    platelet_drop: np.ndarray  # bool
    new_cytopenia_bits: np.ndarray  # int64, bit i: CYTOPENIAS[i] is new
    urgency_change: np.ndarray  # int64 index into URGENCY_CHANGES


def delta_rules(
    platelets_now: np.ndarray,
    platelets_before: np.ndarray,
    rank_now: np.ndarray,
    rank_before: np.ndarray,
    findings_now: np.ndarray,
    findings_before: np.ndarray,
    not_assessed_before: np.ndarray,
    rs: Ruleset,
) -> DeltaArrays:
    """The rules over arrays of compared pairs (findings as cytopenia_bits): platelet fall and drop (thresholds.csv
    platelet_drop; S23, S24), new cytopenias (present now, decided absent before; S24), urgency change."""
    with np.errstate(divide="ignore", invalid="ignore"):
        # Rounded to 6 significant figures before it is compared (clinical-rules §1 v2: exact on bounds).
        fall = round_sig(
            np.where(platelets_before > 0, (platelets_before - platelets_now) / platelets_before * 100.0, np.nan)
        )
    threshold = rs.value("platelet_drop")
    drop = fall >= threshold
    # Shown to 0.1 %, unless that would put it across the threshold it was compared with (§1 v2).
    shown = np.round(fall, 1)
    shown = np.where((shown >= threshold) == drop, shown, fall)
    return DeltaArrays(
        platelet_fall_percent=shown,
        platelet_drop=drop,
        new_cytopenia_bits=findings_now & ~findings_before & ~not_assessed_before,
        urgency_change=np.sign(rank_now - rank_before) + 1,
    )


def previous_positions(current: Sequence[DeltaCbc], history: Sequence[DeltaCbc], window: timedelta) -> list[int | None]:
    """For each current CBC, the position in `[*history, *current]` of the same patient's CBC collected last
    before it (strictly earlier, at most `window` earlier), or None. Of CBCs collected at the same time, the
    last one listed."""
    pool = [*history, *current]
    codes: dict[str, int] = {}
    patients = np.fromiter((codes.setdefault(cbc.patient, len(codes)) for cbc in pool), dtype=np.int64, count=len(pool))
    found = previous_of(patients, time_codes([cbc.collected_at for cbc in pool]), window)
    return [None if position < 0 else int(position) for position in found[len(history) :].tolist()]


def compare_with_previous(
    current: Sequence[DeltaCbc], history: Sequence[DeltaCbc], window: timedelta, rs: Ruleset
) -> list[Delta | None]:
    """Each current CBC compared with its previous CBC (stored `history` or an earlier one of `current`):
    None when there is none within the window. The rules run once, vectorised over the compared CBCs
    (previous_of and delta_rules: the same code for one CBC and for a batch chunk of thousands)."""
    pool = [*history, *current]
    found = previous_positions(current, history, window)
    rows = [i for i, position in enumerate(found) if position is not None]
    if not rows:
        return [None] * len(current)
    now = [current[i] for i in rows]
    before = [pool[position] for position in found if position is not None]
    rules = delta_rules(
        np.array([cbc.platelets for cbc in now], dtype=np.float64),
        np.array([cbc.platelets for cbc in before], dtype=np.float64),
        np.array([cbc.urgency_rank for cbc in now], dtype=np.int64),
        np.array([cbc.urgency_rank for cbc in before], dtype=np.int64),
        cytopenia_bits([cbc.findings for cbc in now]),
        cytopenia_bits([cbc.findings for cbc in before]),
        cytopenia_bits([cbc.not_assessed for cbc in before]),
        rs,
    )
    fall, drop = rules.platelet_fall_percent.tolist(), rules.platelet_drop.tolist()
    new, change = rules.new_cytopenia_bits.tolist(), rules.urgency_change.tolist()
    out: list[Delta | None] = [None] * len(current)
    for k, (i, previous) in enumerate(zip(rows, before, strict=True)):
        out[i] = Delta(
            previous=previous,
            platelet_fall_percent=fall[k],
            platelet_drop=drop[k],
            new_cytopenias=tuple(name for bit, name in enumerate(CYTOPENIAS) if new[k] >> bit & 1),
            urgency_change=URGENCY_CHANGES[change[k]],
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
