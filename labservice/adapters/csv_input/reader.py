"""Records of a CSV file in chunks, each with its physical line number; bad lines kept, not dropped.

pandas' C parser reads the used columns only; lines with too many fields are skipped by it and
reported through a warning that names the line, which is turned into an error record at its
place. Blank lines are dropped and counted. Line numbers stay exact across blank lines, skipped
lines and quoted fields that contain line breaks (in the columns that are read).
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np
import pandas as pd
from pandas.errors import ParserError, ParserWarning

from labservice.adapters.csv_input.cells import MISSING_TEXTS
from labservice.adapters.csv_input.dialect import Dialect

_SKIPPING = re.compile(r"Skipping line (\d+):")


def _text_dtype() -> object:
    """How the parser keeps text columns: as Arrow strings when pyarrow is installed (the parser then makes no
    Python object per cell: 0.24 s instead of 0.68 s for 10^6 wide rows, and a chunk pickles as a few buffers),
    else as objects. RecordChunk.frame makes them objects, as the rest of the code expects."""
    try:
        import pyarrow
    except ImportError:
        return object
    return pd.ArrowDtype(pyarrow.string())


TEXT_DTYPE: Any = _text_dtype()


class RecordChunk:
    """A chunk of records: `frame` has columns named by column index and one row per non-blank record.

    The reader can hand over the parser's frame as read, with the rows to keep and the number columns whose
    missing texts are still to be made NaN: `frame` is then made on first use, in the process that parses
    the chunk (a batch worker), not in the one that reads the file."""

    def __init__(
        self,
        frame: pd.DataFrame,
        lines: np.ndarray,
        bad_lines: list[tuple[int, str]],
        blank_lines: int,
        bad_cells: dict[int, list] | None = None,
        *,
        keep: np.ndarray | None = None,
        numeric: set[int] | None = None,
    ) -> None:
        self.lines = lines  # int64 physical line of each row of frame
        self.bad_lines = bad_lines  # (line, reason) of unreadable lines placed within this chunk
        self.blank_lines = blank_lines
        #: line -> the cells (by column index, the header's width) of an unreadable line that showed them: a line
        #: with more fields than the header keeps its id cells in the output
        self.bad_cells: dict[int, list] = bad_cells if bad_cells is not None else {}
        self._read: pd.DataFrame | None = frame
        self._keep, self._numeric = keep, numeric
        self._frame: pd.DataFrame | None = frame if keep is None and not numeric else None

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            assert self._read is not None
            frame = _missing_as_na(_text_as_objects(self._read), self._numeric or set())
            self._frame = frame if self._keep is None or self._keep.all() else frame[self._keep]
            self._read = self._keep = None
        return self._frame

    @frame.setter
    def frame(self, frame: pd.DataFrame) -> None:
        self._frame, self._read, self._keep = frame, None, None

    def id_keys(self, columns: list[int]) -> list[np.ndarray]:
        """What tells rows apart by their cells in `columns` (batch.duplicates.DuplicateCheck): the cells of each
        column; or, while those columns are Arrow text, one text per row that is equal exactly when all of its cells
        are (None when none is given), so a row costs one Python object instead of one per column."""
        if TEXT_DTYPE is object or not columns:  # (the same kind of key for every chunk of a file)
            return [self.cells(i) for i in columns]
        import pyarrow

        read = self._read
        if self._frame is None and read is not None and all(isinstance(read[i].dtype, pd.ArrowDtype) for i in columns):
            keys = joined_texts([pyarrow.array(read[i].array) for i in columns])
            return [keys if self._keep is None else keys[self._keep]]
        cells = [pyarrow.array(self.cells(i), type=pyarrow.string(), from_pandas=True) for i in columns]
        return [joined_texts(cells)]  # a chunk read otherwise (a quote never closed: the csv module)

    def cells(self, column: int) -> np.ndarray:
        """The cells of one column as objects, one per row of frame (without making the frame)."""
        if self._frame is not None or self._read is None or self._keep is None:
            return self.frame[column].to_numpy(dtype=object)
        return self._read[column].to_numpy(dtype=object, na_value=np.nan)[self._keep]


def read_records(
    handle: IO[bytes],
    dialect: Dialect,
    numeric: set[int],
    chunk_rows: int,
    reopen: Callable[[], IO[bytes]] | None = None,
    quotes_read: Callable[[], int] | None = None,
    line_fields: Callable[[int], list[str] | None] | None = None,
    valid_utf8: bool = False,
) -> Iterator[RecordChunk]:
    """Yield chunks of records (see _records); the last one is checked for a quote never closed.

    `line_fields` gives the fields of a line pandas skipped (line_fields.py), so that line keeps its cells.
    `valid_utf8`: the handle gives valid UTF-8 only (HashingStream.replace_invalid_utf8), so the parser decodes
    strictly, its fast path; otherwise it replaces bytes the encoding does not allow by U+FFFD.

    With an odd number of quote characters in the file, a last record whose cells run over
    several lines is a quoted field that swallowed the rest of the file: it becomes a bad line.
    """
    previous = None
    records = _records(handle, dialect, numeric, chunk_rows, reopen, quotes_read, line_fields, valid_utf8)
    for chunk in records:
        if previous is not None:
            yield previous
            previous = None
        if quotes_read is not None and quotes_read() == 0:
            yield chunk  # no quote read yet: whatever follows, no cell of it runs over several lines
        else:
            previous = chunk  # held until the next one shows it is not the last
    if previous is None:
        return
    if quotes_read is not None and quotes_read() % 2 and len(previous.frame):
        last = previous.frame.iloc[-1]
        spans = [cell for cell in last.tolist() if isinstance(cell, str) and "\n" in cell]
        if spans:
            line = int(previous.lines[-1])
            end = line + sum(cell.count("\n") for cell in spans)
            previous.frame = previous.frame.iloc[:-1]
            previous.lines = previous.lines[:-1]
            previous.bad_lines = sorted(
                [
                    *previous.bad_lines,
                    (
                        line,
                        f"a quoted field opened on this line is never closed; lines {line} to {end} could not be read",
                    ),
                ]
            )
    yield previous


def _records(
    handle: IO[bytes],
    dialect: Dialect,
    numeric: set[int],
    chunk_rows: int,
    reopen: Callable[[], IO[bytes]] | None,
    quotes_read: Callable[[], int] | None,
    line_fields: Callable[[int], list[str] | None] | None = None,
    valid_utf8: bool = False,
) -> Iterator[RecordChunk]:
    """Yield chunks of records; columns are named by position, those in `numeric` read as numbers.

    Every column is read (usecols would stop the parser from noticing lines with too many fields).
    When the fast parser gives up (a quote that is never closed), `reopen` gives the file again
    from its start and the lines not yet yielded are read by the standard csv module instead.
    `quotes_read` counts the quote characters read so far: without one, no cell can hold a line
    break and the per-cell check is skipped.
    """
    width = len(dialect.header)
    indexes = list(range(width))
    failure: str | None = None
    try:
        reader = _fast_reader(handle, dialect, numeric, chunk_rows, "strict" if valid_utf8 else "replace")
    except ParserError as error:  # the parser tokenizes the first block at once: a quote never closed there
        reader, failure = iter(()), _failure_text(error)
    extra_newlines = 0
    first_line = dialect.header_lines + 1
    next_line = first_line  # the first line not yet yielded
    too_long_text = f"more fields than the header's {width}"
    # Lines with two or more extra fields are skipped by pandas with a warning naming the line;
    # skipped_virtual[j] = skipped line j minus j, so a record's line is its count plus the
    # skipped lines before it (searchsorted), and the skipped lines come back as bad lines.
    # Known limit: if such a skipped line also holds a quoted line break, the lines reported
    # after it are low by that many breaks (pandas gives no access to the skipped text).
    skipped_virtual: list[int] = []
    pending: list[tuple[int, str]] = []
    while True:
        frame: pd.DataFrame | None = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ParserWarning)
            try:
                frame = next(reader)
            except StopIteration:
                pass
            except ParserError as error:
                failure = _failure_text(error)
        for warning in caught:
            for number in _SKIPPING.findall(str(warning.message)):
                skipped_virtual.append(int(number) - len(skipped_virtual))
                pending.append((int(number), too_long_text))
        if frame is None:
            break
        # pandas numbers lines without the line breaks inside quoted cells ("parser lines"); the
        # physical line adds the breaks of the records before.
        record = frame.index.to_numpy(dtype=np.int64)
        parser_lines = first_line + record
        if skipped_virtual:
            parser_lines = parser_lines + np.searchsorted(
                np.asarray(skipped_virtual, dtype=np.int64), parser_lines, side="right"
            )
        newlines = _newlines_per_row(frame) if quotes_read is None or quotes_read() else None
        breaks_before = np.full(len(record), extra_newlines, dtype=np.int64)
        if newlines is not None:
            breaks_before += np.concatenate(([0], np.cumsum(newlines)[:-1])).astype(np.int64)
            extra_newlines += int(newlines.sum())
        lines = parser_lines + breaks_before
        if lines.size:
            next_line = int(lines[-1]) + 1 + (int(newlines[-1]) if newlines is not None else 0)
        next_parser_line = int(parser_lines[-1]) + 1 if parser_lines.size else 0
        too_long = frame[width].notna().to_numpy()
        bad = [(int(line), too_long_text) for line in lines[too_long]]
        cells: dict[int, list] = {}
        if too_long.any():  # rare: one line in a hundred or fewer
            shown = frame.take(np.flatnonzero(too_long)).to_numpy(dtype=object, na_value=np.nan)[:, :width]
            cells = {int(line): row.tolist() for line, row in zip(lines[too_long], shown, strict=True)}
        for skipped, reason in pending:
            if skipped < next_parser_line:
                at = int(np.searchsorted(parser_lines, skipped))
                bad.append((skipped + (int(breaks_before[at]) if at < len(lines) else extra_newlines), reason))
                cells.update(_skipped_cells(bad[-1][0], width, line_fields))
        pending = [item for item in pending if item[0] >= next_parser_line]
        frame = frame.drop(columns=width)
        blank = _blank_rows(frame, numeric) & ~too_long
        keep = ~(blank | too_long)
        # the frame is finished (missing texts, rows kept) where it is parsed: see RecordChunk
        yield RecordChunk(frame, lines[keep], sorted(bad), int(blank.sum()), cells, keep=keep, numeric=numeric)
    # Lines skipped after the last record (physical line: add every line break seen).
    pending = [(skipped + extra_newlines, reason) for skipped, reason in pending]
    tail_cells: dict[int, list] = {}
    for skipped, _ in sorted(pending):
        tail_cells.update(_skipped_cells(skipped, width, line_fields))
    if failure is not None:
        if reopen is None:
            pending.append((next_line, f"this line and every line after it could not be read ({failure})"))
        else:  # the tail is read again from next_line: it reports the skipped lines there itself
            pending = []
            yield _read_tail(reopen(), dialect, next_line, unclosed_quote="EOF inside string" in failure)
    if pending:
        yield RecordChunk(
            pd.DataFrame({i: pd.Series(dtype=object) for i in indexes}),
            np.zeros(0, dtype=np.int64),
            sorted(pending),
            0,
            tail_cells,
        )


def _skipped_cells(line: int, width: int, line_fields: Callable[[int], list[str] | None] | None) -> dict[int, list]:
    """{line: its first `width` cells} for a line pandas skipped, when `line_fields` can read it; else {}."""
    record = line_fields(line) if line_fields is not None else None
    if record is None:
        return {}
    return {line: [None if cell.strip() in MISSING_TEXTS else cell for cell in record[:width]]}


def _fast_reader(
    handle: IO[bytes], dialect: Dialect, numeric: set[int], chunk_rows: int, encoding_errors: str = "replace"
) -> Iterator[pd.DataFrame]:
    """pandas' C parser over the records after the header, in chunks (see _records)."""
    width = len(dialect.header)
    indexes = list(range(width))
    return pd.read_csv(
        handle,
        sep=dialect.delimiter,
        decimal=dialect.decimal,
        encoding=dialect.encoding,
        encoding_errors=encoding_errors,
        # The header is skipped (blank lines before it and its one record, however many lines it
        # spans); columns are named by position (duplicate or empty headers are fine), plus one
        # sentinel column. A line with more fields than the header fills the sentinel: with
        # index_col=False and on_bad_lines="warn", pandas truncates such a line to the sentinel
        # instead of failing, dropping it, or taking its first column as an index.
        header=None,
        names=[*indexes, width],
        index_col=False,
        on_bad_lines="warn",
        skiprows=dialect.leading_blank_lines + 1,
        # Only when the first record is wide (Dialect.wide_first_record): the header's columns and the sentinel,
        # so that record costs no column per field. The price: a later line whose first extra field is empty is
        # not skipped as too long (pandas warns only without usecols); one with a value there still is reported.
        usecols=[*indexes, width] if dialect.wide_first_record else None,
        dtype={i: TEXT_DTYPE for i in (*indexes, width) if i not in numeric},
        na_values=list(MISSING_TEXTS),
        keep_default_na=False,
        skip_blank_lines=False,
        chunksize=chunk_rows,
    )


