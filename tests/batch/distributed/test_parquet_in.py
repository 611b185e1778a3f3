"""Parquet input: which files a directory or a glob names and in which order, pieces that cover every row once,
and cells read as the CSV reader reads text (labservice/batch/distributed/parquet_in.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labservice.batch import BatchFileError
from labservice.batch.distributed.parquet_in import ORDINAL, as_text, input_files, open_input, read_piece


def _write(path: Path, frame: pd.DataFrame, row_group: int | None = None) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group)
    return path


def test_a_directory_lists_its_parts_in_name_order_numbers_as_numbers(tmp_path: Path) -> None:
    for number in (10, 2, 1):
        _write(tmp_path / f"part.{number}.parquet", pd.DataFrame({"plt": [1.0]}))
    (tmp_path / "notes.txt").write_text("not a part", encoding="utf-8")
    names = [Path(p).name for p in input_files(str(tmp_path))]
    assert names == ["part.1.parquet", "part.2.parquet", "part.10.parquet"]
    globbed = [Path(p).name for p in input_files(str(tmp_path / "part.1*.parquet"))]
    assert globbed == ["part.1.parquet", "part.10.parquet"]


def test_no_parquet_file_is_an_unusable_input(tmp_path: Path) -> None:
    with pytest.raises(BatchFileError, match="no Parquet file"):
        input_files(str(tmp_path))
    with pytest.raises(BatchFileError, match="no such file"):
        input_files(str(tmp_path / "missing.parquet"))


def test_files_with_other_columns_are_refused_naming_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "a.parquet", pd.DataFrame({"plt": [1.0]}))
    _write(tmp_path / "b.parquet", pd.DataFrame({"wbc": [1.0]}))
    with pytest.raises(BatchFileError, match=r"b\.parquet: its columns"):
        open_input(str(tmp_path), 10)


def test_pieces_cover_every_row_once_with_consecutive_ordinals(tmp_path: Path) -> None:
    # File a: row groups of 3, 3, 3 and 1 rows (merged up to 5 rows a piece); file b: one row group of 12 rows
    # (over twice 5: sliced into 5, 5, 2).
    _write(tmp_path / "a.parquet", pd.DataFrame({"plt": np.arange(10, dtype=float)}), row_group=3)
    _write(tmp_path / "b.parquet", pd.DataFrame({"plt": np.arange(100, 112, dtype=float)}))
    source = open_input(str(tmp_path), 5)
    assert source.rows == 22 and list(source.starts) == [1, 11]
    values, ordinals = [], []
    for piece in source.pieces:
        frame = read_piece(piece, source, frozenset({0}), (0,))
        assert len(frame) <= 2 * 5
        values.extend(frame["c0"].tolist())
        ordinals.extend(frame[ORDINAL].tolist())
    assert values == [*range(10), *range(100, 112)]
    assert ordinals == list(range(1, 23))
    assert [p.stop - p.start for p in source.pieces if p.file == 1] == [5, 5, 2]


def test_cells_read_as_the_csv_reader_reads_text() -> None:
    # An id column stored as float because some rows had none reads as the integers it held.
    assert as_text(pd.Series([193924.0, np.nan, 2.5])).tolist() == ["193924", None, "2.5"]
    times = pd.Series(pd.to_datetime(["2115-05-13 14:53:00", None]))
    assert as_text(times).tolist() == ["2115-05-13 14:53:00", None]
    assert as_text(pd.Series(["NA", "", "-", "x"], dtype=object)).tolist() == [None, None, None, "x"]
    assert as_text(pd.Series([True, False])).tolist() == ["true", "false"]
    assert as_text(pd.Series([51265, 51301])).tolist() == ["51265", "51301"]
