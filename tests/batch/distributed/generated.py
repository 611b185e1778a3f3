"""Generated wide CBC files: the same rows as one CSV and as Parquet parts, with the awkward cases in them.

Rows: a patient id and a collection time (some repeated: duplicates), sex and age, counts in canonical units.
Platelets are a float column in Parquet; WBC is a text column there (as a LIS export with `<` values), so both
the numeric and the text cell paths are compared. A few cells are bad: text where a number belongs, censored
values, an implausible count, a row with no analyte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class GeneratedFiles:
    csv: Path
    parts: Path  # a directory of Parquet parts, part.00.parquet ...
    rows_per_part: list[int]

    def where(self, line: int) -> tuple[str, int]:
        """The part file and row of CSV line `line` (line 1 is the header; row 1 is a part's first row)."""
        index = line - 2
        for number, rows in enumerate(self.rows_per_part):
            if index < rows:
                return f"part.{number:02d}.parquet", index + 1
            index -= rows
        raise AssertionError(f"line {line} is past the last row")


def wide_frame(n: int, seed: int = 15) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    abnormal = rng.random(n) < 0.15
    platelets = np.round(np.exp(rng.normal(np.log(250), 0.25, n)))
    platelets[abnormal] = np.round(np.exp(rng.normal(np.log(60), 0.9, n)))[abnormal]
    wbc = np.round(np.exp(rng.normal(np.log(7), 0.3, n)), 2)
    wbc[abnormal] = np.round(np.exp(rng.normal(np.log(2.5), 0.8, n)), 2)[abnormal]
    hemoglobin = np.round(np.clip(rng.normal(13.5, 1.6, n), 3.0, 22.0), 1)
    hemoglobin[rng.random(n) < 0.03] = np.nan
    neutrophils = np.round(wbc * rng.uniform(0.3, 0.7, n), 2)
    neutrophils[rng.random(n) < 0.05] = np.nan
    patients = rng.integers(0, n // 2, n)
    day = rng.integers(0, 400, n)
    collected = pd.to_datetime("2026-01-01") + pd.to_timedelta(day, unit="D") + pd.to_timedelta(8, unit="h")
    wbc_text = np.array([repr(float(v)) for v in wbc], dtype=object)
    frame = pd.DataFrame(
        {
            "patient_id": np.array([f"MRN{p:07d}" for p in patients], dtype=object),
            "collected_at": collected.strftime("%Y-%m-%dT%H:%M:%S").astype(object),
            "sex": rng.choice(np.array(["F", "M", "U"], dtype=object), n, p=[0.49, 0.49, 0.02]),
            "age_years": np.round(rng.uniform(1, 95, n), 1),
            "platelets": platelets,
            "wbc": wbc_text,
            "neutrophils": neutrophils,
            "hemoglobin": hemoglobin,
        }
    )
    bad = rng.choice(n, size=60, replace=False)
    frame.loc[bad[:15], "wbc"] = "clotted"  # not a number
    frame.loc[bad[15:30], "wbc"] = "<0.5"  # censored below a threshold
    frame.loc[bad[30:40], "wbc"] = ">500"  # censored above
    frame.loc[bad[40:50], "platelets"] = 90000.0  # implausible
    frame.loc[bad[50:], ["platelets", "neutrophils", "hemoglobin"]] = np.nan  # no analyte but the WBC ...
    frame.loc[bad[50:55], "wbc"] = None  # ... and none at all
    return frame


def write_files(frame: pd.DataFrame, directory: Path, parts: int) -> GeneratedFiles:
    """The frame as one CSV and as `parts` Parquet files of near-equal size (row groups of 10,000 rows)."""
    csv = directory / "cbcs.csv"
    frame.to_csv(csv, index=False)
    folder = directory / "parts"
    folder.mkdir()
    sizes = []
    for number, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[rows].to_parquet(folder / f"part.{number:02d}.parquet", index=False, row_group_size=10_000)
        sizes.append(len(rows))
    return GeneratedFiles(csv, folder, sizes)