def _failure_text(error: ParserError) -> str:
    return re.sub(r"^Error tokenizing data\. C error: | starting at row \d+", "", str(error))


def _read_tail(handle: IO[bytes], dialect: Dialect, from_line: int, unclosed_quote: bool) -> RecordChunk:
    """The records from `from_line` on, read with the csv module (slow, but it survives an unclosed quote).

    With `unclosed_quote`, the last record is the one whose quote runs to the end of the file.
    """
    width = len(dialect.header)
    text = io.TextIOWrapper(handle, encoding=dialect.encoding, errors="replace", newline="")
    reader = csv.reader(text, delimiter=dialect.delimiter)
    records: list[tuple[int, int, list[str]]] = []
    start = 1
    failed: str | None = None
    try:
        for record in reader:
            if start >= from_line:
                records.append((start, reader.line_num, record))
            start = reader.line_num + 1
    except csv.Error as error:  # a field beyond the csv module's limit (128 KiB), e.g. a quote never closed
        failed = str(error)
    bad: list[tuple[int, str]] = []
    if failed is not None:
        bad.append((max(start, from_line), f"this line and every line after it could not be read ({failed})"))
    elif unclosed_quote and records:
        first, last, _ = records.pop()
        bad.append(
            (first, f"a quoted field opened on this line is never closed; lines {first} to {last} could not be read")
        )
    rows: list[list[str | None]] = []
    lines: list[int] = []
    shown: dict[int, list] = {}
    blank = 0
    for first, _, record in records:
        cells = [None if cell.strip() in MISSING_TEXTS else cell for cell in record]
        if len(record) > width:
            bad.append((first, f"more fields than the header's {width}"))
            shown[first] = cells[:width]
        elif all(cell is None for cell in cells):
            blank += 1
        else:
            rows.append(cells + [None] * (width - len(cells)))
            lines.append(first)
    if rows:
        frame = pd.DataFrame(rows, columns=range(width), dtype=object)
    else:
        frame = pd.DataFrame({i: pd.Series(dtype=object) for i in range(width)})
    return RecordChunk(frame, np.asarray(lines, dtype=np.int64), bad, blank, shown)


