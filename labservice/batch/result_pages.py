"""A batch's results a page at a time: every row, or the rejected rows only, read from its result.json.

result.json is a JSON array written one row per line (labservice.batch.output.JsonFormat: `[`, then each row's
object on a line of its own, `]`): a JSON string cannot hold a raw line break, so every row is one line. A page is
found through an index made by one pass over the file (`index_results`): the byte offset of every PAGE_ROWS-th
row and of every rejected row. The index is kept beside the results (`pages.npz`, written aside and renamed): made
with the batch's files (labservice.batch.results_store.BatchStore.save), or by the first page asked for of a batch
made before; a page then costs a seek and PAGE_ROWS lines, whatever the size of the file.

A row is rejected when its top-level `error` is not null. That key comes after the row's `ids` (whose keys are
the input's id headers, which could be named `error` too), so the last `"error":` of the line is the row's own;
the bytes `"error":` cannot occur inside a JSON string, whose quotes are escaped.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Rows on a page of the batch page's tables.
PAGE_ROWS = 50
INDEX_NAME = "pages.npz"
_ERROR_KEY = b'"error":'


@dataclass(frozen=True)
class ResultIndex:
    """Where the rows of one result.json are: `page_starts[k]` is the offset of row k * PAGE_ROWS;
    `rejected` the offsets of the rejected rows, in file order."""

    rows: int
    page_starts: np.ndarray
    rejected: np.ndarray
    json_bytes: int  # the size of the result.json indexed (an index of another file is not used)

    def pages(self, rejected: bool = False) -> int:
        count = len(self.rejected) if rejected else self.rows
        return max(1, -(-count // PAGE_ROWS))


@dataclass(frozen=True)
class Page:
    """One page of rows (the parsed JSON objects), where it is among the pages, and how many rows there are."""

    number: int
    pages: int
    total: int
    rows: list[dict[str, Any]]

    @property
    def first(self) -> int:
        """The position (from 1) of the page's first row among all, 0 when there are none."""
        return (self.number - 1) * PAGE_ROWS + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


def index_results(json_path: Path) -> ResultIndex:
    """One pass over a result.json: the offset of every PAGE_ROWS-th row and of every rejected row."""
    starts: list[int] = []
    rejected: list[int] = []
    rows = 0
    offset = 0
    with json_path.open("rb") as handle:
        for line in handle:
            start = offset
            offset += len(line)
            if not line.startswith(b"{"):  # the array's brackets
                continue
            if rows % PAGE_ROWS == 0:
                starts.append(start)
            rows += 1
            at = line.rfind(_ERROR_KEY)
            if at >= 0 and not line.startswith(b"null", at + len(_ERROR_KEY)):
                rejected.append(start)
    return ResultIndex(rows, np.asarray(starts, dtype=np.int64), np.asarray(rejected, dtype=np.int64), offset)


def result_index(json_path: Path) -> ResultIndex:
    """The index of a batch's result.json: the one kept beside it, else made now and kept (when the folder can
    be written: a batch being deleted meanwhile is answered all the same)."""
    kept = json_path.parent / INDEX_NAME
    size = json_path.stat().st_size
    with contextlib.suppress(OSError, ValueError, KeyError), np.load(kept) as saved:
        if int(saved["json_bytes"]) == size:
            return ResultIndex(
                int(saved["rows"]), saved["page_starts"].copy(), saved["rejected"].copy(), int(saved["json_bytes"])
            )
    index = index_results(json_path)
    _keep(kept, index)
    return index


def write_index(json_path: Path) -> None:
    """Make the index of a result.json and keep it beside it (a batch being made: labservice.batch.results_store)."""
    _keep(json_path.parent / INDEX_NAME, index_results(json_path))


def _keep(path: Path, index: ResultIndex) -> None:
    with contextlib.suppress(OSError):
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".pages-", suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(
                    out,
                    rows=np.int64(index.rows),
                    page_starts=index.page_starts,
                    rejected=index.rejected,
                    json_bytes=np.int64(index.json_bytes),
                )
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


def clamp_page(number: int, pages: int) -> int:
    return min(max(1, number), pages)


def rows_page(json_path: Path, index: ResultIndex, number: int) -> Page:
    """Page `number` (from 1; clamped to the pages there are) of every row, in input order."""
    pages = index.pages()
    number = clamp_page(number, pages)
    count = min(PAGE_ROWS, index.rows - (number - 1) * PAGE_ROWS)
    rows: list[dict[str, Any]] = []
    if count > 0:
        with json_path.open("rb") as handle:
            handle.seek(int(index.page_starts[number - 1]))
            rows = [_row(handle.readline()) for _ in range(count)]
    return Page(number, pages, index.rows, rows)


def rejected_page(json_path: Path, index: ResultIndex, number: int) -> Page:
    """Page `number` (from 1; clamped) of the rejected rows, in input order."""
    pages = index.pages(rejected=True)
    number = clamp_page(number, pages)
    offsets = index.rejected[(number - 1) * PAGE_ROWS : number * PAGE_ROWS].tolist()
    rows: list[dict[str, Any]] = []
    with json_path.open("rb") as handle:
        for offset in offsets:
            handle.seek(int(offset))
            rows.append(_row(handle.readline()))
    return Page(number, pages, len(index.rejected), rows)


def _row(line: bytes) -> dict[str, Any]:
    text = line.rstrip(b"\r\n")
    if text.endswith(b","):
        text = text[:-1]
    return json.loads(text)
