"""Cell text → typed columns, vectorised, with the rows that could not be read.

Every function returns the parsed array and a boolean mask of cells that held something that is
not a valid value (an empty cell is missing, not bad). The caller turns bad cells into row errors
that name the line and column; nothing here turns a bad value into a silent NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Cell texts read as "no value" (not measured): the common spellings of an empty result.
MISSING_TEXTS = ("", "NA", "N/A", "n/a", "na", "NaN", "nan", "NULL", "null", "None", "-", "--", ".")
#: `<5`, `< 5`, `<=0.1`, `>1000`: a censored result (the analyser reports only a bound).
_CENSORED = r"^\s*([<>])=?\s*([0-9]+(?:[.][0-9]+)?)\s*$"  # matched after a decimal comma became "."
CENSORED_BELOW, CENSORED_ABOVE = -1, 1

SEX_TEXTS = {
    "f": "female",
    "female": "female",
    "w": "female",
    "woman": "female",
    "girl": "female",
    "m": "male",
    "male": "male",
    "man": "male",
    "boy": "male",
    "u": "unknown",
    "unknown": "unknown",
    "unk": "unknown",
    "x": "unknown",
    "o": "unknown",
    "other": "unknown",
    "not known": "unknown",
    "indeterminate": "unknown",
}
TRISTATE_TEXTS = {
    "1": 1.0,
    "y": 1.0,
    "yes": 1.0,
    "true": 1.0,
    "t": 1.0,
    "positive": 1.0,
    "pos": 1.0,
    "0": 0.0,
    "n": 0.0,
    "no": 0.0,
    "false": 0.0,
    "f": 0.0,
    "negative": 0.0,
    "neg": 0.0,
}


@dataclass
class NumberColumn:
    values: np.ndarray  # float64; NaN where missing, bad or censored
    bad: np.ndarray  # bool: a non-numeric text
    censored: np.ndarray  # int8: CENSORED_BELOW / CENSORED_ABOVE / 0
    bound: np.ndarray | None  # float64 bound of censored cells (None when there are none)


def is_missing(column: pd.Series) -> np.ndarray:
    """True where a cell is empty or one of MISSING_TEXTS (read_csv already made those NaN)."""
    return column.isna().to_numpy()


def _one_number(cell: object) -> float:
    """to_numeric for one cell, an integer too large for a float read as ±infinity (then not plausible)."""
    try:
        return float(pd.to_numeric(cell, errors="coerce"))  # type: ignore[call-overload]  # stubs: no object overload
    except OverflowError:
        return -math.inf if str(cell).strip().startswith("-") else math.inf


def _to_numeric(text: pd.Series) -> np.ndarray:
    try:
        return pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    except OverflowError:  # pandas does not coerce an integer beyond any float (10**400): cell by cell then
        return np.array([_one_number(cell) for cell in text.to_numpy()], dtype=np.float64)


#: Per byte: True for a byte no plain decimal (digits with at most one point) holds; "\n" separates the cells.
_NOT_PLAIN = np.ones(256, dtype=bool)
_NOT_PLAIN[np.frombuffer(b"0123456789.\n", dtype=np.uint8)] = False
#: Plain decimals of at most this many characters (at most 15 significant digits) read by float() get the same
#: double as from to_numeric: both round the decimal correctly at that length.
PLAIN_MAX_CHARS = 15


def _read_plain(cells: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """Read the cells that are plain decimals ("12", "4.35") into `values`; return the positions of the others
    (missing, censored, bad, signed, spaced, long: for to_numeric), or None to leave every cell to it.

    float() on the plain cells costs a third of to_numeric over the whole column; they are found by looking
    at the bytes of the joined column in numpy (an ASCII column: a byte is a character)."""
    present = np.flatnonzero(pd.notna(cells))
    texts = cells[present].tolist()
    try:
        joined = "\n".join(texts)
    except TypeError:  # a number among the texts: to_numeric reads the column
        return None
    if not texts or not joined.isascii():
        return None
    data = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    ends = np.append(np.flatnonzero(data == 10), data.size)  # where each cell ends
    if ends.size != len(texts):  # a cell holds a line break itself
        return None
    lengths = np.diff(ends, prepend=-1) - 1
    other = (lengths == 0) | (lengths > PLAIN_MAX_CHARS)
    other[np.searchsorted(ends, np.flatnonzero(_NOT_PLAIN[data]))] = True
    plain = present[~other]
    try:
        values[plain] = cells[plain].astype(np.float64)  # float() of each text
    except ValueError:  # "1.2.3" or "." (a missing text pandas left as text): to_numeric reads the column
        return None
    missing = np.ones(len(cells), dtype=bool)
    missing[plain] = False
    return np.flatnonzero(missing)


def _read_plain_arrow(column: pd.Series, values: np.ndarray) -> np.ndarray | None:
    """_read_plain for a column of Arrow text, without a Python object per cell: the plain decimals are found by
    Arrow's regular expressions and read by its cast (correctly rounded, as float() is)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.array(column.array)  # (the Arrow array the column holds)
    plain = pc.and_(pc.match_substring_regex(text, _PLAIN), pc.less_equal(pc.utf8_length(text), PLAIN_MAX_CHARS))
    plain = plain.fill_null(False)
    mask = plain.to_numpy(zero_copy_only=False)
    try:
        values[mask] = pc.cast(text.filter(plain), pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:  # "1.2.3" or "." (a missing text pandas left as text): to_numeric reads the column
        return None
    return np.flatnonzero(~mask)


#: A plain decimal as _read_plain finds it (digits and points only; at most PLAIN_MAX_CHARS of them).
_PLAIN = r"^[0-9.]+$"


def _arrow_text(column: pd.Series) -> bool:
    """True for pandas' string type kept by Arrow (a number column that held text, read with pyarrow installed)."""
    return isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow"


def parse_numbers(column: pd.Series, decimal: str = ".") -> NumberColumn:
    """Numbers from a column read by read_csv (float when clean, text when any cell was not a number)."""
    n = len(column)
    if column.dtype.kind in "fiub":
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        return NumberColumn(values, np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int8), None)
    # Plain decimals are read by float(); to_numeric parses the other cells in C and allows surrounding spaces;
    # only the cells it could not read (missing, censored or bad: usually a few per cent) are looked at again.
    values = np.full(n, np.nan)
    if decimal == "." and _arrow_text(column):  # Arrow text: only the cells that are not plain become objects
        others = _read_plain_arrow(column, values)
        text = column if others is not None else column.astype(object)
    else:
        text = column.astype(object)
        if decimal == ",":
            text = text.str.replace(",", ".", regex=False)
        others = _read_plain(text.to_numpy(dtype=object), values)
    if others is None:
        values = _to_numeric(text)
    elif others.size:
        values[others] = _to_numeric(text.iloc[others].astype(object))
    unread = np.isnan(values)
    if unread.any():
        positions = np.flatnonzero(unread)
        cells = text.iloc[positions].to_numpy(dtype=object, na_value=np.nan)
        missing = np.array(
            [cell is None or cell != cell or cell is pd.NA or not str(cell).strip() for cell in cells], dtype=bool
        )  # empty, NaN, or only spaces
        unread[positions[missing]] = False
    censored = np.zeros(n, dtype=np.int8)
    bound = None
    if unread.any():
        stripped = text[unread].astype(object).str.strip()
        parts = stripped.str.extract(_CENSORED)
        found = parts[0].notna().to_numpy()
        if found.any():
            where = np.flatnonzero(unread)[found]
            censored[where] = np.where(parts[0].to_numpy()[found] == "<", CENSORED_BELOW, CENSORED_ABOVE)
            bound = np.full(n, np.nan)
            bound[where] = pd.to_numeric(parts[1][found]).to_numpy(np.float64)
            unread[where] = False
    return NumberColumn(values, unread, censored, bound)


