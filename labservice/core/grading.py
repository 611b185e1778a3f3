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
    A value with no range in use and no critical breach is not flagged (FLAG_NONE).
    """
    flags: dict[str, np.ndarray] = {}
    for analyte, rng in ranges.items():
        value = cols.values[analyte]
        flag = np.where(value < rng.low, FLAG_L, np.where(value > rng.high, FLAG_H, FLAG_N))
        flag = np.where(np.isnan(value) | np.isnan(rng.low) | np.isnan(rng.high), FLAG_NONE, flag)
        # One-sided ranges still flag on the side that is known.
        flag = np.where((flag == FLAG_NONE) & (value < rng.low), FLAG_L, flag)
        flag = np.where((flag == FLAG_NONE) & (value > rng.high), FLAG_H, flag)
        flags[analyte] = flag.astype(np.int8)
    criticals: dict[str, np.ndarray] = {}
    for key, analyte, threshold, is_low in critical_thresholds(ruleset):
        hit = compare(cols.values[analyte], threshold.operator, threshold.value)
        criticals[key] = hit
        flags[analyte] = np.where(hit, FLAG_LL if is_low else FLAG_HH, flags[analyte]).astype(np.int8)
    return flags, criticals


def _ctcae_rows(ruleset: Ruleset, version: str, analyte: str):
    key = ("ctcae", version, analyte)
    if key not in ruleset._cache:
        ruleset._cache[key] = sorted(
            (r for r in ruleset.ctcae if r.version == version and r.analyte == analyte),
            key=lambda r: r.grade,
        )
    return ruleset._cache[key]


def ctcae_grades(cols: CbcColumns, ranges: dict[str, RangeInUse], ruleset: Ruleset) -> dict[str, np.ndarray]:
    """CTCAE grade per graded analyte (0 = no grade; -1 = value not sent).

    A grade's lower boundary "LLN" is the lower limit of the range in use. The grade is the
    highest whose bound the value is below, so grades never improve as a count falls.
    """
    versions = [v for v in ruleset.ctcae_versions() if v == "5.0" or bool((cols.ctcae_version == v).any())]
    grades: dict[str, np.ndarray] = {}
    for analyte in GRADED_ANALYTES:
        value = cols.values[analyte]
        grade = np.zeros(cols.n, dtype=np.int8)
        for version in versions:
            rows_of_version = cols.ctcae_version == version if version != "5.0" else ~np.isin(
                cols.ctcae_version, [v for v in versions if v != "5.0"])
            for row in _ctcae_rows(ruleset, version, analyte):
                bound = ranges[analyte].low if row.bound is None else row.bound
                hit = compare(value, row.operator, bound) & rows_of_version
                grade = np.where(hit, np.maximum(grade, row.grade), grade).astype(np.int8)
        grade[np.isnan(value)] = -1
        grades[analyte] = grade
    return grades
