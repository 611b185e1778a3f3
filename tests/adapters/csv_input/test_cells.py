"""Cell text → typed columns (cells.py): numbers, codes and dates, each with the mask of bad cells.

The columns are given as the reader hands them over: text (object) columns in which an empty cell
is already NaN/None, or float columns when every cell was a number. An empty cell is missing, never
bad; anything else that is not a value is bad, so that the row can be rejected by name.
"""

from __future__ import annotations

import importlib.util
import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labservice.adapters.csv_input.cells import (
    CENSORED_ABOVE,
    CENSORED_BELOW,
    SEX_TEXTS,
    TRISTATE_TEXTS,
    parse_codes,
    parse_dates,
    parse_numbers,
)
from labservice.core.ruleset import default_ruleset
from labservice.core.units import plausible_mask

NAN = math.nan


def text(*cells) -> pd.Series:
    return pd.Series(list(cells), dtype=object)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# -- numbers ----------------------------------------------------------------------------------

# (cell, decimal, value, bad, censored, bound)
NUMBERS = [
    ("150", ".", 150.0, False, 0, NAN),
    ("13.5", ".", 13.5, False, 0, NAN),
    (" 7 ", ".", 7.0, False, 0, NAN),
    ("-5", ".", -5.0, False, 0, NAN),  # a number; plausibility rejects it later
    ("1,5", ",", 1.5, False, 0, NAN),
    (" 1,5 ", ",", 1.5, False, 0, NAN),
    ("2.5", ",", 2.5, False, 0, NAN),  # a decimal point is still read in a decimal-comma file
    ("1,5", ".", NAN, True, 0, NAN),  # a decimal comma in a decimal-point file is not guessed
    ("1.234,5", ",", NAN, True, 0, NAN),
    ("<5", ".", NAN, False, CENSORED_BELOW, 5.0),
    ("< 20", ".", NAN, False, CENSORED_BELOW, 20.0),
    ("  <20  ", ".", NAN, False, CENSORED_BELOW, 20.0),
    ("<=0.1", ".", NAN, False, CENSORED_BELOW, 0.1),
    (">1000", ".", NAN, False, CENSORED_ABOVE, 1000.0),
    (">= 7.5", ".", NAN, False, CENSORED_ABOVE, 7.5),
    ("<0,5", ",", NAN, False, CENSORED_BELOW, 0.5),
    (">2,5", ",", NAN, False, CENSORED_ABOVE, 2.5),
    ("abc", ".", NAN, True, 0, NAN),
    ("1.2.3", ".", NAN, True, 0, NAN),
    ("5 K", ".", NAN, True, 0, NAN),
    ("150 x10^9/L", ".", NAN, True, 0, NAN),
    ("<", ".", NAN, True, 0, NAN),
    ("<abc", ".", NAN, True, 0, NAN),
    ("<<5", ".", NAN, True, 0, NAN),
    ("5<", ".", NAN, True, 0, NAN),
    ("~5", ".", NAN, True, 0, NAN),
    (None, ".", NAN, False, 0, NAN),  # empty: missing, not bad
    (NAN, ".", NAN, False, 0, NAN),
    (None, ",", NAN, False, 0, NAN),
]


@pytest.mark.parametrize(("cell", "decimal", "value", "bad", "censored", "bound"), NUMBERS)
def test_parse_numbers_cell(cell, decimal: str, value: float, bad: bool, censored: int, bound: float) -> None:
    numbers = parse_numbers(text(cell), decimal)
    assert same(float(numbers.values[0]), value)
    assert bool(numbers.bad[0]) is bad
    assert int(numbers.censored[0]) == censored
    got_bound = NAN if numbers.bound is None else float(numbers.bound[0])
    assert same(got_bound, bound)


def test_parse_numbers_masks_line_up_in_a_mixed_column() -> None:
    column = text("1", None, "x", "<5", "2,5", " 3 ", ">7", NAN, "y", "4")
    numbers = parse_numbers(column, ",")
    expected_values = [1.0, NAN, NAN, NAN, 2.5, 3.0, NAN, NAN, NAN, 4.0]
    assert all(same(a, b) for a, b in zip(numbers.values.tolist(), expected_values, strict=True))
    assert numbers.bad.tolist() == [False, False, True, False, False, False, False, False, True, False]
    assert numbers.censored.tolist() == [0, 0, 0, -1, 0, 0, 1, 0, 0, 0]
    assert numbers.bound is not None
    assert numbers.bound[3] == 5.0 and numbers.bound[6] == 7.0
    assert np.isnan(numbers.bound[[0, 1, 2, 4, 5, 7, 8, 9]]).all()


