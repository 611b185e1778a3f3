"""Generated CBC tables with realistic values for benchmarks (about 10 % abnormal rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from labservice.examples import CONTRACT_EXAMPLE as EXAMPLE_CBC  # noqa: F401 (re-exported)


def generate_cbc_frame(n: int, seed: int = 7, abnormal_fraction: float = 0.10) -> pd.DataFrame:
    """n CBCs in canonical units, mixed sexes and ages, with abnormal and missing values."""
    rng = np.random.default_rng(seed)
    abnormal = rng.random(n) < abnormal_fraction

    def lognormal(center: float, spread: float) -> np.ndarray:
        return np.exp(rng.normal(np.log(center), spread, n))

    platelets = lognormal(250, 0.25)
    platelets[abnormal] = lognormal(60, 0.9)[abnormal]
    wbc = lognormal(7, 0.25)
    wbc[abnormal] = lognormal(3, 0.8)[abnormal]
    neutrophils = wbc * rng.uniform(0.4, 0.7, n)
    hemoglobin = rng.normal(13.8, 1.2, n)
    hemoglobin[abnormal] = rng.normal(9.5, 2.0, n)[abnormal]
    hemoglobin = np.clip(hemoglobin, 3.0, 22.0)
    frame = pd.DataFrame(
        {
            "sex": rng.choice(np.array(["female", "male", "unknown"], dtype=object), n, p=[0.49, 0.49, 0.02]),
            "age_years": np.round(rng.uniform(1, 95, n), 1),
            "platelets": np.round(platelets, 0),
            "wbc": np.round(wbc, 2),
            "neutrophils": np.round(neutrophils, 2),
            "lymphocytes": np.round(wbc * rng.uniform(0.15, 0.4, n), 2),
            "hemoglobin": np.round(hemoglobin, 1),
            "hematocrit": np.round(hemoglobin * 3, 1),
            "rbc": np.round(hemoglobin / 3, 2),
            "mcv": np.round(rng.normal(90, 6, n), 0),
            "reticulocytes": np.where(rng.random(n) < 0.05, np.round(lognormal(60, 0.5), 0), np.nan),
            "fever": np.where(rng.random(n) < 0.02, 1.0, np.nan),
        }
    )
    # Some rows lack an analyte, as real panels do.
    frame.loc[rng.random(n) < 0.05, "neutrophils"] = np.nan
    frame.loc[rng.random(n) < 0.02, "hemoglobin"] = np.nan
    return frame


def generate_lesions(n: int, seed: int = 11, fraction: float = 0.02) -> dict[str, np.ndarray]:
    """One skin lesion for a fraction of the rows, typed by size."""
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(rng.random(n) < fraction)
    return {
        "row": rows,
        "type": np.full(rows.size, "", dtype=object),
        "size_mm": np.round(rng.uniform(0.5, 20, rows.size), 1),
        "blanching": np.where(rng.random(rows.size) < 0.2, 1.0, 0.0),
        "palpable": np.where(rng.random(rows.size) < 0.1, 1.0, 0.0),
    }
