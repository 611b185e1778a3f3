"""Batch results as CSV and JSON, written chunk by chunk without a per-cell Python loop.

The decision columns (urgency, findings, flags, grades ...) take few distinct combinations, so
each combination is formatted once and rows only pick theirs; only the id columns, notes and
errors are per-row text. Text cells of the CSV that a spreadsheet would run as a formula
(starting with = + - @, tab or carriage return, and not a number) are prefixed with a quote, and cells
holding a separator (`,` `;` tab) are quoted, so no formula can start a cell after one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import pandas as pd

from labservice.core.grading import GRADED_ANALYTES

DECISION_COLUMNS = ("urgency", "findings", "not_assessed", "aplastic_anemia", "skin_attribution")
#: First characters that make a spreadsheet evaluate a cell (OWASP CSV injection).
_RISKY_FIRST = frozenset("=+-@\t\r")
_RISKY_START_RE = re.compile(r"\x1f[=+\-@\t\r]")  # a risky first character, found in a joined column
_NUMBER_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
#: Cells quoted: a quote, the comma, a line break, and also `;` and tab, the separators a spreadsheet may split
#: on (a `;` locale, a pasted TSV): `x;=cmd()` unquoted would start a new cell with a formula (OWASP CSV
#: injection: neutralise the first character *and* quote cells that hold a separator).
_QUOTED = '",;\t\n\r'
_QUOTE_RE = re.compile(f"[{_QUOTED}]")
_JSON_UNSAFE_RE = re.compile(r'["\\\x00-\x1f\x7f]')


@dataclass(frozen=True)
class OutputLayout:
    id_headers: list[str]
    analytes: list[str]  # analytes with a flag column, in the engine's order
    film: bool = False  # the file carries blood-film fields: a `film` column describes them (clinical-rules §10 v2)

    def decision_columns(self) -> list[str]:
        return [*DECISION_COLUMNS, *(["film"] if self.film else [])]

    def flag_columns(self) -> list[str]:
        out = []
        for analyte in self.analytes:
            out.append(f"{analyte}_flag")
            if analyte in GRADED_ANALYTES:
                out.append(f"{analyte}_ctcae_grade")
        return out

    def id_names(self) -> list[str]:
        """Id headers as output column names (renamed if they clash with an output column)."""
        taken = {"line", *self.decision_columns(), *self.flag_columns(), "notes", "error"}
        return [f"input_{h}" if h in taken else h for h in self.id_headers]

    def columns(self) -> list[str]:
        return [*self.id_names(), "line", *self.decision_columns(), *self.flag_columns(), "notes", "error"]


@dataclass
class RowsOut:
    """One chunk of output rows, in input order."""

    lines: np.ndarray
    ids: list[np.ndarray]  # object arrays of raw id text (None = empty)
    decisions: pd.DataFrame  # the engine's columns (interpretation_frame), missing for error rows
    notes: np.ndarray
    errors: np.ndarray


def _codes(column: pd.Series | None, n: int) -> tuple[np.ndarray, list]:
    """Integer codes (-1 = empty) and the value of each code, for one decision column."""
    if column is None:
        return np.full(n, -1, dtype=np.int64), []
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy(dtype=np.int64), list(column.cat.categories)
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(values) | (values <= 0)  # a grade of 0 (or none) is written empty
    codes = np.where(missing, 0, values).astype(np.int64)
    top = int(codes.max()) if n else 0
    codes[missing] = -1
    return codes, list(range(top + 1))


def _combinations(frame: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, list[list]]:
    """(combination index per row, the values of each combination per column)."""
    n = len(frame)
    key = np.zeros(n, dtype=np.int64)
    per_column = []
    for name in names:
        codes, values = _codes(frame.get(name), n)
        per_column.append((codes, values))
        key = key * (len(values) + 1) + (codes + 1)
        if n and key.max() > 2**40:
            key = pd.factorize(key)[0].astype(np.int64)
    combo, first = _first_of_each(key)
    matrix = np.stack([codes[first] for codes, _ in per_column], axis=1).tolist() if per_column else [[]] * len(first)
    lookups = [values for _, values in per_column]
    combos = [[lookups[i][c] if c >= 0 else None for i, c in enumerate(row)] for row in matrix]
    return combo, combos


def _first_of_each(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a number per distinct key, in order of first appearance; the row where each first appears): a hash
    table, not a sort."""
    combo, _ = pd.factorize(key)
    combo = combo.astype(np.int64, copy=False)
    if not len(combo):
        return combo, np.zeros(0, dtype=np.int64)
    # numbers are given in order of first appearance, so a number first appears where it exceeds all before it
    new = np.empty(len(combo), dtype=bool)
    new[0] = True
    new[1:] = combo[1:] > np.maximum.accumulate(combo)[:-1]
    return combo, np.flatnonzero(new)


