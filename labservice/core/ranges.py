"""The reference range in use for each analyte and row: the lab's, else the fallback table.

Fallback lookup is by sex and age band (clinical-rules §2). With the sex unknown the range is the
envelope of the female and male rows (lowest low, highest high); with the age unknown the adult
band is used. Both are recorded so the output can say so.

The fallback tables are compiled once into arrays indexed by (sex code, age segment, analyte),
so a lookup is one searchsorted plus one fancy index per analyte, for one row or a million.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labservice.core.ruleset import RangeRow, Ruleset
from labservice.core.table import ANALYTES, SEX_CODES, CbcColumns

DAYS_PER_YEAR = 365.25

# Where a range came from (per row).
ORIGIN_NONE, ORIGIN_LAB, ORIGIN_FALLBACK, ORIGIN_DUFFY, ORIGIN_LAB_PARTIAL = 0, 1, 2, 3, 4
ORIGIN_NAMES = {
    ORIGIN_NONE: "none",
    ORIGIN_LAB: "laboratory",
    ORIGIN_FALLBACK: "fallback",
    ORIGIN_DUFFY: "duffy_null",
    ORIGIN_LAB_PARTIAL: "laboratory_partial",
}


@dataclass
class RangeInUse:
    low: np.ndarray
    high: np.ndarray
    origin: np.ndarray  # int8 ORIGIN_*
    row_index: np.ndarray  # int16 index into `table` of the fallback row used (-1: none)
    envelope: np.ndarray  # bool: sex unknown, envelope of female and male rows
    table: tuple[RangeRow, ...]


@dataclass(frozen=True)
class CompiledRanges:
    """Fallback rows as flat arrays per analyte, indexed by sex code * segments + age segment;
    the last segment of each sex means "no band"."""

    edges: np.ndarray
    segments: int  # age segments + 1 (the "no band" segment)
    low: dict[str, np.ndarray]
    high: dict[str, np.ndarray]
    row: dict[str, np.ndarray]
    envelope: dict[str, np.ndarray]

    def index(self, sex: np.ndarray, age_days: np.ndarray) -> np.ndarray:
        seg = np.searchsorted(self.edges, age_days, side="right") - 1
        seg[(seg < 0) | (seg >= self.edges.size - 1)] = self.edges.size - 1  # NaN sorts last
        return sex.astype(np.intp) * self.segments + seg


def _covering(rows, analyte: str, sexes: tuple[str, ...], start: float, end: float) -> int:
    for i, r in rows:
        if r.analyte == analyte and r.sex in sexes and r.age_low_days <= start and r.age_high_days >= end:
            return i
    return -1


def compile_ranges(rows: tuple[RangeRow, ...], offset: int = 0) -> CompiledRanges:
    edges = np.unique(np.array([r.age_low_days for r in rows] + [r.age_high_days for r in rows] or [0.0]))
    segments = max(edges.size - 1, 0)
    shape = (3, segments + 1, len(ANALYTES))
    low, high = np.full(shape, np.nan), np.full(shape, np.nan)
    row = np.full(shape, -1, dtype=np.int16)
    envelope = np.zeros(shape, dtype=bool)
    numbered = list(enumerate(rows))
    for s in range(segments):
        start, end = edges[s], edges[s + 1]
        for a, analyte in enumerate(ANALYTES):
            f = _covering(numbered, analyte, ("any", "female"), start, end)
            m = _covering(numbered, analyte, ("any", "male"), start, end)
            for code, i in ((SEX_CODES["female"], f), (SEX_CODES["male"], m)):
                if i >= 0:
                    low[code, s, a], high[code, s, a], row[code, s, a] = rows[i].low, rows[i].high, i + offset
            u = SEX_CODES["unknown"]
            if f >= 0 and m >= 0:
                low[u, s, a] = min(rows[f].low, rows[m].low)
                high[u, s, a] = max(rows[f].high, rows[m].high)
                row[u, s, a] = f + offset
                envelope[u, s, a] = f != m
    return CompiledRanges(
        edges,
        segments + 1,
        {a: low[:, :, k].ravel().copy() for k, a in enumerate(ANALYTES)},
        {a: high[:, :, k].ravel().copy() for k, a in enumerate(ANALYTES)},
        {a: row[:, :, k].ravel().copy() for k, a in enumerate(ANALYTES)},
        {a: envelope[:, :, k].ravel().copy() for k, a in enumerate(ANALYTES)},
    )


def _compiled(ruleset: Ruleset) -> tuple[CompiledRanges, CompiledRanges]:
    key = ("compiled_ranges",)
    if key not in ruleset._cache:
        ruleset._cache[key] = (
            compile_ranges(ruleset.ranges),
            compile_ranges(ruleset.duffy_ranges, offset=len(ruleset.ranges)),
        )
    return ruleset._cache[key]


def lookup_age_days(cols: CbcColumns, ruleset: Ruleset) -> np.ndarray:
    """Age in days for range lookups; an unknown age reads as the start of adulthood."""
    adult = ruleset.value("adult_age_years") * DAYS_PER_YEAR
    return np.where(np.isnan(cols.age_years), adult, cols.age_years * DAYS_PER_YEAR)


def resolve_ranges(cols: CbcColumns, ruleset: Ruleset) -> dict[str, RangeInUse]:
    """The range in use for every analyte: Duffy-null rows when stated, else lab, else fallback."""
    main, duffy = _compiled(ruleset)
    all_rows = ruleset.ranges + ruleset.duffy_ranges
    age_days = lookup_age_days(cols, ruleset)
    where = main.index(cols.sex, age_days)  # one flat index serves every analyte
    duffy_stated = cols.duffy_null == 1.0
    duffy_where = duffy.index(cols.sex, age_days) if np.count_nonzero(duffy_stated) else None
    present = set(cols.present_analytes())
    nothing = RangeInUse(
        np.full(cols.n, np.nan),
        np.full(cols.n, np.nan),
        np.zeros(cols.n, np.int8),
        np.full(cols.n, -1, np.int16),
        np.zeros(cols.n, bool),
        all_rows,
    )
    out: dict[str, RangeInUse] = {}
    for analyte in ANALYTES:
        if analyte not in present:
            out[analyte] = nothing
            continue
        low, high = main.low[analyte][where], main.high[analyte][where]
        row, envelope = main.row[analyte][where], main.envelope[analyte][where]
        origin = (row >= 0).astype(np.int8) * ORIGIN_FALLBACK
        lab_low, lab_high = cols.ref_low[analyte], cols.ref_high[analyte]
        has_low, has_high = lab_low == lab_low, lab_high == lab_high  # not NaN
        if np.count_nonzero(has_low) or np.count_nonzero(has_high):
            origin[has_low | has_high] = ORIGIN_LAB_PARTIAL
            origin[has_low & has_high] = ORIGIN_LAB
            low = np.where(has_low, lab_low, low)
            high = np.where(has_high, lab_high, high)
        if duffy_where is not None:
            # A stated Duffy-null status overrides the laboratory's general range (§2, [S10]).
            d_row = duffy.row[analyte][duffy_where]
            use = duffy_stated & (d_row >= 0)
            if np.count_nonzero(use):
                low = np.where(use, duffy.low[analyte][duffy_where], low)
                high = np.where(use, duffy.high[analyte][duffy_where], high)
                row = np.where(use, d_row, row)
                origin[use] = ORIGIN_DUFFY
        out[analyte] = RangeInUse(low, high, origin, row, envelope & (origin == ORIGIN_FALLBACK), all_rows)
    return out
