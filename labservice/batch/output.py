"""Batch results as CSV and JSON, written chunk by chunk without a per-cell Python loop.

The decision columns (urgency, findings and their words, flags, grades ...) take few distinct combinations, so
each combination is formatted once and rows only pick theirs; only the id columns, the values used, the summary
line, notes and errors are per-row text (the values formatted once per distinct value). Text cells of the CSV
that a spreadsheet would run as a formula (starting with = + - @, tab or carriage return, and not a number) are
prefixed with a quote, and cells holding a separator (`,` `;` tab, and the file's own delimiter) are quoted, so
no formula can start a cell after one. The CSV is written in the input's dialect (output_dialect.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np
import pandas as pd

from labservice.batch.output_dialect import BOM, OutputDialect, number_texts
from labservice.core.grading import GRADED_ANALYTES
from labservice.core.row_texts import TITLE_SEPARATOR

#: The engine's decisions that two readings of a censored value must agree on (labservice.batch.chunk).
DECISION_COLUMNS = ("urgency", "findings", "not_assessed", "aplastic_anemia", "skin_attribution")
#: The decisions as the output lists them: the finding codes, then the same findings in words, then the rest.
OUTPUT_DECISIONS = ("findings", "findings_text", "urgency", "not_assessed", "aplastic_anemia", "skin_attribution")
#: The summary line of a row that was not interpreted (its error column says why).
NOT_INTERPRETED = "Not interpreted: see the error column."
#: First characters that make a spreadsheet evaluate a cell (OWASP CSV injection).
_RISKY_FIRST = frozenset("=+-@\t\r")
_NUMBER_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
#: Cells quoted: a quote, the comma, a line break, and also `;` and tab, the separators a spreadsheet may split
#: on (a `;` locale, a pasted TSV): `x;=cmd()` unquoted would start a new cell with a formula (OWASP CSV
#: injection: neutralise the first character *and* quote cells that hold a separator).
_QUOTE_RE = re.compile(r'[",;\t\n\r]')
_JSON_UNSAFE_RE = re.compile(r'["\\\x00-\x1f\x7f]')


@dataclass(frozen=True)
class OutputLayout:
    id_headers: list[str]
    analytes: list[str]  # analytes with a value and a flag column, in the engine's order
    film: bool = False  # the file carries blood-film fields: a `film` column describes them (clinical-rules §10 v2)
    units: dict[str, str] = field(default_factory=dict)  # analyte -> canonical unit, for the value columns' headers

    def decision_columns(self) -> list[str]:
        return [*OUTPUT_DECISIONS, *(["film"] if self.film else [])]

    def flag_columns(self) -> list[str]:
        out = []
        for analyte in self.analytes:
            out.append(f"{analyte}_flag")
            if analyte in GRADED_ANALYTES:
                out.append(f"{analyte}_ctcae_grade")
        return out

    def value_columns(self) -> list[str]:
        """The values the engine used, one column per analyte, the canonical unit in the header: `platelets
        (10*9/L)`."""
        return [f"{a} ({self.units[a]})" if self.units.get(a) else a for a in self.analytes]

    def id_names(self) -> list[str]:
        """Id headers as output column names (renamed if they clash with an output column)."""
        taken = {
            "line",
            "summary",
            *self.value_columns(),
            *self.decision_columns(),
            *self.flag_columns(),
            "notes",
            "error",
        }
        return [f"input_{h}" if h in taken else h for h in self.id_headers]

    def columns(self) -> list[str]:
        return [
            *self.id_names(),
            "line",
            *self.value_columns(),
            "summary",
            *self.decision_columns(),
            *self.flag_columns(),
            "notes",
            "error",
        ]


@dataclass
class RowsOut:
    """One chunk of output rows, in input order."""

    lines: np.ndarray
    ids: list[np.ndarray]  # object arrays of raw id text (None = empty)
    #: the engine's columns (interpretation_frame) with `summary`, `findings_text` and `<analyte>_censored` (the
    #: text of a censored value, "<5"), missing for error rows
    decisions: pd.DataFrame
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


def _quote_characters(delimiter: str) -> str:
    """The characters that make a cell quoted (those of _QUOTE_RE, and the file's delimiter)."""
    return '",;\t\n\r' + ("" if delimiter in ",;\t" else delimiter)


def _quote_re(delimiter: str) -> re.Pattern[str]:
    """What makes a cell quoted: _QUOTE_RE, and the file's delimiter when it is another (`|`)."""
    return _QUOTE_RE if delimiter in ",;\t" else re.compile(r'[",;\t\n\r' + re.escape(delimiter) + "]")


def csv_text(values: np.ndarray, delimiter: str = ",") -> np.ndarray:
    """Object array of cell text: empty for missing, formula-neutralised, quoted where needed (a separator, the
    file's `delimiter`, a quote or a line break).

    The whole column is scanned at once (a join and a few substring searches, in C); the cells to quote are found
    and quoted column-wise (_quote), and only the rare cells to neutralise are handled one by one.
    """
    values = np.asarray(values, dtype=object)
    present = np.asarray(values != None, dtype=bool)  # noqa: E711 (elementwise: a cheap first look)
    if np.count_nonzero(present) * 2 < len(values):  # mostly empty (notes, errors): each cell stands alone
        given = given_mask(values)
        out = np.full(len(values), "", dtype=object)
        if given.any():
            out[given] = csv_text(values[given], delimiter)
        return out
    quote_re = _quote_re(delimiter)
    cells, given = _cell_texts(values)
    out = np.array(cells, dtype=object) if cells else np.zeros(0, dtype=object)
    if not given.any():
        return out
    joined = "\x1f".join(cells)
    # `in` finds one character at memory speed (a regular expression's character class, or two characters, are
    # several times slower): the separator and a risky character are looked for only where that character occurs
    if cells[0][:1] in _RISKY_FIRST or any(first in joined and "\x1f" + first in joined for first in _RISKY_FIRST):
        for row in (i for i, c in enumerate(cells) if c[:1] in _RISKY_FIRST):
            if not _NUMBER_RE.match(cells[row]):
                out[row] = "'" + cells[row]
    if any(character in joined for character in _quote_characters(delimiter)):
        _quote(out, quote_re, '"' in joined)
    return out


def _quote(cells: np.ndarray, quote_re: re.Pattern[str], has_quotes: bool) -> None:
    """Quote, in place, the cells that hold a quote, a separator or a line break (their quotes doubled): the
    pattern is tried on every cell by map (in C), and the cells found are quoted by numpy (one pass each)."""
    found = np.fromiter(map(bool, map(quote_re.search, cells.tolist())), dtype=bool, count=len(cells))
    rows = np.flatnonzero(found)
    chosen = cells[rows]
    if has_quotes:
        chosen = np.array([text.replace('"', '""') for text in chosen.tolist()], dtype=object)
    cells[rows] = '"' + chosen + '"'


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


def summaries(rows: RowsOut) -> np.ndarray:
    """The summary line of each row; rows not interpreted say so (their error column says why)."""
    summary = rows.decisions.get("summary")
    out = np.full(len(rows.lines), NOT_INTERPRETED, dtype=object)
    if summary is not None:
        values = summary.to_numpy(dtype=object)
        given = given_mask(values)
        out[given] = values[given]
    return out


def _values_used(rows: RowsOut, analyte: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """An analyte's values as the engine used them (NaN where none) and the text of its censored cells (None)."""
    frame = rows.decisions
    values = (
        frame[f"{analyte}_value"].to_numpy(dtype=np.float64, na_value=np.nan) if f"{analyte}_value" in frame else None
    )
    censored = frame[f"{analyte}_censored"].to_numpy(dtype=object) if f"{analyte}_censored" in frame else None
    return values, censored


def _combination_texts(combos: list[list], delimiter: str) -> np.ndarray:
    """Each combination's cells as CSV text joined by the delimiter: one csv_text per column, over the combinations."""
    if not combos or not combos[0]:
        return np.full(len(combos), "", dtype=object)
    columns = [csv_text(np.array(cells, dtype=object), delimiter).tolist() for cells in zip(*combos, strict=True)]
    return np.array(list(map(delimiter.join, zip(*columns, strict=True))), dtype=object)


class CsvFormat:
    """Rows as CSV text in the output dialect: the byte order mark if asked, the header once, then one line per
    row."""

    def __init__(self, layout: OutputLayout, dialect: OutputDialect | None = None) -> None:
        self.layout = layout
        self.dialect = dialect or OutputDialect()
        self.names = [*layout.decision_columns(), *layout.flag_columns()]

    def opening(self) -> str:
        header = self.dialect.delimiter.join(
            csv_text(np.array(self.layout.columns(), dtype=object), self.dialect.delimiter)
        )
        return (BOM if self.dialect.bom else "") + header + "\n"

    def closing(self, wrote_rows: bool) -> str:
        return ""

    def separator(self) -> str:
        return ""

    def rows(self, rows: RowsOut) -> str:
        if len(rows.lines) == 0:
            return ""
        delimiter, decimal = self.dialect.delimiter, self.dialect.decimal
        combo, combos = _combinations(rows.decisions, self.names)
        texts = _combination_texts(combos, delimiter)
        columns = [csv_text(column, delimiter).tolist() for column in rows.ids]
        columns.append(_line_text(rows.lines))
        for analyte in self.layout.analytes:
            values, censored = _values_used(rows, analyte)
            if values is None:
                columns.append([""] * len(rows.lines))
                continue
            cells = number_texts(values, decimal)
            if censored is not None:
                for row in np.flatnonzero(given_mask(censored)).tolist():
                    cells[row] = str(censored[row]).replace(".", decimal)
            columns.append(cells)
        columns += [
            csv_text(summaries(rows), delimiter).tolist(),
            texts[combo].tolist(),
            csv_text(rows.notes, delimiter).tolist(),
            csv_text(rows.errors, delimiter).tolist(),
        ]
        return "\n".join(map(delimiter.join, zip(*columns, strict=True))) + "\n"


def _json_fragment(names: list[str], values: list) -> str:
    body: dict[str, object] = {}
    flags: dict[str, object] = {}
    grades: dict[str, object] = {}
    for name, value in zip(names, values, strict=True):
        if name in ("findings", "not_assessed"):
            body[name] = None if value is None else [code for code in str(value).split(";") if code]
        elif name == "findings_text":
            body[name] = None if value is None else [title for title in str(value).split(TITLE_SEPARATOR) if title]
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
    """A JSON array with one object per row: line, ids, the values used, the summary, decisions, notes, error."""

    def __init__(self, layout: OutputLayout, dialect: OutputDialect | None = None) -> None:
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
        values = np.full(n, "", dtype=object)
        for position, analyte in enumerate(self.layout.analytes):
            used, censored = _values_used(rows, analyte)
            cells = (
                np.asarray(number_texts(used, "."), dtype=object) if used is not None else np.full(n, "", dtype=object)
            )
            cells[cells == ""] = "null"
            if censored is not None:
                given = given_mask(censored)
                cells[given] = json_text(censored[given])
            values = values + (',"' if position else '"') + analyte + '":' + cells
        out = '{"line":' + np.array(_line_text(rows.lines), dtype=object) + ',"ids":{' + ids + "}"
        out = out + ',"values":{' + values + '},"summary":' + json_text(summaries(rows)) + "," + texts[combo]
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
