"""The reference range in use for each analyte and row: the lab's, else the fallback table.

Fallback lookup is by sex and age band (clinical-rules §2). With the sex unknown the range is the
envelope of the female and male rows (lowest low, highest high); with the age unknown the adult
band is used. Both are recorded so the output can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labservice.core.ruleset import RangeRow, Ruleset
from labservice.core.table import ANALYTES, SEX_CODES, CbcColumns

DAYS_PER_YEAR = 365.25

# Where a range came from (per row).
ORIGIN_NONE, ORIGIN_LAB, ORIGIN_FALLBACK, ORIGIN_DUFFY, ORIGIN_LAB_PARTIAL = 0, 1, 2, 3, 4
ORIGIN_NAMES = {ORIGIN_NONE: "none", ORIGIN_LAB: "laboratory", ORIGIN_FALLBACK: "fallback",
                ORIGIN_DUFFY: "duffy_null", ORIGIN_LAB_PARTIAL: "laboratory_partial"}


@dataclass
class RangeInUse:
    low: np.ndarray
    high: np.ndarray
    origin: np.ndarray  # int8 ORIGIN_*
    row_index: np.ndarray  # int16 index into the table's rows (-1: none), for the source text
    envelope: np.ndarray  # bool: sex unknown, envelope of female and male rows
    table: tuple[RangeRow, ...]


@dataclass(frozen=True)
class _BandIndex:
    """One analyte's fallback rows for one sex, sorted by age, as arrays for searchsorted."""

    age_low: np.ndarray
    age_high: np.ndarray
    low: np.ndarray
    high: np.ndarray
    row: np.ndarray

    def lookup(self, age_days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.age_low.size == 0:
            nan = np.full(age_days.shape, np.nan)
            return nan, nan.copy(), np.full(age_days.shape, -1, dtype=np.int16)
        i = np.searchsorted(self.age_low, age_days, side="right") - 1
        clipped = np.clip(i, 0, None)
        hit = (i >= 0) & (age_days < self.age_high[clipped])
        low = np.where(hit, self.low[clipped], np.nan)
        high = np.where(hit, self.high[clipped], np.nan)
        row = np.where(hit, self.row[clipped], -1).astype(np.int16)
        return low, high, row


def _band_index(rows: tuple[RangeRow, ...], analyte: str, sex: str) -> _BandIndex:
    chosen = sorted(
        (i, r) for i, r in enumerate(rows) if r.analyte == analyte and r.sex in ("any", sex)
    )
    chosen.sort(key=lambda item: item[1].age_low_days)
    return _BandIndex(
        age_low=np.array([r.age_low_days for _, r in chosen]),
        age_high=np.array([r.age_high_days for _, r in chosen]),
        low=np.array([r.low for _, r in chosen]),
        high=np.array([r.high for _, r in chosen]),
        row=np.array([i for i, _ in chosen], dtype=np.int16),
    )


def _indexes(ruleset: Ruleset, rows: tuple[RangeRow, ...], key: str) -> dict[tuple[str, str], _BandIndex]:
    cache_key = ("range_index", key)
    if cache_key not in ruleset._cache:
        ruleset._cache[cache_key] = {
            (a, sex): _band_index(rows, a, sex) for a in ANALYTES for sex in ("female", "male")
        }
    return ruleset._cache[cache_key]


def lookup_age_days(cols: CbcColumns, ruleset: Ruleset) -> np.ndarray:
    """Age in days for range lookups; an unknown age reads as the start of adulthood."""
    adult = ruleset.value("adult_age_years") * DAYS_PER_YEAR
    return np.where(np.isnan(cols.age_years), adult, cols.age_years * DAYS_PER_YEAR)


def _fallback(index: dict, analyte: str, cols: CbcColumns, age_days: np.ndarray):
    f_low, f_high, f_row = index[(analyte, "female")].lookup(age_days)
    m_low, m_high, m_row = index[(analyte, "male")].lookup(age_days)
    female = cols.sex == SEX_CODES["female"]
    male = cols.sex == SEX_CODES["male"]
    unknown = ~(female | male)
    low = np.where(female, f_low, np.where(male, m_low, np.fmin(f_low, m_low)))
    high = np.where(female, f_high, np.where(male, m_high, np.fmax(f_high, m_high)))
    row = np.where(female | (unknown & (f_row >= 0)), f_row, m_row).astype(np.int16)
    envelope = unknown & (f_row != m_row) & (f_row >= 0) & (m_row >= 0)
    return low, high, row, envelope


def resolve_ranges(cols: CbcColumns, ruleset: Ruleset) -> dict[str, RangeInUse]:
    """The range in use for every analyte: Duffy-null rows when stated, else lab, else fallback."""
    age_days = lookup_age_days(cols, ruleset)
    index = _indexes(ruleset, ruleset.ranges, "ranges")
    duffy_index = _indexes(ruleset, ruleset.duffy_ranges, "duffy")
    duffy_stated = cols.duffy_null == 1.0
    any_duffy = bool(duffy_stated.any())
    all_rows = ruleset.ranges + ruleset.duffy_ranges
    out: dict[str, RangeInUse] = {}
    for analyte in ANALYTES:
        lab_low, lab_high = cols.ref_low[analyte], cols.ref_high[analyte]
        fb_low, fb_high, fb_row, envelope = _fallback(index, analyte, cols, age_days)
        has_lab_low, has_lab_high = ~np.isnan(lab_low), ~np.isnan(lab_high)
        low = np.where(has_lab_low, lab_low, fb_low)
        high = np.where(has_lab_high, lab_high, fb_high)
        origin = np.where(
            has_lab_low & has_lab_high, ORIGIN_LAB,
            np.where(has_lab_low | has_lab_high, ORIGIN_LAB_PARTIAL,
                     np.where(fb_row >= 0, ORIGIN_FALLBACK, ORIGIN_NONE)),
        ).astype(np.int8)
        row = fb_row
        if any_duffy and duffy_index[(analyte, "female")].age_low.size:
            d_low, d_high, d_row, _ = _fallback(duffy_index, analyte, cols, age_days)
            use = duffy_stated & (d_row >= 0)
            if use.any():
                low = np.where(use, d_low, low)
                high = np.where(use, d_high, high)
                origin = np.where(use, ORIGIN_DUFFY, origin).astype(np.int8)
                # Duffy rows are numbered after the main rows so one index can name either.
                row = np.where(use, d_row + len(ruleset.ranges), row).astype(np.int16)
        out[analyte] = RangeInUse(low, high, origin, row, envelope & (origin == ORIGIN_FALLBACK),
                                  all_rows)
    return out
