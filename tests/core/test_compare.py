"""Band lookups: the compiled-table cache never hands one scheme another scheme's table."""

from __future__ import annotations

import numpy as np

from labservice.core import compare
from labservice.core.ruleset import Band


def _band(label: str, lower: float, upper: float) -> Band:
    return Band("scheme", label, lower, ">=", upper, "<", "10*9/L", ("S8",), label)


TWO = (_band("low", 0.0, 1.0), _band("high", 1.0, 2.0))
FIVE = tuple(_band(str(k), float(k), float(k + 1)) for k in range(5))


def test_band_index_finds_each_band_and_nothing_outside():
    values = np.array([0.0, 0.5, 1.0, 1.99, 2.0, -0.1, np.nan])
    assert compare.band_index(values, TWO).tolist() == [0, 0, 1, 1, -1, -1, -1]


def test_a_stale_cache_entry_under_a_reused_id_is_not_used():
    # A freed tuple's id can be given to a new tuple; simulate it by filing FIVE's table under
    # TWO's id. The lookup must notice the entry belongs to another tuple.
    compare.band_index(np.array([4.5]), FIVE)
    compare._COMPILED[id(TWO)] = compare._COMPILED[id(FIVE)]
    assert compare.band_index(np.array([4.5, 0.5]), TWO).tolist() == [-1, 0]
