"""Rows that repeat an earlier row's id and collection time, found across chunks in 16 bytes per row.

Keys are 64-bit hashes of the id cells (Python's string hash, randomised per process, so only
compared within one run); a collision would mark a row as a duplicate with odds of about n²/2^65.
"""

from __future__ import annotations

import numpy as np

from labservice.batch.output import given_mask


class DuplicateCheck:
    """Remembers a 64-bit hash and the line of every id key seen; reports the first line of repeats."""

    def __init__(self) -> None:
        self._hashes = np.zeros(0, dtype=np.uint64)  # sorted
        self._lines = np.zeros(0, dtype=np.int64)

    def first_lines(self, ids: list[np.ndarray], lines: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """For each row, the line of an earlier row with the same ids (0 if none); `rows` masks rows to check."""
        n = len(lines)
        out = np.zeros(n, dtype=np.int64)
        if not ids or not rows.any():
            return out
        hashes_all = np.zeros(n, dtype=np.uint64)
        given = np.zeros(n, dtype=bool)
        for column in ids:
            cells = np.asarray(column, dtype=object)
            present = given_mask(cells)
            given |= present
            if not present.all():  # None, NaN (any NaN object) and NA are one "missing"
                cells = np.where(present, cells, "")
            # Python's own string hash (C speed); missing cells (None / NaN) hash alike within a run.
            column_hash = np.fromiter(map(hash, cells.tolist()), dtype=np.int64, count=n).view(np.uint64)
            hashes_all = hashes_all * np.uint64(1000003) ^ column_hash
        check = np.flatnonzero(rows & given)
        if check.size == 0:
            return out
        hashes = hashes_all[check]
        order = np.argsort(hashes)  # sorted queries: cache-friendly searches, adjacent repeats
        sorted_hashes = hashes[order]
        repeat = np.zeros(check.size, dtype=bool)
        repeat[1:] = sorted_hashes[1:] == sorted_hashes[:-1]
        if repeat.any():  # the sort is not stable (a stable one costs 5 times more): repeats back in row order
            order = order[np.lexsort((order, np.cumsum(~repeat)))]
        sorted_lines = lines[check][order]
        first_line = np.zeros(check.size, dtype=np.int64)  # in sorted order
        if self._hashes.size:
            at = np.searchsorted(self._hashes, sorted_hashes).clip(max=self._hashes.size - 1)
            seen = self._hashes[at] == sorted_hashes
            first_line[seen] = self._lines[at[seen]]
        run_start = np.maximum.accumulate(np.where(~repeat, np.arange(check.size), 0))
        inner = repeat & (first_line == 0)
        first_line[inner] = sorted_lines[run_start[inner]]
        out[check[order]] = first_line
        new = (first_line == 0) & ~repeat
        at = np.searchsorted(self._hashes, sorted_hashes[new])  # merge two sorted arrays in linear time
        self._hashes = np.insert(self._hashes, at, sorted_hashes[new])
        self._lines = np.insert(self._lines, at, sorted_lines[new])
        return out
