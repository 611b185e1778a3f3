"""The reference range in use for each analyte and row: the lab's, else the fallback table.

Fallback lookup is by sex and age band (clinical-rules §2). With the sex unknown the range is the
envelope of the female and male rows (lowest low, highest high); with the age unknown the adult
band is used. Both are recorded so the output can say so.

*v2*: a range sent by the laboratory is used only when it is plausible (low below high, both bounds
inside the analyte's physical plausibility limits, and overlapping the fallback range for the age
and sex where there is one); otherwise it is set aside, the fallback applies and the answer says
why. Duffy-null rows replace the fallback rows only: a plausible laboratory range still comes first.

The fallback tables are compiled once into arrays indexed by (sex code, age segment, analyte),
so a lookup is one searchsorted plus one fancy index per analyte, for one row or a million.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labservice.core.compare import compare
from labservice.core.ruleset import RangeRow, Ruleset
from labservice.core.table import ANALYTES, SEX_CODES, CbcColumns
from labservice.core.units import plausible_mask

DAYS_PER_YEAR = 365.25

# Where a range came from (per row).
ORIGIN_NONE, ORIGIN_LAB, ORIGIN_FALLBACK, ORIGIN_DUFFY, ORIGIN_LAB_PARTIAL = 0, 1, 2, 3, 4
#: Why a laboratory range was set aside (clinical-rules §2 v2); 0 = not set aside (or none sent).
SET_ASIDE_NONE, SET_ASIDE_ORDER, SET_ASIDE_IMPLAUSIBLE, SET_ASIDE_NO_OVERLAP = 0, 1, 2, 3
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
    set_aside: np.ndarray | None = None  # int8 SET_ASIDE_*: why a laboratory range was not used (None: none)
    #: bool: no lower limit applies and the value is below the analyte's `below_any_limit_*` bound
    #: (§2 v2 "below any lower limit"); None when the analyte has no such bound or no row needs it
    below_any_limit: np.ndarray | None = None


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
    #: ORIGIN_FALLBACK where a row applies, else 0 (built once, not per call: per-call overhead of one CBC)
    origin: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for analyte, rows in self.row.items():
            self.origin[analyte] = (rows >= 0).astype(np.int8) * np.int8(ORIGIN_FALLBACK)

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
    """The range in use for every analyte: the laboratory's when plausible (§2 v2), else the Duffy-null
    rows when stated, else the fallback table; and where no lower limit applies, whether the value is
    below any lower limit."""
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
        origin = main.origin[analyte][where]  # a copy (fancy indexing): changed below for Duffy or the lab
        changed = False  # the envelope (sex unknown) stands only where the fallback row stays in use
        if duffy_where is not None:
            # A stated Duffy-null status replaces the fallback rows (§2, [S10]); *v2* not the lab's range.
            d_row = duffy.row[analyte][duffy_where]
            use = duffy_stated & (d_row >= 0)
            if np.count_nonzero(use):
                low = np.where(use, duffy.low[analyte][duffy_where], low)
                high = np.where(use, duffy.high[analyte][duffy_where], high)
                row = np.where(use, d_row, row)
                origin[use] = ORIGIN_DUFFY
                changed = True
        lab_low, lab_high = cols.ref_low[analyte], cols.ref_high[analyte]
        has_low, has_high = lab_low == lab_low, lab_high == lab_high  # not NaN
        set_aside = None
        if np.count_nonzero(has_low) or np.count_nonzero(has_high):
            why = lab_range_problems(ruleset, analyte, lab_low, lab_high, low, high)
            has_low, has_high = has_low & (why == SET_ASIDE_NONE), has_high & (why == SET_ASIDE_NONE)
            if np.count_nonzero(why):
                set_aside = why
            origin[has_low | has_high] = ORIGIN_LAB_PARTIAL
            origin[has_low & has_high] = ORIGIN_LAB
            changed = True
            low = np.where(has_low, lab_low, low)
            high = np.where(has_high, lab_high, high)
        out[analyte] = RangeInUse(
            low,
            high,
            origin,
            row,
            envelope & (origin == ORIGIN_FALLBACK) if changed else envelope,
            all_rows,
            set_aside,
            _below_any_limit(cols, ruleset, analyte, low),
        )
    return out


BELOW_ANY_LIMIT = "below_any_limit_"


def below_any_limit_threshold(ruleset: Ruleset, analyte: str):
    """The `below_any_limit_<analyte>` row of thresholds.csv (the CTCAE grade-2 bound, §2 v2), or None."""
    return ruleset.thresholds.get(BELOW_ANY_LIMIT + analyte)


def _below_any_limit(cols: CbcColumns, ruleset: Ruleset, analyte: str, low: np.ndarray) -> np.ndarray | None:
    """Rows with no lower limit in use whose value is below the analyte's grade-2 bound (§2 v2), where
    the bound applies at the patient's age (`below_any_limit_<analyte>_from_age_years`: haemoglobin
    from 1 year only; an unknown age reads as adult, as for the fallback ranges)."""
    threshold = below_any_limit_threshold(ruleset, analyte)
    if threshold is None:
        return None
    no_lower = low != low
    if not np.count_nonzero(no_lower):
        return None
    hit = no_lower & compare(cols.values[analyte], threshold.operator, threshold.value)
    age_rule = ruleset.thresholds.get(f"{BELOW_ANY_LIMIT}{analyte}_from_age_years")
    if age_rule is not None:
        hit &= np.isnan(cols.age_years) | compare(cols.age_years, age_rule.operator, age_rule.value)
    return hit


def lab_range_problems(
    ruleset: Ruleset,
    analyte: str,
    lab_low: np.ndarray,
    lab_high: np.ndarray,
    fallback_low: np.ndarray,
    fallback_high: np.ndarray,
) -> np.ndarray:
    """Why each laboratory range is implausible (SET_ASIDE_*), 0 where it is usable or not sent (§2 v2).

    Low must be below high; each bound sent must lie inside the analyte's physical plausibility limits
    (§1, analytes.csv); and the range must overlap the fallback range for the age and sex where one
    exists. Ranges are closed (a value on a bound is inside), so ranges sharing a bound overlap.
    """
    has_low, has_high = lab_low == lab_low, lab_high == lab_high
    why = np.zeros(lab_low.shape, dtype=np.int8)
    has_fallback_low, has_fallback_high = fallback_low == fallback_low, fallback_high == fallback_high
    misses = (has_low & has_fallback_high & (lab_low > fallback_high)) | (
        has_high & has_fallback_low & (lab_high < fallback_low)
    )
    why[misses] = SET_ASIDE_NO_OVERLAP
    inside = plausible_mask(ruleset, analyte, lab_low) & plausible_mask(ruleset, analyte, lab_high)
    why[(has_low | has_high) & ~inside] = SET_ASIDE_IMPLAUSIBLE
    why[has_low & has_high & ~(lab_low < lab_high)] = SET_ASIDE_ORDER
    return why