def _blank_rows(frame: pd.DataFrame, numeric: set[int]) -> np.ndarray:
    """Rows whose every cell is missing, as _missing_as_na would make them (NaN, or a missing text in a number
    column read as text). Each column is looked at only on the rows still in question, columns read as
    numbers first: a column with a value in every row ends the search."""
    rows = np.arange(len(frame))
    columns = sorted(frame.columns, key=lambda name: not pd.api.types.is_numeric_dtype(frame[name].dtype))
    for name in columns:
        if not rows.size:
            break
        column = frame[name] if rows.size == len(frame) else frame[name].iloc[rows]
        missing = column.isna().to_numpy(dtype=bool)
        if name in numeric and not pd.api.types.is_numeric_dtype(column.dtype):
            missing = missing | column.isin(list(MISSING_TEXTS)).to_numpy(dtype=bool)  # (a read-only view)
        rows = rows[missing]
    blank = np.zeros(len(frame), dtype=bool)
    blank[rows] = True
    return blank


def joined_texts(columns: list) -> np.ndarray:
    """Per row, its cells of the Arrow text `columns` in one text, each written as its length, a separator and
    itself (so two rows' texts are equal exactly when their cells are, a missing cell reading as empty); None for
    a row with no cell given. Made by Arrow, one Python object per row."""
    import pyarrow
    import pyarrow.compute as pc

    parts = []
    for column in columns:
        text = pc.fill_null(column, "")
        parts += [pc.cast(pc.utf8_length(text), pyarrow.string()), text]
    joined = pc.binary_join_element_wise(*parts, "\x1f").to_numpy(zero_copy_only=False)
    given = np.zeros(len(joined), dtype=bool)
    for column in columns:
        given |= column.is_valid().to_numpy(zero_copy_only=False)
    if not given.all():
        joined[~given] = None
    return joined


