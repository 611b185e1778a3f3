"""Wide CBC CSV files shaped like a LIS export, for the batch benchmark.

One line per CBC: `Sample ID`, `Patient ID`, `Sex` (M/F, empty when unknown), `Age`, `Collected`
(ISO datetime) and the analytes with their units in the header. Values come from
generate_cbc_frame (about 10 % abnormal). About 1 % of the lines are bad: non-numeric results,
censored results (`<5`), implausible platelet counts (210000 in a 10^9/L column) and a few lines
with too many fields. Sample IDs are unique.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from cbc_data import generate_cbc_frame

#: Header → (generate_cbc_frame column, decimals written).
ANALYTE_COLUMNS: dict[str, tuple[str, int]] = {
    "PLT (10^9/L)": ("platelets", 0),
    "WBC (10^9/L)": ("wbc", 2),
    "NEUT# (10^9/L)": ("neutrophils", 2),
    "LYMPH# (10^9/L)": ("lymphocytes", 2),
    "HGB (g/dL)": ("hemoglobin", 1),
    "HCT (%)": ("hematocrit", 1),
    "RBC (10^12/L)": ("rbc", 2),
    "MCV (fL)": ("mcv", 0),
}
HEADER = ("Sample ID", "Patient ID", "Sex", "Age", "Collected", *ANALYTE_COLUMNS)
NON_NUMERIC = np.array(["UNABLE TO REPORT", "abc", "CLOTTED"], dtype=object)
CENSORED = {"PLT (10^9/L)": "<5", "WBC (10^9/L)": "<0.1", "NEUT# (10^9/L)": "<0.05", "LYMPH# (10^9/L)": "<0.1"}
EXTRA_FIELD = ",SEE NOTE"
#: Share of the bad lines that get too many fields (at least one line); the others split by BAD_SHARES.
TOO_MANY_FIELDS_SHARE = 0.05
BAD_SHARES = {"non_numeric": 0.37, "censored": 0.32, "implausible": 0.31}


@dataclass
class CsvFacts:
    """What was written: data lines (one CBC each) and how many of them are bad, by kind."""

    path: Path
    rows: int
    bad: dict[str, int]

    @property
    def megabytes(self) -> float:
        return self.path.stat().st_size / 2**20


def format_numbers(values: np.ndarray, decimals: int) -> np.ndarray:
    """Numbers as text with a fixed number of decimals; NaN → empty cell."""
    out = np.full(values.size, "", dtype=object)
    present = ~np.isnan(values)
    out[present] = np.char.mod(f"%.{decimals}f", values[present]).astype(object)
    return out


def context_columns(frame: pd.DataFrame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sample and patient IDs, sex as M/F, whole-year age and an ISO collection time."""
    n = len(frame)
    sample_ids = np.char.add("S", np.char.zfill(rng.permutation(n).astype(str), 9))
    patients = rng.integers(1, max(2, n // 3), n)
    patient_ids = np.char.add("P", np.char.zfill(patients.astype(str), 8))
    sex = frame["sex"].map({"female": "F", "male": "M", "unknown": ""}).to_numpy(dtype=object)
    start = np.datetime64("2025-01-01T00:00:00")
    collected = start + rng.integers(0, 365 * 24 * 3600, n).astype("timedelta64[s]")
    return {
        "Sample ID": sample_ids.astype(object),
        "Patient ID": patient_ids.astype(object),
        "Sex": sex,
        "Age": np.floor(frame["age_years"].to_numpy()).astype(np.int64).astype(str).astype(object),
        "Collected": np.datetime_as_string(np.sort(collected), unit="s").astype(object),
    }


def split_bad_rows(n: int, rng: np.random.Generator, fraction: float) -> dict[str, np.ndarray]:
    """Disjoint row indices per kind of bad line; at least one too-many-fields line when any are bad."""
    chosen = rng.permutation(n)[: round(n * fraction)]
    too_many = max(1, round(chosen.size * TOO_MANY_FIELDS_SHARE)) if chosen.size else 0
    kinds = {"too_many_fields": chosen[:too_many]}
    rest = chosen[too_many:]
    bounds = np.round(np.cumsum([0.0, *BAD_SHARES.values()]) * rest.size).astype(int)
    for (kind, _), start, stop in zip(BAD_SHARES.items(), bounds[:-1], bounds[1:], strict=True):
        kinds[kind] = rest[start:stop]
    return kinds


def spoil(cells: dict[str, np.ndarray], bad: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Write the bad values into the text columns (in place)."""
    analytes = list(ANALYTE_COLUMNS)
    for row in bad["non_numeric"]:
        cells[analytes[rng.integers(len(analytes))]][row] = NON_NUMERIC[rng.integers(NON_NUMERIC.size)]
    censored = list(CENSORED)
    for row in bad["censored"]:
        header = censored[rng.integers(len(censored))]
        cells[header][row] = CENSORED[header]
    plt = cells["PLT (10^9/L)"]
    plt[bad["implausible"]] = np.char.mod("%d", rng.integers(150, 400, bad["implausible"].size) * 1000)


def write_wide_csv(path: Path, n: int, seed: int = 7, bad_fraction: float = 0.01) -> CsvFacts:
    """Write n CBCs to path as a wide LIS-style CSV; returns what was written."""
    rng = np.random.default_rng(seed + 1)
    frame = generate_cbc_frame(n, seed=seed)
    cells = context_columns(frame, rng)
    for header, (column, decimals) in ANALYTE_COLUMNS.items():
        cells[header] = format_numbers(frame[column].to_numpy(dtype=np.float64), decimals)
    bad = split_bad_rows(n, rng, bad_fraction)
    spoil(cells, bad, rng)
    lines = cells[HEADER[0]]
    for header in HEADER[1:]:
        lines = lines + "," + cells[header]  # object arrays: elementwise str concatenation
    lines[bad["too_many_fields"]] += EXTRA_FIELD
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(HEADER) + "\n")
        out.write("\n".join(lines.tolist()) + "\n")
    return CsvFacts(path, n, {kind: int(rows.size) for kind, rows in bad.items()})
