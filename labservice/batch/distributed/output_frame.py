"""Output rows as a typed DataFrame for Parquet: the CSV output's columns, with the file and row in place of the line.

Columns (labservice.batch.output.OutputLayout, in its order): the id columns, `source_file` and `source_row`
(row 1 is a file's first row) where the CSV has `line`, the values the engine used (one float column per analyte,
the canonical unit in its name, null where none; a censored value such as `<5` is null there, as no number stands
for it: the CSV writes it as sent, and so does the summary line), the summary line, the decision columns, each
analyte's flag and CTCAE grade, notes and error. Text columns are strings (missing: null); a grade is an 8-bit
integer, null where the CSV output leaves it empty (no grade, or grade 0). Row texts name the file and row
(locations.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labservice.batch.distributed.locations import Locations
from labservice.batch.output import OutputLayout, RowsOut, given_mask, summaries

TEXT = pd.StringDtype("pyarrow")


def output_columns(layout: OutputLayout) -> list[str]:
    return [
        *layout.id_names(),
        "source_file",
        "source_row",
        *layout.value_columns(),
        "summary",
        *layout.decision_columns(),
        *layout.flag_columns(),
        "notes",
        "error",
    ]


def _text(values) -> pd.Series:
    """A column as strings (missing: null); pandas converts in C (categories once), not cell by cell here."""
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True).astype(TEXT)
    return pd.Series(np.asarray(values, dtype=object)).astype(TEXT)


def output_frame(rows: RowsOut | None, layout: OutputLayout, locations: Locations) -> pd.DataFrame:
    """The rows (None: no row, for the schema) as output columns."""
    n = 0 if rows is None else len(rows.lines)
    columns: dict[str, pd.Series] = {}
    for position, name in enumerate(layout.id_names()):
        columns[name] = _text(rows.ids[position] if rows is not None else [])
    lines = rows.lines if rows is not None else np.zeros(0, dtype=np.int64)
    file, row = locations.file_and_row(lines)
    columns["source_file"] = _text(np.asarray(locations.names, dtype=object)[file] if n else [])
    columns["source_row"] = pd.Series(row.astype(np.int64))
    decisions = rows.decisions if rows is not None else pd.DataFrame()
    for analyte, name in zip(layout.analytes, layout.value_columns(), strict=True):
        used = decisions.get(f"{analyte}_value")
        values = used.to_numpy(dtype=np.float64, na_value=np.nan) if used is not None else np.full(n, np.nan)
        censored = decisions.get(f"{analyte}_censored")
        if censored is not None:  # "<5": no number stands for it here; the summary line writes it as sent
            values = np.where(given_mask(censored.to_numpy(dtype=object)), np.nan, values)
        columns[name] = pd.Series(values, dtype=np.float64)
    columns["summary"] = _text(summaries(rows) if rows is not None else [])
    for name in layout.decision_columns() + layout.flag_columns():
        column = decisions[name] if name in decisions else pd.Series([None] * n, dtype=object)
        if name.endswith("_ctcae_grade"):
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            empty = np.isnan(values) | (values <= 0)  # as the CSV output: no grade and grade 0 are written empty
            columns[name] = pd.Series(pd.arrays.IntegerArray(np.where(empty, 0, values).astype(np.int8), empty))
        else:
            columns[name] = _text(column)
    columns["notes"] = _text(locations.relocate(rows.notes) if rows is not None else [])
    columns["error"] = _text(locations.relocate(rows.errors) if rows is not None else [])
    return pd.DataFrame(columns, index=pd.RangeIndex(n))