def test_parse_numbers_float_column_passes_through() -> None:
    numbers = parse_numbers(pd.Series([150.0, NAN, 2.5]))
    assert numbers.values[0] == 150.0 and np.isnan(numbers.values[1]) and numbers.values[2] == 2.5
    assert not numbers.bad.any()
    assert not numbers.censored.any()
    assert numbers.bound is None


def test_parse_numbers_without_censored_cells_has_no_bound() -> None:
    assert parse_numbers(text("1", "abc", None)).bound is None


@pytest.mark.parametrize("cell", ["inf", "-inf", "Infinity"])
def test_infinity_never_passes_as_a_value(cell: str) -> None:
    """`inf` is either flagged bad here or left non-finite, which the plausibility check rejects."""
    numbers = parse_numbers(text(cell))
    if not numbers.bad[0]:
        assert not np.isfinite(numbers.values[0])
        assert not plausible_mask(default_ruleset(), "platelets", numbers.values)[0]


def test_censored_thousands_comma_in_decimal_point_file_is_bad_not_one() -> None:
    """Regression: `>1,000` in a decimal-point file was read as the bound 1.0."""
    numbers = parse_numbers(text(">1,000", "<0,5", "1,000"), ".")
    assert numbers.bad.tolist() == [True, True, True]
    assert numbers.censored.tolist() == [0, 0, 0]


@pytest.mark.parametrize("cell", ["   ", "\t", " \t "])
def test_spaces_only_cell_is_missing_not_bad(cell: str) -> None:
    """Regression: a cell holding only spaces was reported as "is not a number"."""
    numbers = parse_numbers(text(cell, "5"), ".")
    assert numbers.bad.tolist() == [False, False]
    assert np.isnan(numbers.values[0]) and numbers.values[1] == 5.0


# -- codes ------------------------------------------------------------------------------------

SEX = [
    ("M", "male", False),
    ("m", "male", False),
    ("Male ", "male", False),
    ("MALE", "male", False),
    ("F", "female", False),
    ("female", "female", False),
    ("w", "female", False),  # German exports: weiblich
    ("W", "female", False),
    ("U", "unknown", False),
    ("unknown", "unknown", False),
    ("X", "unknown", False),
    (None, "unknown", False),  # missing: the default, not bad
    (NAN, "unknown", False),
    ("Q", "unknown", True),
    ("2", "unknown", True),  # a numeric code needs sex_codes
    ("yes", "unknown", True),
]


@pytest.mark.parametrize(("cell", "value", "bad"), SEX)
def test_parse_codes_sex(cell, value: str, bad: bool) -> None:
    values, bad_mask = parse_codes(text(cell), SEX_TEXTS, "unknown")
    assert values[0] == value
    assert bool(bad_mask[0]) is bad


def test_parse_codes_with_stated_codes() -> None:
    codes = {**SEX_TEXTS, "1": "male", "2": "female"}
    values, bad = parse_codes(pd.Series([1.0, 2.0, NAN, 3.0]), codes, "unknown")
    assert values.tolist() == ["male", "female", "unknown", "unknown"]
    assert bad.tolist() == [False, False, False, True]


TRISTATE = [
    ("1", 1.0, False),
    ("1.0", 1.0, False),  # spreadsheets write yes/no columns as numbers
    (1.0, 1.0, False),
    (1, 1.0, False),
    (0.0, 0.0, False),
    ("0", 0.0, False),
    ("yes", 1.0, False),
    ("Y", 1.0, False),
    ("TRUE", 1.0, False),
    ("no", 0.0, False),
    ("f", 0.0, False),
    ("Negative", 0.0, False),
    (None, NAN, False),
    (NAN, NAN, False),
    ("2.0", NAN, True),
    (2.0, NAN, True),
    ("1.5", NAN, True),
    ("maybe", NAN, True),
]


@pytest.mark.parametrize(("cell", "value", "bad"), TRISTATE)
def test_parse_codes_yes_no(cell, value: float, bad: bool) -> None:
    values, bad_mask = parse_codes(text(cell), TRISTATE_TEXTS, NAN)
    assert same(float(values[0]), value)
    assert bool(bad_mask[0]) is bad


def test_parse_codes_mixed_column_keeps_positions() -> None:
    values, bad = parse_codes(text("M", None, "Q", "f", "M", "Q"), SEX_TEXTS, "unknown")
    assert values.tolist() == ["male", "unknown", "unknown", "female", "male", "unknown"]
    assert bad.tolist() == [False, False, True, False, False, True]