def parse_codes(column: pd.Series, codes: Mapping[str, object], default: object) -> tuple[np.ndarray, np.ndarray]:
    """Coded text (sex, yes/no) by a case-insensitive lookup: (values, bad mask); missing → default.

    Each distinct text is looked up once (a column of a million cells holds a handful of codes).
    """
    positions, uniques = pd.factorize(column.to_numpy(dtype=object), use_na_sentinel=True)
    looked_up = [default if not str(text).strip() else codes.get(_code_key(text), _NOT_A_CODE) for text in uniques]
    bad_code = np.array([value is _NOT_A_CODE for value in looked_up] + [False], dtype=bool)
    table = np.array([default if value is _NOT_A_CODE else value for value in looked_up] + [default], dtype=object)
    return table[positions], bad_code[positions]


_NOT_A_CODE = object()


def _code_key(text) -> str:
    """'1.0' and 1 read as '1' (spreadsheets write yes/no columns as numbers); others case-folded."""
    key = str(text).strip().casefold()
    if isinstance(text, float) and text.is_integer():
        return str(int(text))
    if key.endswith(".0") and key[:-2].isdigit():
        return key[:-2]
    return key


_ISO = r"^\d{4}-\d{2}-\d{2}"
_DMY_DOTTED = r"^(\d{1,2})\.(\d{1,2})\.(\d{4})(.*)$"
_SLASHED_PARTS = r"^(\d{1,2})/(\d{1,2})/(\d{4})(.*)$"


def _as_iso(parts: pd.DataFrame, *, day: int, month: int) -> pd.Series:
    """'YYYY-MM-DD<rest>' from extracted (a, b, year, rest) parts; a month of 13 stays invalid (never swapped)."""
    rest = parts[3].fillna("").str.strip()
    rest = rest.where(rest == "", "T" + rest)
    return parts[2] + "-" + parts[month].str.zfill(2) + "-" + parts[day].str.zfill(2) + rest


def parse_dates(column: pd.Series, date_order: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dates as datetime64[s]: (values, bad mask, ambiguous mask).

    ISO 8601 and day.month.year are read as written; day/month/year with slashes is ambiguous
    (01/02/2026) and read only when `date_order` (DMY or MDY) says which it is.
    """
    text = column.astype(object)
    missing = text.isna().to_numpy()
    stripped = text.str.strip()
    out = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[s]")
    ambiguous = np.zeros(len(text), dtype=bool)
    iso = stripped.where(stripped.str.match(_ISO).fillna(False).astype(bool))
    dotted = stripped.str.extract(_DMY_DOTTED)
    iso = iso.fillna(_as_iso(dotted, day=0, month=1))
    slashed = stripped.str.extract(_SLASHED_PARTS)
    if date_order:
        iso = iso.fillna(_as_iso(slashed, day=0 if date_order == "DMY" else 1, month=1 if date_order == "DMY" else 0))
    else:
        ambiguous = slashed[0].notna().to_numpy()
    given = iso.notna().to_numpy()
    if given.any():
        parsed = pd.to_datetime(iso[given], errors="coerce", utc=True, format="ISO8601")
        out[given] = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[s]")
    blank = stripped.fillna("").eq("").to_numpy(dtype=bool)  # only spaces: missing, as in a number column
    bad = np.isnat(out) & ~missing & ~ambiguous & ~blank
    return out, bad, ambiguous
