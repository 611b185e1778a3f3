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


def _pregnancy_state(cols: CbcColumns) -> np.ndarray:
    state = np.full(cols.n, "no", dtype=object)
    pregnant = cols.pregnant == 1.0
    trimester = cols.pregnancy_trimester
    state[pregnant] = "trimester_unknown"
    for t in (1, 2, 3):
        state[pregnant & (trimester == t)] = f"trimester_{t}"
    return state


def anemia_cutoffs(cols: CbcColumns, ruleset: Ruleset) -> AnemiaCutoffs:
    adult_days = ruleset.value("adult_age_years") * DAYS_PER_YEAR
    age_days = np.where(np.isnan(cols.age_years), adult_days, cols.age_years * DAYS_PER_YEAR)
    pregnancy = _pregnancy_state(cols)
    pregnant = cols.pregnant == 1.0
    # A pregnant patient of unstated sex is female for this purpose.
    sex = np.where(pregnant & (cols.sex == SEX_CODES["unknown"]), SEX_CODES["female"], cols.sex)
    low = np.full(cols.n, np.nan)
    high = np.full(cols.n, np.nan)
    row_index = np.full(cols.n, -1, dtype=np.int16)
    for i, row in enumerate(ruleset.anemia_cutoffs):
        if row.sex == "any":
            sex_ok = np.ones(cols.n, dtype=bool)
        else:
            sex_ok = (sex == SEX_CODES[row.sex]) | (sex == SEX_CODES["unknown"])
        hit = sex_ok & (age_days >= row.age_low_days) & (age_days < row.age_high_days) & (pregnancy == row.pregnancy)
        if not hit.any():
            continue
        low = np.where(hit, np.fmin(low, row.cutoff), low)
        high = np.where(hit, np.fmax(high, row.cutoff), high)
        row_index = np.where(hit & ((row_index < 0) | (sex == SEX_CODES.get(row.sex, -9))), i, row_index).astype(np.int16)
    hb = cols.values["hemoglobin"]
    state = np.full(cols.n, NOT_ASSESSED, dtype=np.int8)
    state[hb < low] = YES
    state[hb >= high] = NO
    return AnemiaCutoffs(low, high, row_index, state)
