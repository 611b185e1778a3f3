"""clinical-rules §1 v2, the number helpers (labservice/core/numbers.py): computed numbers rounded to 6
significant figures before they are compared; text to 3 significant figures, never across a threshold.

Expected values are the rules' own examples and decimal arithmetic done by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labservice.core.numbers import round_sig, round_sig_scalar, text_number, text_numbers

P = pytest.param


@pytest.mark.parametrize(
    ("computed", "expected"),
    [
        # clinical-rules §1 v2: "9.309 mmol/L haemoglobin is 15.0 g/dL" (9.309 / 0.6206 = 15 exactly in decimals;
        # the factor 1.6113438608 of units.csv gives 15.0000000002 in binary).
        P(9.309 * 1.6113438608, 15.0, id="§1 v2 9.309 mmol/L x factor -> exactly 15.0"),
        P(18.618 * 1.6113438608, 30.0, id="§1 v2 18.618 mmol/L x factor -> exactly 30.0"),
        P(82 * 0.1, 8.2, id="§1 82 g/L x 0.1 -> exactly 8.2"),
        P(0.8 * 67.542 / 100, 0.540336, id="§1 v2 derived 0.540336 keeps 6 figures"),
        P(149.99, 149.99, id="5 figures unchanged"),
        P(1234567.0, 1234570.0, id="7 figures -> 6"),
        P(0.000123456789, 0.000123457, id="small values keep 6 significant figures"),
        P(-15.0000000002, -15.0, id="negative"),
    ],
)
def test_round_sig_gives_the_float_nearest_the_6_figure_decimal(computed: float, expected: float) -> None:
    assert round_sig(np.array([computed]))[0] == expected
    assert round_sig_scalar(computed) == expected


def test_round_sig_passes_missing_zero_and_infinite_values_through() -> None:
    out = round_sig(np.array([np.nan, 0.0, np.inf]))
    assert math.isnan(out[0]) and out[1] == 0.0 and out[2] == np.inf


@pytest.mark.parametrize(
    ("value", "compared", "text"),
    [
        # clinical-rules §1 v2: "text rounds to 3 significant figures but never across a threshold it was
        # compared with (149.99 is written 149.99, not 150), and never prints a raw float (0.540336)".
        P(149.99, [150], "149.99", id="§1 v2 149.99 below 150 is written 149.99"),
        P(149.99, [], "150", id="§1 v2 149.99 with no threshold: 3 figures"),
        P(150.0, [150], "150", id="§1 v2 on the threshold stays on it"),
        P(150.004, [150], "150.004", id="§1 v2 just above 150 is not written as 150"),
        P(0.540336, [0.5, 1.5], "0.54", id="§1 v2 0.540336 is 0.54"),
        P(6.93748, [], "6.94", id="issue 13: 6.93748 is 6.94"),
        P(9.12372, [12.0, 7.0], "9.12", id="issue 13: Haemoglobin 9.12372 is 9.12"),
        P(0.499, [0.5], "0.499", id="§1 v2 0.499 below 0.5 stays 0.499"),
        P(0.4999, [0.5], "0.4999", id="§1 v2 0.4999 below 0.5 is not 0.5"),
        P(1500.0, [], "1500", id="no exponent notation"),
        P(45.0, [50], "45", id="no trailing .0"),
    ],
)
def test_text_number(value: float, compared: list[float], text: str) -> None:
    assert text_number(value, compared) == text
    # The column version writes the same, thresholds given as numbers or one per row (issue 14 item 5).
    rows = np.array([value, np.nan, value])
    per_row = [np.full(3, t) for t in compared]
    assert text_numbers(rows, compared).tolist() == [text, None, text]
    assert text_numbers(rows, per_row).tolist() == [text, None, text]
    assert text_numbers(rows, compared, ",").tolist() == [text.replace(".", ","), None, text.replace(".", ",")]


@given(
    values=st.lists(st.floats(0, 5000, allow_nan=False), min_size=1, max_size=30),
    thresholds=st.lists(st.floats(0, 5000, allow_nan=False), max_size=4),
)
def test_text_numbers_is_text_number_for_each_row(values: list[float], thresholds: list[float]) -> None:
    """Each distinct value written once, and the rows near a threshold by text_number itself: the same texts."""
    per_row = np.array(thresholds[:1] * len(values)) if thresholds else np.full(len(values), np.nan)
    expected = [text_number(v, [*thresholds[1:], float(per_row[i])]) for i, v in enumerate(values)]
    assert text_numbers(np.array(values), [*thresholds[1:], per_row]).tolist() == expected