# -- dates ------------------------------------------------------------------------------------


def day(iso: str) -> np.datetime64:
    return np.datetime64(iso, "s")


# (cell, date_order, value or None for NaT, bad, ambiguous)
DATES = [
    ("2026-02-03", None, "2026-02-03", False, False),
    ("2026-02-03", "DMY", "2026-02-03", False, False),
    ("2026-02-03", "MDY", "2026-02-03", False, False),
    (" 2026-02-03 ", None, "2026-02-03", False, False),
    ("2026-02-03 10:30", None, "2026-02-03T10:30", False, False),
    ("2026-02-03T10:30:15", None, "2026-02-03T10:30:15", False, False),
    ("03.02.2026", None, "2026-02-03", False, False),  # day.month.year, read as written
    ("03.02.2026", "MDY", "2026-02-03", False, False),  # the dotted form is always day first
    ("3.2.2026", None, "2026-02-03", False, False),
    ("03.02.2026 14:05", None, "2026-02-03T14:05", False, False),
    ("01/02/2026", None, None, False, True),
    ("13/01/2026", None, None, False, True),  # slash dates need date_order, even when only one reading works
    ("01/02/2026", "DMY", "2026-02-01", False, False),
    ("01/02/2026", "MDY", "2026-01-02", False, False),
    ("01/02/2026 10:30", "DMY", "2026-02-01T10:30", False, False),
    ("01/02/2026 10:30", None, None, False, True),
    ("31/12/2025", "DMY", "2025-12-31", False, False),
    ("12/31/2025", "MDY", "2025-12-31", False, False),
    ("2026-02-30", None, None, True, False),
    ("yesterday", None, None, True, False),
    ("3 Feb 2026", None, None, True, False),
    (None, None, None, False, False),
    (None, "DMY", None, False, False),
]


@pytest.mark.parametrize(("cell", "order", "value", "bad", "ambiguous"), DATES)
def test_parse_dates_cell(cell, order: str | None, value: str | None, bad: bool, ambiguous: bool) -> None:
    values, bad_mask, ambiguous_mask = parse_dates(text(cell), order)
    if value is None:
        assert np.isnat(values[0])
    else:
        assert values[0] == day(value)
    assert bool(bad_mask[0]) is bad
    assert bool(ambiguous_mask[0]) is ambiguous


@pytest.mark.parametrize(
    ("cell", "order"),
    [("01/13/2026", "DMY"), ("13/01/2026", "MDY"), ("12.31.2025", None), ("12.31.2025", "MDY"), ("32/01/2026", "DMY")],
)
def test_date_impossible_in_its_order_is_bad_not_swapped(cell: str, order: str | None) -> None:
    """Regression: pandas' "mixed" format read these with day and month swapped."""
    values, bad, _ = parse_dates(text(cell), order)
    assert np.isnat(values[0])
    assert bad[0]


def test_parse_dates_mixed_column_keeps_positions() -> None:
    values, bad, ambiguous = parse_dates(text("2026-01-05", "x", "05/01/2026", None, "05.01.2026"), None)
    assert values[0] == day("2026-01-05") and values[4] == day("2026-01-05")
    assert np.isnat(values[[1, 2, 3]]).all()
    assert bad.tolist() == [False, True, False, False, False]
    assert ambiguous.tolist() == [False, False, True, False, False]


@pytest.mark.parametrize(("codes", "default"), [(SEX_TEXTS, "unknown"), (TRISTATE_TEXTS, NAN)], ids=["sex", "yes-no"])
def test_spaces_only_code_cell_is_missing_not_bad(codes: dict, default) -> None:
    _, bad = parse_codes(text("  "), codes, default)
    assert not bad[0]


def test_spaces_only_date_cell_is_missing_not_bad() -> None:
    values, bad, ambiguous = parse_dates(text("  "), None)
    assert np.isnat(values[0])
    assert not bad[0] and not ambiguous[0]


def test_an_integer_beyond_any_float_is_an_infinite_bad_value_not_a_crash() -> None:
    """Found by the hostile corpus: pd.to_numeric(errors="coerce") raises OverflowError on 10**400 written out, so
    one such cell made the whole upload a 500. It reads as ±infinity, which the plausibility check refuses."""
    column = pd.Series(["45", "1" + "0" * 400, "-" + "9" * 400, "abc", None], dtype=object)
    parsed = parse_numbers(column)
    assert parsed.values[0] == 45
    assert parsed.values[1] == np.inf and parsed.values[2] == -np.inf
    assert np.isnan(parsed.values[3]) and np.isnan(parsed.values[4])


