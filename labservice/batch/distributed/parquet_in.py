"""Parquet input: which files (a file, a directory or a glob), cut into pieces, each as the CSV reader's records.

Every input row has an ordinal: 1 for the first row of the first file, counted on over the files in name order
(numbers within names compare as numbers: part.2 before part.10). The engine's row texts carry the ordinal where a
CSV row carries its line, and labservice.batch.distributed.locations turns it back into a file and a row (row 1
is a file's first row). A piece is one or more whole row groups of one file, or a slice of a large one.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from labservice.adapters.csv_input.cells import MISSING_TEXTS
from labservice.adapters.csv_input.options import BatchFileError
from labservice.adapters.csv_input.reader import RecordChunk
from labservice.batch.distributed import PARQUET_SUFFIXES

#: The column every piece carries besides the input's own: the row's ordinal (see the module's docstring).
ORDINAL = "__ordinal"


def _natural(path: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def input_files(spec: str) -> list[str]:
    """The Parquet files `spec` names, in name order; BatchFileError when it names none."""
    if os.path.isdir(spec):
        found = [str(p) for p in Path(spec).rglob("*") if p.is_file() and p.name.lower().endswith(PARQUET_SUFFIXES)]
    elif glob.has_magic(spec):
        found = [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)]
    elif os.path.isfile(spec):
        found = [spec]
    else:
        raise BatchFileError(f"{spec}: no such file or directory")
    if not found:
        raise BatchFileError(f"{spec}: no Parquet file there (names ending {', '.join(PARQUET_SUFFIXES)})")
    return sorted(found, key=_natural)


@dataclass(frozen=True)
class Piece:
    """Rows [start, stop) of the row groups `row_groups` of file `file` (an index into ParquetInput.files)."""

    file: int
    row_groups: tuple[int, ...]
    start: int  # within the rows of those row groups
    stop: int
    first_ordinal: int


@dataclass(frozen=True)
class ParquetInput:
    files: list[str]
    names: list[str]  # how the output and the texts name each file: its path relative to the input
    starts: np.ndarray  # int64: the ordinal of each file's first row
    header: list[str]
    text_columns: frozenset[str]  # columns some file holds as text (read as text from every file)
    pieces: list[Piece]
    rows: int


def _names(spec: str, files: list[str]) -> list[str]:
    if len(files) == 1:
        return [os.path.basename(files[0])]
    root = spec if os.path.isdir(spec) else os.path.commonpath([os.path.dirname(f) or "." for f in files])
    return [os.path.relpath(f, root) for f in files]


def open_input(spec: str, partition_rows: int) -> ParquetInput:
    """Read the files' footers (not their data): their columns, rows and row groups, cut into pieces of about
    `partition_rows` rows (whole row groups merged up to it; a row group over twice it is sliced)."""
    files = input_files(spec)
    header: list[str] | None = None
    text_columns: set[str] = set()
    pieces: list[Piece] = []
    starts = []
    ordinal = 1
    for index, path in enumerate(files):
        try:
            parquet = pq.ParquetFile(path)
        except (OSError, pa.ArrowInvalid) as error:
            raise BatchFileError(f"{path}: not a readable Parquet file ({error})") from None
        schema = parquet.schema_arrow
        names = [str(name) for name in schema.names if not str(name).startswith("__index_level_")]
        if header is None:
            header = names
        elif names != header:
            raise BatchFileError(f"{path}: its columns {names} differ from those of {files[0]} {header}")
        for name in names:
            kind = schema.field(name).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
                text_columns.add(name)
        starts.append(ordinal)
        pieces.extend(_pieces(index, parquet.metadata, ordinal, partition_rows))
        ordinal += parquet.metadata.num_rows
    assert header is not None
    return ParquetInput(
        files,
        _names(spec, files),
        np.asarray(starts, dtype=np.int64),
        header,
        frozenset(text_columns),
        pieces,
        ordinal - 1,
    )


def _pieces(file: int, metadata: pq.FileMetaData, ordinal: int, partition_rows: int) -> list[Piece]:
    out: list[Piece] = []
    group: list[int] = []
    rows = 0
    for number in range(metadata.num_row_groups):
        size = metadata.row_group(number).num_rows
        if size > 2 * partition_rows:
            if group:
                out.append(Piece(file, tuple(group), 0, rows, ordinal))
                ordinal, group, rows = ordinal + rows, [], 0
            for start in range(0, size, partition_rows):
                stop = min(size, start + partition_rows)
                out.append(Piece(file, (number,), start, stop, ordinal + start))
            ordinal += size
            continue
        if group and rows + size > partition_rows:
            out.append(Piece(file, tuple(group), 0, rows, ordinal))
            ordinal, group, rows = ordinal + rows, [], 0
        group.append(number)
        rows += size
    if group:
        out.append(Piece(file, tuple(group), 0, rows, ordinal))
    return out


def column_name(index: int) -> str:
    """The name of input column `index` between the reading and the engine (input headers may be anything)."""
    return f"c{index}"


def read_piece(piece: Piece, source: ParquetInput, numeric: frozenset[int], columns: tuple[int, ...]) -> pd.DataFrame:
    """The piece's rows: the `columns` (indexes into the header) as `c<index>`, the numeric ones as float64 when every
    file holds them as numbers, every other as text (object: str or None), and the ordinal of each row."""
    names = [source.header[i] for i in columns]
    table = pq.ParquetFile(source.files[piece.file]).read_row_groups(list(piece.row_groups), columns=names)
    table = table.slice(piece.start, piece.stop - piece.start)
    out: dict[str, object] = {}
    for index, name in zip(columns, names, strict=True):
        column = table.column(name).to_pandas()
        if index in numeric and name not in source.text_columns:
            out[column_name(index)] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            out[column_name(index)] = as_text(column)
    out[ORDINAL] = np.arange(piece.first_ordinal, piece.first_ordinal + table.num_rows, dtype=np.int64)
    return pd.DataFrame(out, index=pd.RangeIndex(table.num_rows))


def as_text(column: pd.Series) -> np.ndarray:
    """Cells as the CSV reader gives a text column: str, or None where empty or a missing spelling ("NA", "-" ...).

    Whole numbers print without a decimal point (an id stored as a float because it had gaps reads as in the
    CSV it came from), times as ISO 8601 (`2115-05-13 14:53:00`), booleans as true/false."""
    n = len(column)
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        missing = column.isna().to_numpy()
        text = column.dt.strftime("%Y-%m-%d %H:%M:%S").astype(object).to_numpy()
    elif pd.api.types.is_bool_dtype(column.dtype):
        missing = column.isna().to_numpy()
        text = np.where(column.fillna(False).to_numpy(dtype=bool), "true", "false").astype(object)
    elif pd.api.types.is_float_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(values)
        whole = ~missing & np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2**53)
        text = np.array([repr(v) for v in values.tolist()], dtype=object)
        if whole.any():
            text[whole] = values[whole].astype(np.int64).astype(str).astype(object)
    else:
        cells = column.astype(object)
        missing = cells.isna().to_numpy()
        text = cells.map(str, na_action="ignore").to_numpy(dtype=object) if n else np.zeros(0, dtype=object)
    text = np.array(text, dtype=object)  # a copy: pandas may hand out a read-only array
    missing = missing | pd.Series(text).isin(MISSING_TEXTS).to_numpy(dtype=bool)
    text[missing] = None
    return text


def as_records(frame: pd.DataFrame) -> RecordChunk:
    """A piece (columns c<index>, ordinal) as the CSV reader's records: columns by index, the ordinal as the line.
    Columns not read are absent from the frame (the engine reads only the plan's)."""
    columns = {int(name[1:]): frame[name].to_numpy() for name in frame.columns if name != ORDINAL}
    records = pd.DataFrame(columns, index=pd.RangeIndex(len(frame)))
    return RecordChunk(records, frame[ORDINAL].to_numpy(dtype=np.int64), [], 0)
