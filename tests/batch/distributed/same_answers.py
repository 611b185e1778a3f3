"""Compare the Parquet parts a Dask job wrote with the CSV the single-process path (run_batch) wrote, column by column.

The CSV names a row by its line; the Parquet output by its file and row. `where(line)` says, from the test's
own arithmetic (how many rows each part file holds), which file and row a CSV line is, and the CSV's texts are
rewritten with it before they are compared ("line 7" -> "part.0.parquet row 6").
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from labservice.batch.output_dialect import number_texts

_LINES = re.compile(r"(?:(?<=^)|(?<=; )|(?<=\()|(?<=duplicate of ))lines? (\d+(?:, \d+)*)")


def csv_frame(text: str) -> pd.DataFrame:
    """The CSV output as text cells ("" for empty), as a spreadsheet would show them."""
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def parquet_frame(directory: Path) -> pd.DataFrame:
    """Every part of the output directory, cells as the CSV writes them ("" for null, integers without ".0")."""
    frame = pd.concat([pd.read_parquet(path) for path in sorted(directory.glob("*.parquet"))], ignore_index=True)
    out = {}
    for name in frame.columns:
        column = frame[name]
        if column.dtype == "float64":  # the values used: written as the CSV writes numbers
            out[name] = number_texts(column.to_numpy())
            continue
        out[name] = column.astype(object).where(column.notna(), None).map(lambda v: "" if v is None else str(v))
    return pd.DataFrame(out)


def rewrite_lines(text: str, where: Callable[[int], tuple[str, int]]) -> str:
    """A CSV text with each line named as the Parquet path names it (file and row)."""

    def place(match: re.Match) -> str:
        places = [where(int(n)) for n in match.group(1).split(", ")]
        if len({f for f, _ in places}) == 1:
            word = "row" if len(places) == 1 else "rows"
            return f"{places[0][0]} {word} " + ", ".join(str(r) for _, r in places)
        return ", ".join(f"{f} row {r}" for f, r in places)

    return _LINES.sub(place, text)


def assert_same_rows(
    csv_rows: pd.DataFrame, parquet_rows: pd.DataFrame, where: Callable[[int], tuple[str, int]]
) -> list[str]:
    """Every CSV row has its Parquet row (by file and row) and every column agrees; returns the columns compared."""
    assert len(parquet_rows) == len(csv_rows)
    places = [where(int(line)) for line in csv_rows["line"]]
    csv_rows = csv_rows.assign(source_file=[f for f, _ in places], source_row=[str(r) for _, r in places]).drop(
        columns=["line"]
    )
    for name in ("notes", "error"):
        csv_rows[name] = [rewrite_lines(text, where) for text in csv_rows[name]]
    key = ["source_file", "source_row"]
    assert not parquet_rows.duplicated(key).any(), "a row written twice"
    left = csv_rows.sort_values(key).reset_index(drop=True)
    right = parquet_rows.sort_values(key).reset_index(drop=True)
    assert list(left[key].itertuples(index=False)) == list(right[key].itertuples(index=False))
    assert sorted(left.columns) == sorted(right.columns), set(left.columns) ^ set(right.columns)
    for name in left.columns:
        differ = left[name] != right[name]
        # A censored value ("<5") is written as sent in the CSV; Parquet's number column leaves it null.
        differ &= ~(left[name].str.match(r"^[<>]=?\d") & (right[name] == ""))
        assert not differ.any(), (
            f"column {name}: {int(differ.sum())} rows differ, first "
            f"{left.loc[differ, [*key, name]].head(3).to_dict('records')} vs "
            f"{right.loc[differ, [*key, name]].head(3).to_dict('records')}"
        )
    return list(left.columns)