def _text_as_objects(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns read as Arrow text (TEXT_DTYPE) as objects, missing cells NaN: as the parser gives them without
    pyarrow. (A number column that held text stays pandas' string type: cells.parse_numbers reads it.)"""
    arrow = [name for name in frame.columns if isinstance(frame[name].dtype, pd.ArrowDtype)]
    if not arrow:
        return frame
    frame = frame.copy(deep=False)
    for name in arrow:
        cells = frame[name].to_numpy(dtype=object, na_value=np.nan)
        frame[name] = pd.Series(cells, index=frame.index, dtype=object, copy=False)
    return frame


def _missing_as_na(frame: pd.DataFrame, numeric: set[int]) -> pd.DataFrame:
    """Missing cells as NaN in number columns that came back as text. When a column holds an integer too large
    for 64 bits, pandas gives up on it and no longer applies na_values: a blank line's cell there reads as ''
    (and 'NA' as 'NA'), so the blank line would pass for a record."""
    for name in numeric:
        if name in frame.columns and not pd.api.types.is_numeric_dtype(frame[name].dtype):
            column = frame[name]
            # isin, not a Python function per cell (9 s of 22 s for 10**6 rows): only strings equal a missing text.
            missing = column.isin(list(MISSING_TEXTS)).to_numpy(dtype=bool)
            if missing.any():
                frame[name] = column.astype(object).mask(missing)
    return frame


def _newlines_per_row(frame: pd.DataFrame) -> np.ndarray | None:
    """Line breaks inside quoted text cells of each row (None when there are none)."""
    total = None
    for name in frame.columns:
        column = frame[name]
        # A numeric column holding text comes back as pandas' string dtype, not object.
        if column.dtype != object and not pd.api.types.is_string_dtype(column.dtype):
            continue
        cells = column.to_numpy()
        if "\n" not in "".join(map(str, cells.tolist())):  # NaN (missing) reads as "nan": no line break
            continue
        counts = column.astype(object).map(lambda v: v.count("\n") if isinstance(v, str) else 0)
        per_row = counts.to_numpy(dtype=np.int64)
        total = per_row if total is None else total + per_row
    return total
