"""Per-analyte flags (N/L/H/LL/HH), critical values and CTCAE grades (clinical-rules §2-§4)."""

from __future__ import annotations

import numpy as np

from labservice.core.compare import compare
from labservice.core.ranges import RangeInUse
from labservice.core.ruleset import Ruleset
from labservice.core.table import CbcColumns

FLAG_NONE, FLAG_N, FLAG_L, FLAG_H, FLAG_LL, FLAG_HH = 0, 1, 2, 3, 4, 5
FLAG_NAMES = (None, "N", "L", "H", "LL", "HH")
GRADED_ANALYTES = ("platelets", "neutrophils", "wbc", "lymphocytes", "hemoglobin")


def critical_thresholds(ruleset: Ruleset):
    """The `critical_*` rows of thresholds.csv: (key, analyte, threshold, is_low)."""
    return [
        (t.key, t.analyte, t, t.operator in ("<", "<="))
        for t in ruleset.thresholds.values()
        if t.key.startswith("critical_")
    ]


def flags_and_criticals(cols: CbcColumns, ranges: dict[str, RangeInUse], ruleset: Ruleset):
    """Flag codes per analyte, and a mask per critical rule.

    A value exactly on a bound is inside the range. A critical value overrides the range flag.
    A value with no range in use and no critical breach is not flagged (FLAG_NONE); a one-sided
    range still flags the side it knows.
    """
    flags: dict[str, np.ndarray] = {}
    present = set(cols.present_analytes())
    not_flagged = np.zeros(cols.n, dtype=np.int8)
    for analyte, rng in ranges.items():
        if analyte not in present:
            flags[analyte] = not_flagged
            continue
        value = cols.values[analyte]
        flag = np.full(cols.n, FLAG_N, dtype=np.int8)
        flag[value < rng.low] = FLAG_L
        flag[value > rng.high] = FLAG_H
        flag[(value != value) | ((rng.low != rng.low) & (rng.high != rng.high))] = FLAG_NONE
        flags[analyte] = flag
    criticals: dict[str, np.ndarray] = {}
    for key, analyte, threshold, is_low in critical_thresholds(ruleset):
        if analyte not in present:
            criticals[key] = not_flagged.astype(bool)
            continue
        hit = compare(cols.values[analyte], threshold.operator, threshold.value)
        criticals[key] = hit
        flags[analyte][hit] = FLAG_LL if is_low else FLAG_HH
    return flags, criticals


def _ctcae_table(ruleset: Ruleset, version: str, analyte: str):
    """(bounds with NaN for LLN, grades, LLN column or -1) for one version and analyte."""
    key = ("ctcae", version, analyte)
    if key not in ruleset._cache:
        rows = sorted(
            (r for r in ruleset.ctcae if r.version == version and r.analyte == analyte), key=lambda r: r.grade
        )
        if any(r.operator != "<" for r in rows):
            raise ValueError(f"ctcae.csv {version} {analyte}: only '<' bounds are supported")
        bounds = np.array([np.nan if r.bound is None else r.bound for r in rows])
        lln = [i for i, r in enumerate(rows) if r.bound is None]
        ruleset._cache[key] = (bounds, np.array([r.grade for r in rows], dtype=np.int8), lln[0] if lln else -1)
    return ruleset._cache[key]


def ctcae_grades(cols: CbcColumns, ranges: dict[str, RangeInUse], ruleset: Ruleset) -> dict[str, np.ndarray]:
    """CTCAE grade per graded analyte (0 = no grade; -1 = value not sent).

    A grade's lower boundary "LLN" is the lower limit of the range in use. The grade is the
    highest whose bound the value is below, so grades never improve as a count falls.
    """
    versions = [v for v in ruleset.ctcae_versions() if v == "5.0" or np.count_nonzero(cols.ctcae_version == v)]
    grades: dict[str, np.ndarray] = {}
    present = set(cols.present_analytes())
    for analyte in GRADED_ANALYTES:
        value = cols.values[analyte]
        if analyte not in present:
            grades[analyte] = np.full(cols.n, -1, dtype=np.int8)
            continue
        grade = None
        for version in versions:
            bounds, levels, lln = _ctcae_table(ruleset, version, analyte)
            matrix = np.broadcast_to(bounds, (cols.n, bounds.size))
            if lln >= 0:
                matrix = matrix.copy()
                matrix[:, lln] = ranges[analyte].low
            graded = ((value[:, None] < matrix) * levels).max(axis=1).astype(np.int8)
            if grade is None:
                grade = graded
            else:
                rows = cols.ctcae_version == version
                grade[rows] = graded[rows]
        grade[value != value] = -1
        grades[analyte] = grade
    return grades