# -- plain decimals in a column read as text (read by float(), the others by to_numeric) ---------------

PLAIN = st.from_regex(r"\A[0-9]{1,12}(\.[0-9]{0,8})?\Z|\A\.[0-9]{1,10}\Z", fullmatch=True)


@given(st.lists(PLAIN, min_size=1, max_size=30), st.integers(min_value=0, max_value=30))
def test_plain_decimals_are_their_value_rounded_to_the_nearest_double(cells: list[str], at: int) -> None:
    """A column with one bad cell comes as text; every plain decimal in it is the decimal's own value, rounded
    to the nearest double (what the decimal module says), whatever its length."""
    at = min(at, len(cells))
    column = [*cells[:at], "abc", *cells[at:]]
    numbers = parse_numbers(text(*column))
    expected = [float(Decimal(cell)) for cell in cells]
    got = numbers.values.tolist()
    assert got[:at] + got[at + 1 :] == expected
    assert numbers.bad.tolist() == [i == at for i in range(len(column))]


@pytest.mark.parametrize(
    "cell",
    [
        "1_000",  # Python's float() reads underscores; a lab value does not have them
        "١٢",  # Arabic-Indic digits: float() reads them as 12
        "12\n5",  # a line break inside a quoted cell
        "1e400",
    ],
)
def test_texts_float_would_read_but_to_numeric_does_not_are_still_bad_or_implausible(cell: str) -> None:
    numbers = parse_numbers(text("4.5", cell, "7"), ".")
    assert numbers.values[0] == 4.5 and numbers.values[2] == 7.0
    if cell == "1e400":  # to_numeric reads it as infinity: rejected later as not plausible
        assert not np.isfinite(numbers.values[1])
    else:
        assert numbers.bad.tolist() == [False, True, False]


def test_long_numbers_are_read_exactly_as_written() -> None:
    """Beyond 15 characters the decimal is still its nearest double (these go through to_numeric)."""
    cells = ["123456789012345678", "0.1000000000000000055511151231257827", "9007199254740993", "12.5"]
    numbers = parse_numbers(text(*cells, "x"))
    assert numbers.values[:4].tolist() == [float(Decimal(cell)) for cell in cells]


# -- a number column that held text, as pandas gives it with pyarrow installed (Arrow-backed strings) -------

needs_pyarrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow is not installed")

ODD = st.sampled_from(
    [
        "abc",
        "1.2.3",
        ".",
        "..",
        " 7 ",
        "-5",
        "+5",
        "<5",
        ">= 7.5",
        "1e5",
        "1_000",
        "١٢",
        "12\n5",
        "",
        "  ",
        "1" + "0" * 400,
        "0000000000000001",
        "123456789012345",
        "1234567890123456",
        "5.",
        ".5",
        "é",
    ]
)


def assert_same_numbers(cells: list, decimal: str = ".") -> None:
    """The Arrow column reads as the object column does: the same values (to the bit), masks and bounds."""
    as_objects = parse_numbers(pd.Series(cells, dtype=object), decimal)
    as_arrow = parse_numbers(pd.Series(cells, dtype="str"), decimal)
    assert pd.Series(cells, dtype="str").dtype.storage == "pyarrow"
    assert as_arrow.values.tobytes() == as_objects.values.tobytes()
    assert as_arrow.bad.tolist() == as_objects.bad.tolist()
    assert as_arrow.censored.tolist() == as_objects.censored.tolist()
    assert (as_arrow.bound is None) == (as_objects.bound is None)
    if as_arrow.bound is not None:
        assert as_arrow.bound.tobytes() == as_objects.bound.tobytes()


@needs_pyarrow
@pytest.mark.parametrize("decimal", [".", ","])
def test_an_arrow_text_column_reads_as_an_object_column(decimal: str) -> None:
    assert_same_numbers([cell for cell, *_ in NUMBERS], decimal)
    assert_same_numbers(["45", "1" + "0" * 400, "-" + "9" * 400, "abc", None], decimal)


@needs_pyarrow
@given(st.lists(st.one_of(PLAIN, ODD, st.none()), min_size=1, max_size=40))
def test_arrow_text_with_plain_decimals_and_odd_cells_reads_as_objects(cells: list) -> None:
    assert_same_numbers(cells)
