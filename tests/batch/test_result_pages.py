"""A batch's results a page at a time (labservice.batch.result_pages): every row, and the rejected rows only.

The result files are made by run_batch, as an upload makes them; the expected rows come from the file written
here (which rows hold a number the engine cannot read), never from the reader under test.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from labservice.batch import BatchOptions, run_batch
from labservice.batch.result_pages import (
    INDEX_NAME,
    PAGE_ROWS,
    index_results,
    rejected_page,
    result_index,
    rows_page,
)

ROWS = 123  # two full pages and 23 rows


def results_of(tmp_path: Path, data: bytes, **options) -> Path:
    folder = tmp_path / "batch"
    folder.mkdir()
    path = folder / "result.json"
    with path.open("w", encoding="utf-8", newline="") as out:
        run_batch(io.BytesIO(data), json_out=out, options=BatchOptions(chunk_rows=17, **options))
    return path


def wide_file(rows: int) -> tuple[bytes, list[int]]:
    """Rows on lines 2..rows+1; every 7th holds platelets `abc` (rejected): the file and those lines."""
    lines = ["MRN,PLT,HGB (g/dL)"]
    rejected = []
    for i in range(rows):
        bad = i % 7 == 3
        lines.append(f"P{i:04d},{'abc' if bad else 100 + i},13.5")
        if bad:
            rejected.append(i + 2)
    return ("\n".join(lines) + "\n").encode(), rejected


def test_every_row_comes_a_page_at_a_time_in_input_order(tmp_path):
    data, _ = wide_file(ROWS)
    path = results_of(tmp_path, data)
    index = result_index(path)
    assert index.rows == ROWS and index.pages() == 3
    pages = [rows_page(path, index, number) for number in (1, 2, 3)]
    assert [len(page.rows) for page in pages] == [PAGE_ROWS, PAGE_ROWS, ROWS - 2 * PAGE_ROWS]
    lines = [row["line"] for page in pages for row in page.rows]
    assert lines == list(range(2, ROWS + 2))
    assert pages[0].rows[0]["ids"] == {"MRN": "P0000"}
    assert (pages[2].first, pages[2].last, pages[2].total) == (101, ROWS, ROWS)


def test_the_rejected_rows_come_a_page_at_a_time_with_their_error(tmp_path):
    data, rejected_lines = wide_file(ROWS)
    path = results_of(tmp_path, data)
    index = result_index(path)
    assert len(index.rejected) == len(rejected_lines) == 18
    page = rejected_page(path, index, 1)
    assert [row["line"] for row in page.rows] == rejected_lines
    assert all(row["error"].startswith(f"line {row['line']}, column PLT") for row in page.rows)
    assert page.pages == 1 and page.total == 18


def test_many_rejected_rows_are_paged_too(tmp_path):
    lines = ["MRN,PLT"] + [f"P{i},{'x' if i % 2 else 45}" for i in range(240)]
    path = results_of(tmp_path, ("\n".join(lines) + "\n").encode())
    index = result_index(path)
    assert len(index.rejected) == 120 and index.pages(rejected=True) == 3
    last = rejected_page(path, index, 3)
    assert [row["ids"]["MRN"] for row in last.rows] == [f"P{i}" for i in range(201, 240, 2)]


@pytest.mark.parametrize(("asked", "shown"), [(0, 1), (-3, 1), (99, 3)])
def test_a_page_out_of_range_is_the_nearest_page(tmp_path, asked, shown):
    data, _ = wide_file(ROWS)
    path = results_of(tmp_path, data)
    assert rows_page(path, result_index(path), asked).number == shown


def test_an_id_column_named_error_does_not_pass_for_the_rows_error(tmp_path):
    """The row's own `error` is its last key: an id header called `error` (mapped to the patient id) comes first."""
    data = b"error,PLT\n,45\nE2,abc\n"
    path = results_of(tmp_path, data, columns={"error": "patient_id"})
    index = result_index(path)
    page = rejected_page(path, index, 1)
    assert [row["line"] for row in page.rows] == [3]
    assert rows_page(path, index, 1).rows[0]["ids"] == {"error": None}


def test_a_file_without_data_rows_has_one_empty_page(tmp_path):
    path = results_of(tmp_path, b"MRN,PLT\n")
    index = result_index(path)
    assert (index.rows, index.pages(), index.pages(rejected=True)) == (0, 1, 1)
    assert rows_page(path, index, 1).rows == [] and rejected_page(path, index, 1).rows == []


def test_the_index_is_made_once_and_kept_beside_the_results(tmp_path):
    data, _ = wide_file(ROWS)
    path = results_of(tmp_path, data)
    assert not (path.parent / INDEX_NAME).exists()
    made = result_index(path)
    assert (path.parent / INDEX_NAME).is_file()
    kept = result_index(path)
    assert kept.rows == made.rows and kept.json_bytes == made.json_bytes == path.stat().st_size
    assert kept.page_starts.tolist() == made.page_starts.tolist() and kept.rejected.tolist() == made.rejected.tolist()
    # An index of another file (the results made again) is not used: it is made again.
    path.write_text(json.dumps([{"line": 2, "ids": {}, "error": "x"}]).replace("[{", "[\n{").replace("}]", "}\n]"))
    again = result_index(path)
    assert again.rows == 1 and len(again.rejected) == 1


def test_the_index_matches_one_made_from_the_json_parsed_whole(tmp_path):
    data, _ = wide_file(ROWS)
    path = results_of(tmp_path, data)
    parsed = json.loads(path.read_text(encoding="utf-8"))
    index = index_results(path)
    assert index.rows == len(parsed)
    assert len(index.rejected) == sum(1 for row in parsed if row["error"] is not None)