def _combination_texts(frame: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """(combination index per row, the CSV text of each combination: its cells joined by commas).

    The cells are looked up per column for all combinations at once and joined in C (a chunk has thousands
    of combinations)."""
    n = len(frame)
    key = np.zeros(n, dtype=np.int64)
    per_column = []
    for name in names:
        codes, values = _codes(frame.get(name), n)
        per_column.append((codes, values))
        key = key * (len(values) + 1) + (codes + 1)
        if n and key.max() > 2**40:
            key = pd.factorize(key)[0].astype(np.int64)
    combo, first = _first_of_each(key)
    if not per_column:
        return combo, [""] * len(first)
    cells = [
        np.array([*map(str, values), ""], dtype=object)[codes[first]]  # code -1 (empty) picks the last: ""
        for codes, values in per_column
    ]
    return combo, list(map(",".join, np.stack(cells, axis=1).tolist()))


def given_mask(values: np.ndarray, types: set | None = None) -> np.ndarray:
    """True where an object cell holds a value (not None, NaN or NA); fast when only None can be missing."""
    types = set(map(type, values)) if types is None else types
    if types <= {str}:
        return np.ones(len(values), dtype=bool)
    if types <= {str, type(None)}:
        return np.asarray(values != None, dtype=bool)  # noqa: E711 (elementwise)
    return np.asarray(pd.notna(values), dtype=bool)


def _cell_texts(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Cells as text ("" for missing: None, NaN) and the mask of the cells that were given."""
    types = set(map(type, values))
    if types <= {str}:
        return values.tolist(), np.ones(len(values), dtype=bool)
    given = given_mask(values, types)
    texts = np.full(len(values), "", dtype=object)
    present = values[given]
    texts[given] = present if types - {type(None)} <= {str} else [str(v) for v in present.tolist()]
    return texts.tolist(), given


def _rows_of(positions: list[int], cells: list[str], separator_length: int) -> np.ndarray:
    """Row numbers of character offsets into separator.join(cells)."""
    lengths = np.fromiter(map(len, cells), dtype=np.int64, count=len(cells)) + separator_length
    return np.unique(np.searchsorted(np.cumsum(lengths), np.asarray(positions, dtype=np.int64), side="right"))


def csv_text(values: np.ndarray) -> np.ndarray:
    """Object array of cell text: empty for missing, formula-neutralised, quoted where needed (see csv_cells)."""
    cells = csv_cells(values)
    return np.array(cells, dtype=object) if cells else np.zeros(0, dtype=object)


def csv_cells(values: np.ndarray) -> list[str]:
    """Cell texts: empty for missing, formula-neutralised, quoted where needed.

    The whole column is scanned at once (a join and one regular-expression search, in C); only
    the rare cells that need quoting or neutralising are handled one by one, and in a column that is
    mostly empty (notes, errors) only the cells given.
    """
    values = np.asarray(values, dtype=object)
    cells = values.tolist()
    try:
        return _escaped(cells, "\x1f".join(cells))
    except TypeError:  # a missing cell (None, NaN) or a number
        pass
    given = given_mask(values)
    missing = np.flatnonzero(~given)
    if missing.size * 2 > len(cells):  # mostly empty (notes, errors): only the cells given
        present = [cell if type(cell) is str else str(cell) for cell in values[given].tolist()]
        out = np.full(len(cells), "", dtype=object)
        if present:
            out[given] = _escaped(present, "\x1f".join(present))
        return out.tolist()
    for row in missing.tolist():
        cells[row] = ""
    try:
        joined = "\x1f".join(cells)
    except TypeError:  # numbers
        cells = [cell if type(cell) is str else str(cell) for cell in cells]
        joined = "\x1f".join(cells)
    return _escaped(cells, joined)


def _escaped(cells: list[str], joined: str) -> list[str]:
    """csv_cells of texts; `joined` is "\x1f".join(cells). Changes `cells` in place."""
    if cells and (_RISKY_START_RE.search(joined) or cells[0][:1] in _RISKY_FIRST):
        for row in (i for i, c in enumerate(cells) if c[:1] in _RISKY_FIRST):
            if not _NUMBER_RE.match(cells[row]):
                cells[row] = "'" + cells[row]
        joined = "\x1f".join(cells)  # a quote character may have been added in front of a quoted cell
    if any(character in joined for character in _QUOTED):  # faster than a search for a character class
        for row in _rows_of([m.start() for m in _QUOTE_RE.finditer(joined)], cells, 1).tolist():
            cells[row] = '"' + cells[row].replace('"', '""') + '"'
    return cells


def json_text(values: np.ndarray) -> np.ndarray:
    """Object array of JSON values: null for missing, strings escaped."""
    cells, given = _cell_texts(np.asarray(values, dtype=object))
    out = np.full(len(cells), "null", dtype=object)
    if not given.any():
        return out
    quoted = '"' + np.array(cells, dtype=object) + '"'
    joined = " ".join(cells)  # a separator the pattern cannot match (cells may hold \x1f themselves)
    if _JSON_UNSAFE_RE.search(joined):
        for row in range(len(cells)):
            if _JSON_UNSAFE_RE.search(cells[row]):
                quoted[row] = json.dumps(cells[row], ensure_ascii=False)
    out[given] = quoted[given]
    return out


def _line_text(lines: np.ndarray) -> list[str]:
    return list(map(str, lines.tolist()))


class CsvFormat:
    """Rows as CSV text: the header once, then one line per row."""

    def __init__(self, layout: OutputLayout) -> None:
        self.layout = layout
        self.names = [*layout.decision_columns(), *layout.flag_columns()]

    def opening(self) -> str:
        return ",".join(csv_text(np.array(self.layout.columns(), dtype=object))) + "\n"

    def closing(self, wrote_rows: bool) -> str:
        return ""

    def separator(self) -> str:
        return ""

    def rows(self, rows: RowsOut) -> str:
        if len(rows.lines) == 0:
            return ""
        combo, texts = _combination_texts(rows.decisions, self.names)
        columns = [csv_cells(column) for column in rows.ids]
        columns += [_line_text(rows.lines), self._tails(combo, texts, rows.notes, rows.errors)]
        return "\n".join(map(",".join, zip(*columns, strict=True))) + "\n"

    @staticmethod
    def _tails(combo: np.ndarray, texts: list[str], notes: np.ndarray, errors: np.ndarray) -> list[str]:
        """The decision cells, notes and error of each row as one text; most rows have neither a note nor an
        error, so their text is their combination's, ended by two empty cells."""
        tails = np.array([text + ",," for text in texts], dtype=object)[combo]
        either = np.flatnonzero(given_mask(notes) | given_mask(errors))
        if either.size:
            cells = [
                ",".join(triple)
                for triple in zip(
                    np.array(texts, dtype=object)[combo[either]].tolist(),
                    csv_cells(notes[either]),
                    csv_cells(errors[either]),
                    strict=True,
                )
            ]
            tails[either] = cells
        return tails.tolist()


def _json_fragment(names: list[str], values: list) -> str:
    body: dict[str, object] = {}
    flags: dict[str, object] = {}
    grades: dict[str, object] = {}
    for name, value in zip(names, values, strict=True):
        if name in ("findings", "not_assessed"):
            body[name] = None if value is None else [code for code in str(value).split(";") if code]
        elif name.endswith("_flag"):
            flags[name[: -len("_flag")]] = value
        elif name.endswith("_ctcae_grade"):
            grades[name[: -len("_ctcae_grade")]] = value
        else:
            body[name] = value
    body["flags"] = flags
    body["ctcae_grades"] = grades
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))[1:-1]


