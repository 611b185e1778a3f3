"""Rows repeating an earlier row's ids (duplicates.py): within a chunk, across chunks, first line reported."""

from __future__ import annotations

import io

import numpy as np
import pytest

from labservice.batch import BatchOptions, run_batch
from labservice.batch.duplicates import DuplicateCheck


def col(*cells) -> np.ndarray:
    return np.array(list(cells), dtype=object)


def check(dup: DuplicateCheck, ids: list[np.ndarray], lines: list[int], rows: list[bool] | None = None) -> list[int]:
    mask = np.ones(len(lines), dtype=bool) if rows is None else np.array(rows, dtype=bool)
    return dup.first_lines(ids, np.array(lines, dtype=np.int64), mask).tolist()


def test_no_repeats() -> None:
    assert check(DuplicateCheck(), [col("S1", "S2", "S3")], [2, 3, 4]) == [0, 0, 0]


def test_within_a_chunk_the_first_occurrence_is_reported() -> None:
    ids = [col("S1", "S2", "S1", "S3", "S1", "S2")]
    assert check(DuplicateCheck(), ids, [2, 3, 4, 5, 6, 7]) == [0, 0, 2, 0, 2, 3]


def test_across_chunks_the_first_occurrence_is_reported() -> None:
    dup = DuplicateCheck()
    assert check(dup, [col("S1", "S2")], [2, 3]) == [0, 0]
    assert check(dup, [col("S3", "S1")], [4, 5]) == [0, 2]
    assert check(dup, [col("S1", "S3", "S3", "S4")], [6, 7, 8, 9]) == [2, 4, 4, 0]
    assert check(dup, [col("S4")], [10]) == [9]


def test_unsorted_ids_within_a_chunk() -> None:
    # the check sorts hashes internally; the first line in input order must still be the one reported
    ids = [col("Z", "A", "M", "A", "Z", "M", "A")]
    assert check(DuplicateCheck(), ids, [2, 3, 4, 5, 6, 7, 8]) == [0, 0, 0, 3, 2, 4, 3]


def test_many_repeats_in_a_large_chunk_name_the_first_line() -> None:
    # large enough for an unstable sort to shuffle equal keys: each repeat still names its key's first line
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 50, 5000)
    lines = list(range(2, 5002))
    first_seen: dict[int, int] = {}
    expected = []
    for key, line in zip(keys.tolist(), lines, strict=True):
        expected.append(first_seen.get(key, 0))
        first_seen.setdefault(key, line)
    assert check(DuplicateCheck(), [col(*(f"S{k}" for k in keys.tolist()))], lines) == expected


def test_all_id_columns_make_the_key() -> None:
    patient = col("P1", "P1", "P2", "P1")
    time = col("2026-01-01", "2026-01-02", "2026-01-01", "2026-01-01")
    assert check(DuplicateCheck(), [patient, time], [2, 3, 4, 5]) == [0, 0, 0, 2]


def test_id_order_matters() -> None:
    assert check(DuplicateCheck(), [col("A", "B"), col("B", "A")], [2, 3]) == [0, 0]


def test_rows_without_ids_are_never_duplicates() -> None:
    dup = DuplicateCheck()
    assert check(dup, [col(None, None, np.nan)], [2, 3, 4]) == [0, 0, 0]
    assert check(dup, [col(None, np.nan)], [5, 6]) == [0, 0]
    assert check(dup, [col(None, None), col(np.nan, None)], [7, 8]) == [0, 0]


def test_a_row_with_one_of_two_ids_is_keyed() -> None:
    assert check(DuplicateCheck(), [col("P1", "P1"), col(None, None)], [2, 3]) == [0, 2]


def test_no_id_columns_at_all() -> None:
    assert check(DuplicateCheck(), [], [2, 3]) == [0, 0]


def test_rows_not_checked_are_neither_reported_nor_remembered() -> None:
    dup = DuplicateCheck()
    assert check(dup, [col("S1", "S1", "S2")], [2, 3, 4], rows=[False, True, False]) == [0, 0, 0]
    assert check(dup, [col("S1", "S2")], [5, 6]) == [3, 0]


def test_empty_chunk() -> None:
    dup = DuplicateCheck()
    assert check(dup, [col()], []) == []
    assert check(dup, [col("S1")], [2]) == [0]


@pytest.mark.parametrize("second", [None, float("nan")], ids=["None", "other NaN object"])
def test_missing_cells_match_however_they_are_spelled(second) -> None:
    dup = DuplicateCheck()
    assert check(dup, [col("P1"), col(np.nan)], [2]) == [0]
    assert check(dup, [col("P1"), col(second)], [3]) == [2]


# Lines: 1 header, 2-3 P1 twice, 4-6 P2 three times, 7 a quote never closed (swallows line 8).
UNCLOSED = b"patient,sample,note,PLT\n" + b"P1,,x,200\n" * 2 + b"P2,,x,200\n" * 3 + b'P3,,"open,200\n' + b"P4,,x,200\n"


def duplicate_examples(chunk_rows: int) -> list[dict]:
    summary = run_batch(io.BytesIO(UNCLOSED), csv_out=io.StringIO(), options=BatchOptions(chunk_rows=chunk_rows))
    return summary.duplicate_examples


def test_duplicates_in_a_file_with_an_unclosed_quote() -> None:
    assert duplicate_examples(1000) == [
        {"line": 3, "duplicate_of": 2},
        {"line": 5, "duplicate_of": 4},
        {"line": 6, "duplicate_of": 4},
    ]


@pytest.mark.parametrize("chunk_rows", [2, 3])
def test_duplicates_do_not_depend_on_the_chunk_size(chunk_rows: int) -> None:
    assert duplicate_examples(chunk_rows) == duplicate_examples(1000)
