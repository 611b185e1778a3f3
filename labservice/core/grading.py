"""Per-analyte flags (N/L/H/LL/HH), critical values and CTCAE grades (clinical-rules §2-§4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labservice.core.compare import compare
from labservice.core.ranges import RangeInUse, below_any_limit_threshold
from labservice.core.ruleset import Ruleset
from labservice.core.table import LAB_FLAG_CODES, CbcColumns
from labservice.core.vocabulary import CTCAE_DEFAULT_VERSION

FLAG_NONE, FLAG_N, FLAG_L, FLAG_H, FLAG_LL, FLAG_HH = 0, 1, 2, 3, 4, 5
FLAG_NAMES = (None, "N", "L", "H", "LL", "HH")
GRADED_ANALYTES = ("platelets", "neutrophils", "wbc", "lymphocytes", "hemoglobin")
#: The key prefix of a critical value the laboratory flagged (§3 v2): "laboratory_flag_<analyte>".
LAB_CRITICAL = "laboratory_flag_"


def critical_thresholds(ruleset: Ruleset):
    """The `critical_*` rows of thresholds.csv: (key, analyte, threshold, is_low)."""
    if "critical_thresholds" not in ruleset._cache:
        ruleset._cache["critical_thresholds"] = [
            (t.key, t.analyte, t, t.operator in ("<", "<="))
            for t in ruleset.thresholds.values()
            if t.key.startswith("critical_")
        ]
    return ruleset._cache["critical_thresholds"]


def flags_and_criticals(cols: CbcColumns, ranges: dict[str, RangeInUse], ruleset: Ruleset):
    """Flag codes per analyte, and a mask per critical rule.

    A value exactly on a bound is inside the range. A critical value overrides the range flag.
    A value with no range in use and no critical breach is not flagged (FLAG_NONE); a one-sided
    range still flags the side it knows. *v2*: with no lower limit in use, a value below the
    analyte's grade-2 bound is below any lower limit and flagged L (§2); a critical flag sent by the
    laboratory (LL, HH, AA) is honoured and is a critical value of its own (`laboratory_flag_<analyte>`,
    §3), AA taking the direction of the value against its range.
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
        if rng.below_any_limit is not None:
            flag[rng.below_any_limit] = FLAG_L
        flags[analyte] = flag
    criticals: dict[str, np.ndarray] = {}
    for key, analyte, threshold, is_low in critical_thresholds(ruleset):
        if analyte not in present:
            criticals[key] = not_flagged.astype(bool)
            continue
        hit = compare(cols.values[analyte], threshold.operator, threshold.value)
        criticals[key] = hit
        flags[analyte][hit] = FLAG_LL if is_low else FLAG_HH
    for analyte, sent in cols.lab_flags.items():
        if analyte not in present:
            continue
        low_side = laboratory_low_side(cols, ranges[analyte], ruleset, analyte, sent)
        honoured = (sent > 0) & (cols.values[analyte] == cols.values[analyte])
        flags[analyte][honoured & low_side] = FLAG_LL
        flags[analyte][honoured & ~low_side] = FLAG_HH
        criticals[LAB_CRITICAL + analyte] = honoured
    return flags, criticals


def laboratory_low_side(
    cols: CbcColumns, rng: RangeInUse, ruleset: Ruleset, analyte: str, sent: np.ndarray
) -> np.ndarray:
    """Where a laboratory critical flag reads as critically low: LL, or AA with the value below the
    middle of its range in use (below its low / not above its high when one bound is known; below the
    analyte's typical value of analytes.csv when no range is in use)."""
    value = cols.values[analyte]
    low, high = rng.low, rng.high
    middle = np.where(
        (low == low) & (high == high),
        (low + high) / 2.0,
        np.where(low == low, low, np.where(high == high, high, ruleset.analytes[analyte].typical)),
    )
    only_high = (low != low) & (high == high)
    aa_low = np.where(only_high, value <= middle, value < middle)
    return (sent == LAB_FLAG_CODES["LL"]) | ((sent == LAB_FLAG_CODES["AA"]) & aa_low)


