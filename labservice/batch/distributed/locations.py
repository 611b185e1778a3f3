"""Where a Parquet row came from: its ordinal (see parquet_in) as a file and a row, in the output and in its texts.

The engine's row texts name CSV lines ("line 7, column PLT: ...", "lines 3, 9: different values ...",
"duplicate of line 4"); on the Parquet path the number there is the row's ordinal, and each such place is
rewritten to the file and the row ("part.1.parquet row 7, column PLT: ..."). Only the places the texts
start with a line are rewritten (a message's start, after "(" and after "duplicate of "), never a quoted value.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

_LINES = re.compile(r"(?:(?<=^)|(?<=; )|(?<=\()|(?<=duplicate of ))lines? (\d+(?:, \d+)*)")


class Locations:
    """Ordinals ↔ (file, row) for the files of one input."""

    def __init__(self, names: list[str], starts: np.ndarray) -> None:
        self.names = names
        self.starts = np.asarray(starts, dtype=np.int64)

    def file_and_row(self, ordinals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The file index and the row within it (1 = its first row) of each ordinal."""
        ordinals = np.asarray(ordinals, dtype=np.int64)
        file = np.searchsorted(self.starts, ordinals, side="right") - 1
        return file, ordinals - self.starts[file] + 1

    def _where(self, numbers: list[int]) -> str:
        file, row = self.file_and_row(np.asarray(numbers, dtype=np.int64))
        if len(set(file.tolist())) == 1:
            word = "row" if len(numbers) == 1 else "rows"
            return f"{self.names[int(file[0])]} {word} " + ", ".join(str(int(r)) for r in row)
        return ", ".join(f"{self.names[int(f)]} row {int(r)}" for f, r in zip(file, row, strict=True))

    def relocate_text(self, text: str) -> str:
        return _LINES.sub(lambda m: self._where([int(n) for n in m.group(1).split(", ")]), text)

    def relocate(self, texts: np.ndarray) -> np.ndarray:
        """An object column of texts (None for none) with every line rewritten as a file and row."""
        out = np.asarray(texts, dtype=object).copy()
        given = np.flatnonzero(pd.notna(out))
        for row in given.tolist():
            out[row] = self.relocate_text(str(out[row]))
        return out
