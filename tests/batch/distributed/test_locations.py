"""A row's ordinal as its file and row, in the output and in the engine's texts (labservice/batch/distributed/
locations.py): the places a text names a line become the file and row; a quoted value is left as it was."""

from __future__ import annotations

import numpy as np

from labservice.batch.distributed.locations import Locations

# Two files: a.parquet holds ordinals 1-10, b.parquet 11 on.
PLACES = Locations(["a.parquet", "b.parquet"], np.array([1, 11]))


def test_ordinals_as_file_and_row() -> None:
    file, row = PLACES.file_and_row(np.array([1, 10, 11, 25]))
    assert file.tolist() == [0, 0, 1, 1]
    assert row.tolist() == [1, 10, 1, 15]


def test_texts_name_the_file_and_row() -> None:
    assert PLACES.relocate_text("line 7, column PLT: 'x' is not a number") == (
        "a.parquet row 7, column PLT: 'x' is not a number"
    )
    assert PLACES.relocate_text("lines 12, 14: different values for wbc in one CBC") == (
        "b.parquet rows 2, 4: different values for wbc in one CBC"
    )
    assert PLACES.relocate_text("lines 3, 12: different values for wbc in one CBC") == (
        "a.parquet row 3, b.parquet row 2: different values for wbc in one CBC"
    )
    assert PLACES.relocate_text("duplicate of line 4; wbc sent more than once (lines 11, 13)") == (
        "duplicate of a.parquet row 4; wbc sent more than once (b.parquet rows 1, 3)"
    )


def test_a_quoted_value_that_reads_like_a_line_is_left_alone() -> None:
    assert PLACES.relocate_text("line 12, column WBC: 'line 5' is not a number") == (
        "b.parquet row 2, column WBC: 'line 5' is not a number"
    )
    column = PLACES.relocate(np.array([None, "line 1: no analyte value in this row"], dtype=object))
    assert column.tolist() == [None, "a.parquet row 1: no analyte value in this row"]
