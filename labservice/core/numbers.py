"""Numbers exact on bounds and numbers in text (clinical-rules §1 v2).

- Every computed number (a unit conversion, a derived count, a computed MCHC, a delta) is rounded to
  COMPARE_DIGITS (6) significant figures before it is compared: 9.309 mmol/L haemoglobin x
  (1 / 0.6206) is 15.0 g/dL, on the bound, not 15.000000000x above it. `round_sig` does it for a
  column, `round_sig_scalar` for one number.
- Text writes a number to TEXT_DIGITS (3) significant figures, never across a threshold it was
  compared with (149.99 below 150 is written 149.99, not 150; 15.0 on a bound of 15 stays 15) and
  never as a raw float (0.540336 is 0.54): `text_number`, and `text_numbers` for a column (the same
  texts, each distinct value written once).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Significant figures every computed number keeps before it is compared (clinical-rules §1 v2).
COMPARE_DIGITS = 6
#: Significant figures a number is written with in text, unless a threshold needs more (§1 v2).
TEXT_DIGITS = 3
#: Most digits a float can need to be written back exactly (17 significant figures).
_MAX_DIGITS = 17


def round_sig(values: np.ndarray | float, digits: int = COMPARE_DIGITS) -> np.ndarray:
    """Values rounded to `digits` significant figures (vectorised; NaN, inf and 0 pass through).

    The scaled value is rounded to an integer and divided by an exact power of ten, so the result is
    the float nearest the decimal (15.0000000002 -> 15.0 exactly, 30.0000000004 -> 30.0).
    """
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x) & (x != 0)
    if not finite.any():
        return x.copy() if x.ndim else x
    out = x.copy()
    v = x[finite]
    exponent = digits - 1 - np.floor(np.log10(np.abs(v))).astype(np.int64)
    up = exponent >= 0
    result = np.empty_like(v)
    if up.any():
        scale = 10.0 ** exponent[up]
        result[up] = np.round(v[up] * scale) / scale
    if (~up).any():
        scale = 10.0 ** (-exponent[~up])
        result[~up] = np.round(v[~up] / scale) * scale
    out[finite] = result
    return out


def round_sig_scalar(x: float, digits: int = COMPARE_DIGITS) -> float:
    """One number rounded to `digits` significant figures (NaN and inf unchanged)."""
    x = float(x)
    if not math.isfinite(x) or x == 0:
        return x
    return float(f"{x:.{digits}g}")


def _positional(x: float, digits: int) -> str:
    return np.format_float_positional(x, precision=digits, unique=True, fractional=False, trim="-")


def _side(a: float, b: float) -> int:
    return (a > b) - (a < b)


def text_number(value: float | None, compared: Iterable[float | None] = ()) -> str:
    """`value` as text: 3 significant figures, with as many more as keep it on the same side of (or on)
    every threshold in `compared` (clinical-rules §1 v2). Never exponent notation, never binary noise.
    None (a value not sent) is written "not sent"."""
    if value is None:
        return "not sent"
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    bounds = [float(t) for t in compared if t is not None and math.isfinite(float(t))]
    for digits in range(TEXT_DIGITS, _MAX_DIGITS + 1):
        text = _positional(x, digits)
        shown = float(text)
        if all(_side(shown, t) == _side(x, t) for t in bounds):
            return text
    return _positional(x, _MAX_DIGITS)


@dataclass(frozen=True)
class CodedTexts:
    """Texts of a column as `text_numbers` writes them, kept coded: row i is `texts[codes[i]]` (code -1: no value)
    unless i is in `own` (a row near a threshold, written with the digits it needs)."""

    codes: np.ndarray
    texts: list[str]
    own: dict[int, str]

    def column(self) -> np.ndarray:
        out = np.full(self.codes.shape, None, dtype=object)
        given = self.codes >= 0
        out[given] = np.asarray(self.texts, dtype=object)[self.codes[given]]
        for row, text in self.own.items():
            out[row] = text
        return out


def coded_texts(values: np.ndarray, compared: Iterable[float | np.ndarray] = (), decimal: str = ".") -> CodedTexts:
    """`text_number` for a column, coded (CodedTexts): each distinct value written once (and checked once against
    the fixed thresholds); a row where those 3 figures would put it across (or onto) one of its own thresholds is
    written by `text_number` itself, with the digits that keep it on its side (few rows are). `compared` holds
    thresholds, each a number or an array with one per row (NaN: none there); `decimal` is the decimal mark."""
    x = np.asarray(values, dtype=np.float64)
    codes = np.full(x.shape, -1, dtype=np.int64)
    given = np.flatnonzero(np.isfinite(x))
    if given.size == 0:
        return CodedTexts(codes, [], {})
    found, uniques = pd.factorize(x[given])
    texts = [_positional(float(u), TEXT_DIGITS) for u in uniques]
    shown = np.array([float(t) for t in texts], dtype=np.float64)
    fixed = [float(b) for b in compared if np.ndim(b) == 0]
    per_row = [np.asarray(b, dtype=np.float64)[given] for b in compared if np.ndim(b) != 0]
    crossed_unique = np.zeros(uniques.size, dtype=bool)
    for bound in fixed:
        if math.isfinite(bound):
            crossed_unique |= np.sign(shown - bound) != np.sign(uniques - bound)
    crossed = crossed_unique[found]
    if per_row:
        shown_rows, x_rows = shown[found], x[given]
        for bound_rows in per_row:
            crossed |= np.isfinite(bound_rows) & (np.sign(shown_rows - bound_rows) != np.sign(x_rows - bound_rows))
    own = {}
    written: dict[tuple[float | None, ...], str] = {}  # rows near a threshold often share their value and thresholds
    for row in np.flatnonzero(crossed).tolist():
        key = (float(x[given[row]]), *(float(b[row]) if b[row] == b[row] else None for b in per_row))
        if key not in written:  # (None for a missing threshold: NaN would never equal itself as a key)
            written[key] = text_number(key[0], [*fixed, *key[1:]]).replace(".", decimal)
        own[int(given[row])] = written[key]
    codes[given] = found
    return CodedTexts(codes, [t.replace(".", decimal) for t in texts], own)


def text_numbers(values: np.ndarray, compared: Iterable[float | np.ndarray] = (), decimal: str = ".") -> np.ndarray:
    """`text_number` for a column: an object array of texts (None where a value is missing), with `decimal` as
    the decimal mark; `compared` as in coded_texts."""
    return coded_texts(values, compared, decimal).column()


__all__ = [
    "COMPARE_DIGITS",
    "TEXT_DIGITS",
    "CodedTexts",
    "coded_texts",
    "round_sig",
    "round_sig_scalar",
    "text_number",
    "text_numbers",
]