class JsonFormat:
    """A JSON array with one object per row: line, ids, decisions, notes, error."""

    def __init__(self, layout: OutputLayout) -> None:
        self.layout = layout
        self.names = [*layout.decision_columns(), *layout.flag_columns()]
        self.id_keys = [json.dumps(name, ensure_ascii=False) for name in layout.id_headers]

    def opening(self) -> str:
        return "[\n"

    def closing(self, wrote_rows: bool) -> str:
        return "\n]\n" if wrote_rows else "]\n"

    def separator(self) -> str:
        return ",\n"

    def rows(self, rows: RowsOut) -> str:
        n = len(rows.lines)
        if n == 0:
            return ""
        combo, combos = _combinations(rows.decisions, self.names)
        texts = np.array([_json_fragment(self.names, values) for values in combos], dtype=object)
        ids = np.full(n, "", dtype=object)
        for position, (key, column) in enumerate(zip(self.id_keys, rows.ids, strict=True)):
            ids = ids + ("," if position else "") + key + ":" + json_text(column)
        out = '{"line":' + np.array(_line_text(rows.lines), dtype=object) + ',"ids":{' + ids + "}," + texts[combo]
        out = out + ',"notes":' + json_text(rows.notes) + ',"error":' + json_text(rows.errors) + "}"
        return ",\n".join(out.tolist())


class Sink:
    """Writes the texts a format made, in order, to a handle."""

    def __init__(self, handle: TextIO, text_format: CsvFormat | JsonFormat) -> None:
        self.handle, self.format = handle, text_format
        self.wrote_rows = False
        handle.write(text_format.opening())

    def write(self, text: str) -> None:
        if not text:
            return
        self.handle.write((self.format.separator() if self.wrote_rows else "") + text)
        self.wrote_rows = True

    def close(self) -> None:
        self.handle.write(self.format.closing(self.wrote_rows))
        self.handle.flush()
