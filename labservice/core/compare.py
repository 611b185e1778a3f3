"""Vectorised comparisons driven by operator strings from the rule tables."""

from __future__ import annotations

import numpy as np

from labservice.core.ruleset import Band, Threshold

# Tri-state outcomes used across the engine: a rule that could not be evaluated is NOT_ASSESSED.
NOT_ASSESSED, NO, YES = -1, 0, 1


def compare(values: np.ndarray, operator: str, bound: float | np.ndarray) -> np.ndarray:
    """values OP bound, elementwise; False wherever either side is NaN."""
    if operator == "<":
        return values < bound
    if operator == "<=":
        return values <= bound
    if operator == ">":
        return values > bound
    if operator == ">=":
        return values >= bound
    raise ValueError(f"unknown operator {operator!r}")


def meets(values: np.ndarray, threshold: Threshold) -> np.ndarray:
    """Where values meet a threshold row (NaN never meets)."""
    return compare(values, threshold.operator, threshold.value)


def tristate(values: np.ndarray, threshold: Threshold) -> np.ndarray:
    """YES / NO where the value is known, NOT_ASSESSED where it is NaN."""
    out = meets(values, threshold).astype(np.int8)  # YES = 1, NO = 0
    out[values != values] = NOT_ASSESSED
    return out


def in_band(values: np.ndarray, band: Band) -> np.ndarray:
    return compare(values, band.lower_op, band.lower) & compare(values, band.upper_op, band.upper)


_HALF_OPEN: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}


def _half_open(bands: tuple[Band, ...]):
    """Bands that are all [lower, upper) compile to sorted edges for one searchsorted."""
    key = id(bands)
    if key not in _HALF_OPEN:
        if all(b.lower_op == ">=" and b.upper_op == "<" for b in bands):
            order = np.argsort([b.lower for b in bands])
            _HALF_OPEN[key] = (
                np.array([bands[i].lower for i in order]),
                np.array([bands[i].upper for i in order]),
                order.astype(np.int8),
            )
        else:
            _HALF_OPEN[key] = None
    return _HALF_OPEN[key]


def band_index(values: np.ndarray, bands: tuple[Band, ...]) -> np.ndarray:
    """Index of the band each value falls in; -1 for NaN or a value in no band."""
    compiled = _half_open(bands)
    if compiled is not None:
        lowers, uppers, order = compiled
        i = np.searchsorted(lowers, values, side="right") - 1
        i[i < 0] = 0
        out = order[i]
        out[~(values < uppers[i]) | ~(values >= lowers[i])] = -1
        return out
    out = np.full(values.shape, -1, dtype=np.int8)
    for i, band in enumerate(bands):
        out[in_band(values, band)] = i
    return out