@dataclass(frozen=True)
class _CtcaeTable:
    """One version and analyte: fixed '<' bounds ascending, their grades, and the LLN grade (0 if none)."""

    bounds: np.ndarray
    grades: np.ndarray
    lln_grade: int
    #: grade by searchsorted position: the running maximum of grades from that bound up, then 0
    #: (built once with the table, not on every call: per-call overhead of one CBC)
    by_position: np.ndarray


def _ctcae_table(ruleset: Ruleset, version: str, analyte: str) -> _CtcaeTable:
    key = ("ctcae", version, analyte)
    if key not in ruleset._cache:
        rows = [r for r in ruleset.ctcae if r.version == version and r.analyte == analyte]
        if any(r.operator != "<" for r in rows):
            raise ValueError(f"ctcae.csv {version} {analyte}: only '<' bounds are supported")
        fixed = sorted((r for r in rows if r.bound is not None), key=lambda r: float(r.bound or 0.0))
        lln = [r.grade for r in rows if r.bound is None]
        grades = np.array([r.grade for r in fixed], dtype=np.int8)
        running_max = np.maximum.accumulate(grades[::-1])[::-1]  # max grade among bounds >= position
        ruleset._cache[key] = _CtcaeTable(
            np.array([r.bound for r in fixed]),
            grades,
            lln[0] if lln else 0,
            np.append(running_max, 0).astype(np.int8),
        )
    return ruleset._cache[key]


def _grade_with(table: _CtcaeTable, value: np.ndarray, lln: np.ndarray) -> np.ndarray:
    """Highest grade whose bound the value is below: with ascending bounds, a value below bound k
    is below every higher bound too, so the grade is the running maximum of grades from k up."""
    position = table.bounds.searchsorted(value, side="right")  # first bound strictly above value
    grade = table.by_position[position]
    if table.lln_grade:
        grade = np.maximum(grade, (value < lln) * np.int8(table.lln_grade)).astype(np.int8)
    return grade


def ctcae_grades(cols: CbcColumns, ranges: dict[str, RangeInUse], ruleset: Ruleset) -> dict[str, np.ndarray]:
    """CTCAE grade per graded analyte (0 = no grade; -1 = value not sent).

    A grade's lower boundary "LLN" is the lower limit of the range in use. The grade is the
    highest whose bound the value is below, so grades never improve as a count falls.
    """
    # The rows of each other version that some row asks for (compared once, not once per analyte).
    other_versions = {}
    for version in ruleset.ctcae_versions():
        if version != CTCAE_DEFAULT_VERSION:
            rows = cols.ctcae_version == version
            if np.count_nonzero(rows):
                other_versions[version] = rows
    grades: dict[str, np.ndarray] = {}
    present = set(cols.present_analytes())
    for analyte in GRADED_ANALYTES:
        value = cols.values[analyte]
        if analyte not in present:
            grades[analyte] = np.full(cols.n, -1, dtype=np.int8)
            continue
        grade = _grade_with(_ctcae_table(ruleset, CTCAE_DEFAULT_VERSION, analyte), value, ranges[analyte].low)
        for version, rows in other_versions.items():
            grade[rows] = _grade_with(_ctcae_table(ruleset, version, analyte), value, ranges[analyte].low)[rows]
        rng = ranges[analyte]
        if rng.below_any_limit is not None or below_any_limit_threshold(ruleset, analyte) is not None:
            # §2 v2: with no lower limit in use, only a value below any lower limit is graded.
            no_lower = rng.low != rng.low
            if rng.below_any_limit is not None:
                no_lower &= ~rng.below_any_limit
            grade[no_lower] = 0
        grade[value != value] = -1
        grades[analyte] = grade
    return grades
