"""The WHO haemoglobin cut-off that applies to each row (clinical-rules §4, [S9]).

Returns a low and a high cut-off per row. They are equal when sex, age and pregnancy pin the
cut-off down; with the sex unknown they span the female and male cut-offs, and the cut-off applied
is the lowest that could apply (§4 v2: the women's 12.0 from 15 y), which the text says. No matching
row (under 6 months) leaves both NaN: there anaemia is decided by the laboratory's own range only,
else not assessed (§4 v2). A pregnancy not stated is read as not pregnant; an unknown age as adult.
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
    lab_range: np.ndarray  # bool: no WHO cut-off (under 6 months), decided by the laboratory's lower limit


PREGNANCY_CODES = {"no": 0, "trimester_1": 1, "trimester_2": 2, "trimester_3": 3, "trimester_unknown": 4}


@dataclass(frozen=True)
class _CompiledCutoffs:
    """Cut-offs as flat arrays indexed by ((sex * 5 + pregnancy) * segments + age segment)."""

    edges: np.ndarray
    segments: int
    low: np.ndarray
    high: np.ndarray
    row: np.ndarray


def _compile(ruleset: Ruleset) -> _CompiledCutoffs:
    rows = ruleset.anemia_cutoffs
    edges = np.unique([r.age_low_days for r in rows] + [r.age_high_days for r in rows])
    segments = edges.size  # edges.size - 1 age segments, plus "outside every band"
    shape = (3, len(PREGNANCY_CODES), segments)
    low, high = np.full(shape, np.nan), np.full(shape, np.nan)
    row_index = np.full(shape, -1, dtype=np.int16)
    for sex in (SEX_CODES["unknown"], SEX_CODES["female"], SEX_CODES["male"]):
        for pregnancy, p_code in PREGNANCY_CODES.items():
            for seg in range(edges.size - 1):
                start, end = edges[seg], edges[seg + 1]
                matches = [
                    (i, r)
                    for i, r in enumerate(rows)
                    if r.pregnancy == pregnancy
                    and r.age_low_days <= start
                    and r.age_high_days >= end
                    and (r.sex == "any" or sex == SEX_CODES["unknown"] or SEX_CODES[r.sex] == sex)
                ]
                if not matches:
                    continue
                cutoffs = [r.cutoff for _, r in matches]
                low[sex, p_code, seg], high[sex, p_code, seg] = min(cutoffs), max(cutoffs)
                exact = [i for i, r in matches if r.sex == "any" or SEX_CODES[r.sex] == sex]
                # Sex unknown: the row of the lowest cut-off, the one applied (§4 v2).
                lowest = min(matches, key=lambda match: match[1].cutoff)[0]
                row_index[sex, p_code, seg] = exact[0] if exact else lowest
    return _CompiledCutoffs(edges, segments, low.ravel(), high.ravel(), row_index.ravel())


def _compiled(ruleset: Ruleset) -> _CompiledCutoffs:
    key = ("anemia_cutoffs",)
    if key not in ruleset._cache:
        ruleset._cache[key] = _compile(ruleset)
    return ruleset._cache[key]


def anemia_cutoffs(cols: CbcColumns, ruleset: Ruleset) -> AnemiaCutoffs:
    """The cut-off range per row from the compiled table: one searchsorted and three takes."""
    table = _compiled(ruleset)
    adult_days = ruleset.value("adult_age_years") * DAYS_PER_YEAR
    age_days = cols.age_years * DAYS_PER_YEAR
    age_days[np.isnan(age_days)] = adult_days
    pregnant = cols.pregnant == 1.0
    pregnancy = np.zeros(cols.n, dtype=np.intp)
    pregnancy[pregnant] = PREGNANCY_CODES["trimester_unknown"]
    for t in (1, 2, 3):
        pregnancy[pregnant & (cols.pregnancy_trimester == t)] = t
    # A pregnant patient of unstated sex is female for this purpose.
    sex = cols.sex.astype(np.intp)
    sex[pregnant & (sex == SEX_CODES["unknown"])] = SEX_CODES["female"]
    seg = np.searchsorted(table.edges, age_days, side="right") - 1
    seg[(seg < 0) | (seg >= table.edges.size - 1)] = table.segments - 1
    where = (sex * len(PREGNANCY_CODES) + pregnancy) * table.segments + seg
    low, high, row_index = table.low[where], table.high[where], table.row[where]
    hb = cols.values["hemoglobin"]
    state = np.full(cols.n, NOT_ASSESSED, dtype=np.int8)
    state[hb < low] = YES
    state[hb >= low] = NO  # sex unknown: the lowest cut-off that could apply is the one applied (§4 v2)
    # Under 6 months there is no WHO cut-off: the laboratory's own lower limit decides, else not assessed.
    lab_low = cols.ref_low["hemoglobin"]
    lab_range = np.isnan(low) & ~np.isnan(hb) & ~np.isnan(lab_low)
    if lab_range.any():
        state[lab_range & (hb < lab_low)] = YES
        state[lab_range & (hb >= lab_low)] = NO
    return AnemiaCutoffs(low, high, row_index, state, lab_range)
