"""The WHO haemoglobin cut-off that applies to each row (clinical-rules §4, [S9]).

Returns a low and a high cut-off per row. They are equal when sex, age and pregnancy pin the
cut-off down; with the sex unknown they span the female and male cut-offs, and a haemoglobin
between the two is "not assessed" rather than guessed. No matching row (under 6 months) leaves
both NaN. A pregnancy not stated is read as not pregnant; an unknown age as adult.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labservice.core.compare import NO, NOT_ASSESSED, YES
from labservice.core.ranges import DAYS_PER_YEAR
from labservice.core.ruleset import Ruleset
from labservice.core.table import SEX_CODES, CbcColumns


@dataclass
class AnemiaCutoffs:
    low: np.ndarray
    high: np.ndarray
    row_index: np.ndarray  # int16 index into ruleset.anemia_cutoffs of the row used (-1 none)
    state: np.ndarray  # int8 YES / NO / NOT_ASSESSED


PREGNANCY_CODES = {"no": 0, "trimester_1": 1, "trimester_2": 2, "trimester_3": 3, "trimester_unknown": 4}


@dataclass(frozen=True)
class _CompiledCutoffs:
    sex: np.ndarray  # -1 any, else SEX_CODES
    age_low: np.ndarray
    age_high: np.ndarray
    pregnancy: np.ndarray
    cutoff: np.ndarray


def _compiled(ruleset: Ruleset) -> _CompiledCutoffs:
    key = ("anemia_cutoffs",)
    if key not in ruleset._cache:
        rows = ruleset.anemia_cutoffs
        ruleset._cache[key] = _CompiledCutoffs(
            sex=np.array([-1 if r.sex == "any" else SEX_CODES[r.sex] for r in rows]),
            age_low=np.array([r.age_low_days for r in rows]),
            age_high=np.array([r.age_high_days for r in rows]),
            pregnancy=np.array([PREGNANCY_CODES[r.pregnancy] for r in rows]),
            cutoff=np.array([r.cutoff for r in rows]),
        )
    return ruleset._cache[key]


def anemia_cutoffs(cols: CbcColumns, ruleset: Ruleset) -> AnemiaCutoffs:
    """Cut-off rows matched by broadcasting rows x cut-off table (a handful of table rows)."""
    table = _compiled(ruleset)
    adult_days = ruleset.value("adult_age_years") * DAYS_PER_YEAR
    age_days = cols.age_years * DAYS_PER_YEAR
    age_days[np.isnan(age_days)] = adult_days
    pregnant = cols.pregnant == 1.0
    pregnancy = np.zeros(cols.n, dtype=np.int8)
    pregnancy[pregnant] = PREGNANCY_CODES["trimester_unknown"]
    for t in (1, 2, 3):
        pregnancy[pregnant & (cols.pregnancy_trimester == t)] = t
    # A pregnant patient of unstated sex is female for this purpose.
    sex = cols.sex.copy()
    sex[pregnant & (sex == SEX_CODES["unknown"])] = SEX_CODES["female"]
    sex_col = sex[:, None]
    exact = (table.sex == -1) | (sex_col == table.sex)
    hit = (
        (exact | (sex_col == SEX_CODES["unknown"]))
        & (age_days[:, None] >= table.age_low)
        & (age_days[:, None] < table.age_high)
        & (pregnancy[:, None] == table.pregnancy)
    )
    low = np.where(hit, table.cutoff, np.inf).min(axis=1)
    high = np.where(hit, table.cutoff, -np.inf).max(axis=1)
    matched = hit.any(axis=1)
    low[~matched] = np.nan
    high[~matched] = np.nan
    preferred = hit & exact
    row_index = np.where(preferred.any(axis=1), preferred.argmax(axis=1), np.where(matched, hit.argmax(axis=1), -1))
    hb = cols.values["hemoglobin"]
    state = np.full(cols.n, NOT_ASSESSED, dtype=np.int8)
    state[hb < low] = YES
    state[hb >= high] = NO
    return AnemiaCutoffs(low, high, row_index.astype(np.int16), state)
