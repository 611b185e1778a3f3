"""One chunk of parsed rows through the engine: censored values, notes, errors, and counts for the summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from labservice.adapters.csv_input.rows import ParsedChunk
from labservice.batch.output import DECISION_COLUMNS, RowsOut
from labservice.batch.summary import BatchSummary
from labservice.core.columns_out import interpretation_frame
from labservice.core.interpret import InterpretationTable, interpret_cbc_table
from labservice.core.row_texts import findings_text, summary_lines
from labservice.core.ruleset import Ruleset


@dataclass(frozen=True)
class Interpreted:
    """The engine's result for the rows of a chunk that were valid when it ran: row j of `result` is the chunk's
    row `rows[j]` (sorted); None when no row was valid. A censored value is read just beyond its bound, as for the
    output (see _censored_values)."""

    result: InterpretationTable | None
    rows: np.ndarray


#: Keeps the interpreted rows that have a patient id: (chunk, the engine's result for its rows, its errors, with
#: the censored values that span a threshold) -> how many were new. The rows kept are rendered from that result:
#: a CBC of a batch goes through the engine once (and once more at the other end of a censored value).
KeepRows = Callable[[ParsedChunk, Interpreted, np.ndarray], int]


class StagedKeep:
    """A KeepRows in two stages, so a batch job can overlap them (labservice.batch.runner): `prepare(parsed,
    interpreted, errors)` renders what a chunk keeps from the engine's result (pure: it may run in another
    process, and returns something picklable), `store(parsed, prepared)` stores it and returns how many rows were
    new (in the job's process, chunk after chunk in file order: a chunk's history includes the chunks before it).
    Called as a KeepRows, it runs both at once."""

    def __init__(
        self, prepare: Callable[[ParsedChunk, Interpreted, np.ndarray], Any], store: Callable[[ParsedChunk, Any], int]
    ) -> None:
        self.prepare = prepare
        self.store = store

    def __call__(self, parsed: ParsedChunk, interpreted: Interpreted, errors: np.ndarray) -> int:
        return self.store(parsed, self.prepare(parsed, interpreted, errors))

    def storing_with(self, store: Callable[[ParsedChunk, Any, Callable[[ParsedChunk, Any], int]], int]) -> StagedKeep:
        """The same preparation, stored by `store(parsed, prepared, this keep's store)`."""
        inner = self.store
        return StagedKeep(self.prepare, lambda parsed, prepared: store(parsed, prepared, inner))


#: Rejected rows quoted in the summary (all of them are in the output's error column).
FIRST_ERRORS = 10
#: Analytes the engine derives when their inputs are present (clinical-rules §1).
DERIVABLE = {
    "neutrophils": ("wbc", "neutrophils_percent"),
    "lymphocytes": ("wbc", "lymphocytes_percent"),
    "reticulocytes": ("reticulocytes_percent", "rbc"),
}


def append_note(notes: np.ndarray, mask: np.ndarray, text) -> None:
    """Add `text` (scalar or per-row array) to the notes of the rows in `mask`."""
    if not mask.any():
        return
    texts = np.broadcast_to(np.asarray(text, dtype=object), notes.shape)
    empty = notes == None  # noqa: E711 (elementwise; notes hold None or text)
    notes[mask & empty] = texts[mask & empty]
    both = mask & ~empty
    if both.any():
        notes[both] = notes[both] + "; " + texts[both]


def _censored_values(parsed: ParsedChunk, rs: Ruleset, table: dict[str, np.ndarray]):
    """Put each censored cell at its bound (primary run); return the other end per analyte."""
    other_end: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    count = np.zeros(parsed.n, dtype=np.int64)
    for analyte, (op, bound) in parsed.censored.items():
        cells = op != 0
        if not cells.any():
            continue
        info = rs.analytes[analyte]
        low_end = info.plausible_min if info.min_op == ">=" else np.nextafter(info.plausible_min, np.inf)
        high_end = info.plausible_max if info.max_op == "<=" else np.nextafter(info.plausible_max, -np.inf)
        near = np.where(op < 0, np.nextafter(bound, -np.inf), np.nextafter(bound, np.inf))
        column = table[analyte].copy()
        column[cells] = near[cells]
        table[analyte] = column
        other_end[analyte] = (cells, np.where(op < 0, low_end, high_end))
        count += cells
    return other_end, count


def _check_censored(parsed, rs, table, frame, other_end, rows, errors, notes) -> np.ndarray:
    """Rows whose interpretation changes between the two ends of a censored value become errors.

    `frame` holds the engine's columns for the chunk's valid rows (its index: those rows, ascending)."""
    subset = {name: column[rows] for name, column in table.items()}
    for analyte, (cells, end) in other_end.items():
        column = subset[analyte].copy()
        mask = cells[rows]
        column[mask] = end[rows][mask]
        subset[analyte] = column
    other = interpretation_frame(interpret_cbc_table(subset, ruleset=rs))
    names = [c for c in frame.columns if c in DECISION_COLUMNS or c.endswith(("_flag", "_ctcae_grade"))]
    primary = frame.iloc[np.searchsorted(frame.index.to_numpy(), rows)]  # the censored rows, by position
    same = np.ones(len(rows), dtype=bool)
    for name in names:
        a = _as_text(primary[name])
        b = _as_text(other[name]) if name in other else np.full(len(rows), "", dtype=object)
        same &= a == b
    for position, row in enumerate(rows):
        for analyte, (cells, _) in other_end.items():
            if not cells[row]:
                continue
            op, bound = parsed.censored[analyte][0][row], parsed.censored[analyte][1][row]
            info = rs.analytes[analyte]
            shown = f"{info.label} {'<' if op < 0 else '>'}{bound:g} {info.canonical_unit}"
            span = "below" if op < 0 else "above"
            column = parsed.censored_columns.get(analyte)
            where = f"line {int(parsed.lines[row])}" + (f", column {column}" if column else "")
            if same[position]:
                notes[row] = _joined(
                    notes[row], f"{shown} is censored: every value {span} {bound:g} gives this interpretation"
                )
            else:
                errors[row] = (
                    f"{where}: censored {shown} spans a decision threshold "
                    f"(values {span} {bound:g} are interpreted differently); not interpreted"
                )
    return rows[~same]


def _as_text(column: pd.Series) -> np.ndarray:
    """Cells as text with missing as "" (pandas' own text of a missing cell is NaN, which never equals itself)."""
    values = column.astype(object)
    return values.where(values.notna(), "").astype(str).to_numpy(dtype=object)


def _joined(first, second: str) -> str:
    return second if first is None or first != first else f"{first}; {second}"


def interpret_chunk(
    parsed: ParsedChunk,
    rs: Ruleset,
    summary: BatchSummary,
    duplicate_of: np.ndarray | None = None,
    keep_rows: KeepRows | None = None,
    decimal: str = ".",
) -> RowsOut:
    """Interpret the valid rows of a chunk; return every row (and unreadable line) in line order.

    `duplicate_of` holds, per row, the line of an earlier row with the same ids (0 for none). The summary line
    writes numbers with `decimal` as the decimal mark (the output's dialect).
    """
    n = parsed.n
    errors = parsed.errors.copy()
    notes = parsed.notes.copy()
    table = dict(parsed.table)
    other_end, censored_count = _censored_values(parsed, rs, table)
    for row in np.flatnonzero(censored_count > 1):
        errors[row] = _joined(
            errors[row], f"line {int(parsed.lines[row])}: more than one censored value (< or >) in this row"
        )
    if duplicate_of is not None:
        repeat = duplicate_of > 0
        texts = np.full(n, None, dtype=object)
        texts[repeat] = [f"duplicate of line {line}" for line in duplicate_of[repeat].tolist()]
        append_note(notes, repeat, texts)
    valid_rows = np.flatnonzero(errors == None)  # noqa: E711 (elementwise; errors hold None or text)
    result, frame = _interpret_rows(table, valid_rows, rs)
    kept = np.ones(valid_rows.size, dtype=bool)  # per row of frame: still interpreted (not rejected below)
    censored_rows = valid_rows[censored_count[valid_rows] == 1]
    if censored_rows.size:
        rejected = _check_censored(parsed, rs, table, frame, other_end, censored_rows, errors, notes)
        summary.censored_interpreted += int(censored_rows.size - rejected.size)
        kept[np.searchsorted(valid_rows, rejected)] = False
    if keep_rows is not None:
        summary.stored += keep_rows(parsed, Interpreted(result, valid_rows), errors)
    if result is not None:
        _add_texts(frame, result, parsed, valid_rows, decimal)
    for analyte in DERIVABLE:
        name = f"{analyte}_derived"
        if name in frame:
            derived = np.zeros(n, dtype=bool)
            derived[valid_rows[kept & frame[name].to_numpy(dtype=bool)]] = True
            append_note(notes, derived, f"{analyte} derived from a percentage (not measured)")
        name = f"{analyte}_imprecise"
        if name in frame:  # clinical-rules §1 v2: a count derived from a WBC below 1.0
            imprecise = np.zeros(n, dtype=bool)
            imprecise[valid_rows[kept & frame[name].to_numpy(dtype=bool)]] = True
            append_note(
                notes,
                imprecise,
                f"{analyte} imprecise: derived from a WBC below {rs.value('derived_count_imprecise_wbc'):g}, "
                "it rests on an automated differential of very few cells",
            )
    _count(summary, frame if kept.all() else frame[kept], errors)
    position = np.full(n, -1, dtype=np.int64)  # per chunk row: its row in frame, -1 when not interpreted
    position[valid_rows[kept]] = np.flatnonzero(kept)
    return _with_bad_lines(parsed, frame, position, notes, errors, summary)


def _censored_texts(parsed: ParsedChunk, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Per analyte with a censored cell among `rows`: its text ("<5", in canonical units) per row, else None."""
    out: dict[str, np.ndarray] = {}
    for analyte, (op, bound) in parsed.censored.items():
        cells = np.flatnonzero(op[rows] != 0)
        if cells.size == 0:
            continue
        texts = np.full(rows.size, None, dtype=object)
        texts[cells] = [
            f"{'<' if sign < 0 else '>'}{value:g}"
            for sign, value in zip(op[rows][cells], bound[rows][cells], strict=True)
        ]
        out[analyte] = texts
    return out


def _add_texts(
    frame: pd.DataFrame, result: InterpretationTable, parsed: ParsedChunk, rows: np.ndarray, decimal: str
) -> None:
    """The output's texts for the interpreted rows (frame is indexed by them; a censored row rejected since is
    dropped): the summary line, the findings in words and the text of each censored value."""
    censored = _censored_texts(parsed, rows)
    texts: dict[str, object] = {
        "summary": summary_lines(result, decimal, censored),
        "findings_text": findings_text(result),
    }
    texts.update({f"{analyte}_censored": cells for analyte, cells in censored.items()})
    kept = slice(None) if len(frame) == rows.size else np.searchsorted(rows, frame.index.to_numpy())
    for name, column in texts.items():
        cells = column[kept]  # type: ignore[index]
        if isinstance(cells, np.ndarray):  # text stays object: pandas would make it Arrow text, which the output undoes
            cells = pd.Series(cells, index=frame.index, dtype=object, copy=False)
        frame[name] = cells


def _interpret_rows(
    table: dict[str, np.ndarray], rows: np.ndarray, rs: Ruleset
) -> tuple[InterpretationTable | None, pd.DataFrame]:
    """The engine's result for `rows` of the table (None for no row) and its output columns, indexed by row."""
    if rows.size == 0:
        return None, pd.DataFrame(index=pd.Index([], dtype=np.int64))
    subset = table if rows.size == len(next(iter(table.values()))) else {k: v[rows] for k, v in table.items()}
    result = interpret_cbc_table(subset, ruleset=rs)
    frame = interpretation_frame(result)
    frame.index = rows
    return result, frame


def _count(summary: BatchSummary, frame: pd.DataFrame, errors: np.ndarray) -> None:
    summary.interpreted += len(frame)
    summary.rejected += int(np.count_nonzero(errors != None))  # noqa: E711
    if len(frame):
        summary.count_urgency(Counter(frame["urgency"].value_counts().to_dict()))
        codes: Counter = Counter()
        for pattern, count in frame["findings"].value_counts().items():
            for code in str(pattern).split(";"):
                if code:
                    codes[code] += int(count)
        summary.count_findings(codes)


def _with_bad_lines(parsed: ParsedChunk, frame: pd.DataFrame, position: np.ndarray, notes, errors, summary) -> RowsOut:
    """The chunk's rows and its unreadable lines in line order, each of those with the id cells its line showed;
    the summary quotes the first rejected rows in that order. `position` maps a chunk row to its row in `frame`
    (-1: not interpreted, its decisions are empty)."""
    summary.rows_out += parsed.n + len(parsed.bad_lines)
    if not parsed.bad_lines:
        rows = RowsOut(parsed.lines, parsed.ids, _rows_at(frame, position), notes, errors)
    else:
        k = len(parsed.bad_lines)
        summary.rejected += k
        bad_text = np.array([f"line {line}: {reason}" for line, reason in parsed.bad_lines], dtype=object)
        lines = np.concatenate([parsed.lines, np.array([line for line, _ in parsed.bad_lines], dtype=np.int64)])
        order = np.argsort(lines, kind="stable")
        empty = np.full(k, None, dtype=object)
        ids = [
            np.concatenate([column, _bad_line_ids(parsed, position)])[order]
            for position, column in enumerate(parsed.ids)
        ]
        rows = RowsOut(
            lines[order],
            ids,
            _rows_at(frame, np.concatenate([position, np.full(k, -1, dtype=np.int64)])[order]),
            np.concatenate([notes, empty])[order],
            np.concatenate([errors, bad_text])[order],
        )
    wanted = max(0, FIRST_ERRORS - len(summary.first_errors))
    if wanted:
        rejected = np.flatnonzero(rows.errors != None)[:wanted]  # noqa: E711 (elementwise; None or text)
        summary.first_errors.extend(str(text) for text in rows.errors[rejected].tolist())
    return rows


def _rows_at(frame: pd.DataFrame, position: np.ndarray) -> pd.DataFrame:
    """frame's rows at `position` (-1: a row of missing values), indexed 0..n-1: what reindexing the frame by
    row labels gives, taken column by column at once (pandas' reindex hashes the labels, and did so twice)."""
    index = pd.RangeIndex(len(position))
    columns: dict[str, Any] = {}
    for name in frame.columns:
        cells = pd.api.extensions.take(frame[name].array, position, allow_fill=True)
        if frame[name].dtype == object:  # text stays object (pandas would make it Arrow text, which the output undoes)
            columns[name] = pd.Series(np.asarray(cells, dtype=object), index=index, dtype=object, copy=False)
        else:
            columns[name] = cells
    return pd.DataFrame(columns, index=index, columns=frame.columns, copy=False)


def _bad_line_ids(parsed: ParsedChunk, position: int) -> np.ndarray:
    """The id cells (the `position`-th id column) of the chunk's unreadable lines, None where the line showed
    none (a quoted field never closed, or a line the reader could not split)."""
    cells = np.full(len(parsed.bad_lines), None, dtype=object)
    for row, (line, _) in enumerate(parsed.bad_lines):
        shown = parsed.bad_ids.get(line)
        if shown is not None:
            cells[row] = shown[position]
    return cells
