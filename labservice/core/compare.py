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


def tristates(values: list[np.ndarray], thresholds: list[Threshold]) -> np.ndarray:
    """Several thresholds at once: a (k, n) int8 matrix of YES / NO / NOT_ASSESSED."""
    stacked = np.array(values)
    operators = {t.operator for t in thresholds}
    if len(operators) == 1:
        bounds = np.array([t.value for t in thresholds])[:, None]
        hit = compare(stacked, operators.pop(), bounds)
    else:
        hit = np.array([compare(stacked[i], t.operator, t.value) for i, t in enumerate(thresholds)])
    out = hit.astype(np.int8)  # YES = 1, NO = 0
    out[stacked != stacked] = NOT_ASSESSED
    return out


def decide(met: np.ndarray, undecided: np.ndarray, need: float) -> np.ndarray:
    """YES when at least `need` criteria are met, NO when they cannot be even if every undecided
    one were met, else NOT_ASSESSED."""
    out = np.full(met.shape, NOT_ASSESSED, dtype=np.int8)
    out[met + undecided < need] = NO
    out[met >= need] = YES
    return out


def in_band(values: np.ndarray, band: Band) -> np.ndarray:
    return compare(values, band.lower_op, band.lower) & compare(values, band.upper_op, band.upper)


# Keyed by id() for speed; each entry holds its bands so that id cannot be reused by another
# tuple while the entry lives (a freed tuple's id used to hand one scheme another's table).
_MAX_COMPILED = 512
_COMPILED: dict[int, tuple[tuple[Band, ...], tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}


def _compiled(bands: tuple[Band, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bands as half-open [lower, upper) float64 intervals sorted by lower bound.

    An exclusive lower bound `> a` is `>= nextafter(a, +inf)` and an inclusive upper bound `<= b`
    is `< nextafter(b, +inf)`, exactly, in float64, so every scheme takes one searchsorted.
    """
    entry = _COMPILED.get(id(bands))
    if entry is not None and entry[0] is bands:
        return entry[1]
    lowers = [b.lower if b.lower_op == ">=" else np.nextafter(b.lower, np.inf) for b in bands]
    uppers = [b.upper if b.upper_op == "<" else np.nextafter(b.upper, np.inf) for b in bands]
    order = np.argsort(lowers, kind="stable")
    compiled = (
        np.array(lowers)[order],
        np.append(np.array(uppers)[order], -np.inf),  # index -1 (below every band) never matches
        np.append(order, -1).astype(np.int8),
    )
    if len(_COMPILED) >= _MAX_COMPILED:  # many rulesets loaded (tests): start again
        _COMPILED.clear()
    _COMPILED[id(bands)] = (bands, compiled)
    return compiled


def band_index(values: np.ndarray, bands: tuple[Band, ...]) -> np.ndarray:
    """Index of the band each value falls in; -1 for NaN or a value in no band."""
    lowers, uppers, order = _compiled(bands)
    i = np.searchsorted(lowers, values, side="right") - 1  # last band starting at or below the value
    out = order[i]
    out[~(values < uppers[i])] = -1  # NaN, a gap between bands, or above the last band
    return out
