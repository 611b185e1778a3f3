"""The columnar CBC table: the one shape every adapter produces and the engine consumes.

One row per CBC. Analyte columns hold canonical units (NaN = not sent). Tri-state context
(pregnant, duffy_null, fever, platelet_clumps, myelosuppressive_therapy) is 1.0 / 0.0 / NaN so that "not stated" stays
distinct from "no". Skin lesions are a second, long table keyed by the CBC row number.

Adapters may hand the engine a pandas DataFrame (batches) or a plain mapping of numpy arrays
(single requests, where building a DataFrame would cost more than interpreting).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from labservice.core.vocabulary import ANALYTES, CTCAE_DEFAULT_VERSION

SEX_CODES = {"unknown": 0, "female": 1, "male": 2}
TRISTATE_COLUMNS = ("pregnant", "duffy_null", "fever", "platelet_clumps", "myelosuppressive_therapy")
NUMBER_COLUMNS = ("age_years", "pregnancy_trimester", "marrow_cellularity", "marrow_residual")
#: The blood film and the context PLASMIC reads (clinical-rules §10 v2), 1.0 / 0.0 / NaN or a number:
#: schistocytes as a percentage of red cells and as a grade (SCHISTOCYTE_GRADES index), blasts seen on
#: the film, the film confirming the platelet count, and the caller's statements for the PLASMIC items.
FILM_COLUMNS = (
    "schistocytes_percent",
    "schistocytes_grade",
    "blasts_seen",
    "platelet_count_confirmed",
    "active_cancer",
    "transplant",
    "haptoglobin_undetectable",
    "inr",
    "creatinine_mg_dl",
    "indirect_bilirubin_mg_dl",
)
SCHISTOCYTE_GRADES = ("none", "present", "many")
LESION_COLUMNS = ("row", "type", "size_mm", "blanching", "palpable", "site")
LESION_TYPES = ("petechiae", "purpura", "ecchymosis")
#: A critical flag the laboratory sent with a result (FHIR Observation.interpretation, HL7 v2 OBX-8;
#: clinical-rules §3 v2), as the int8 codes of a `<analyte>_lab_flag` column (0 or NaN: none).
LAB_FLAG_CODES = {"LL": 1, "HH": 2, "AA": 3}


@dataclass
class CbcColumns:
    """The engine's view of a CBC table: numpy arrays only, all of length n."""

    n: int
    values: dict[str, np.ndarray]  # analyte -> float64 canonical values (all NaN if not sent)
    ref_low: dict[str, np.ndarray]  # analyte -> float64 lab range low (NaN = not sent)
    ref_high: dict[str, np.ndarray]
    derived: dict[str, np.ndarray]  # analyte -> bool, computed rather than measured
    sex: np.ndarray  # int8 codes of SEX_CODES
    age_years: np.ndarray
    pregnant: np.ndarray
    pregnancy_trimester: np.ndarray
    duffy_null: np.ndarray
    fever: np.ndarray
    platelet_clumps: np.ndarray
    myelosuppressive_therapy: np.ndarray  # context: marrow-suppressing treatment in the last 6 weeks (§11)
    skin_reported: np.ndarray
    reticulocyte_manual: np.ndarray  # bool
    reticulocyte_method_known: np.ndarray  # bool
    marrow_cellularity: np.ndarray
    marrow_residual: np.ndarray
    ctcae_version: np.ndarray  # object array of version strings
    lesions: dict[str, np.ndarray]  # LESION_COLUMNS -> arrays of one length (may be 0)
    film: dict[str, np.ndarray] = field(default_factory=dict)  # FILM_COLUMNS -> float64 (NaN = not sent)
    #: analyte -> bool, a count derived from a WBC below 1.0 (clinical-rules §1 v2); absent = none
    imprecise: dict[str, np.ndarray] = field(default_factory=dict)
    _present: list[str] | None = None
    #: analyte -> int8 LAB_FLAG_CODES per row, only for analytes where some row carries one
    lab_flags: dict[str, np.ndarray] = field(default_factory=dict)

    def present_analytes(self) -> list[str]:
        """Analytes with at least one value in the table (the others are skipped by the engine)."""
        if self._present is None:
            self._present = [a for a in ANALYTES if np.count_nonzero(self.values[a] == self.values[a])]
        return self._present

    def mark_changed(self) -> None:
        """Call after replacing a values column (derivation), so present_analytes is recomputed."""
        self._present = None


def _column(table, name: str, n: int) -> np.ndarray | None:
    if name not in table:
        return None
    column = table[name]
    array = column.to_numpy() if hasattr(column, "to_numpy") else np.asarray(column)
    if array.shape != (n,):
        array = np.broadcast_to(array, (n,))
    return array


def _floats(array: np.ndarray | None, n: int, missing: np.ndarray | None = None) -> np.ndarray:
    if array is None:
        return missing if missing is not None else np.full(n, np.nan)
    if array.dtype.kind == "f":
        return array.astype(np.float64, copy=False)
    if array.dtype.kind in "iub":
        return array.astype(np.float64)
    # Object columns (None / pd.NA / bool / number), converted in C by pandas.
    return pd.to_numeric(pd.Series(array), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _texts(array: np.ndarray | None, n: int, default: str) -> np.ndarray:
    """An object array of strings; missing entries (None, NA, '') become `default`."""
    if array is None:
        return np.full(n, default, dtype=object)
    if array.dtype.kind == "U" and not (array == "").any():
        return array  # already clean (the JSON adapter builds these)
    out = np.asarray(array, dtype=object).copy()
    out[pd.isna(out) | (out == "")] = default  # None, NaN and pd.NA, in C
    return out


def _table_length(table) -> int:
    if hasattr(table, "shape") and hasattr(table, "columns"):
        return int(table.shape[0])
    lengths = {len(np.atleast_1d(table[key])) for key in table if key != "lesions"}
    if len(lengths) > 1:
        raise ValueError(f"columns differ in length: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def to_columns(table: Mapping | object, lesions: Mapping | object | None = None) -> CbcColumns:
    """Read a DataFrame or a mapping of arrays into CbcColumns (no copies for float columns)."""
    n = _table_length(table)
    nan = np.full(n, np.nan)
    nan.flags.writeable = False  # shared by every column that was not sent
    none = np.zeros(n, dtype=bool)
    none.flags.writeable = False
    values = {a: _floats(_column(table, a, n), n, nan) for a in ANALYTES}
    present = [a for a in ANALYTES if values[a] is not nan and np.count_nonzero(values[a] == values[a])]
    ref_low = {a: _floats(_column(table, a + "_ref_low", n), n, nan) for a in ANALYTES}
    ref_high = {a: _floats(_column(table, a + "_ref_high", n), n, nan) for a in ANALYTES}
    derived = {}
    for a in ANALYTES:
        flag = _column(table, a + "_derived", n)
        derived[a] = none if flag is None else _floats(flag, n) == 1.0
    sex_text = _texts(_column(table, "sex", n), n, "unknown")
    sex = np.zeros(n, dtype=np.int8)
    sex[sex_text == "female"] = SEX_CODES["female"]
    sex[sex_text == "male"] = SEX_CODES["male"]
    lab_flags = {}
    for a in ANALYTES:
        sent = _column(table, a + "_lab_flag", n)
        if sent is not None:
            codes = np.nan_to_num(_floats(sent, n)).astype(np.int8)
            if np.count_nonzero(codes):
                lab_flags[a] = codes
    method = _texts(_column(table, "reticulocyte_method", n), n, "")
    skin = _column(table, "skin_reported", n)
    if lesions is None and isinstance(table, Mapping):
        lesions = table.get("lesions")
    context: dict[str, Any] = {
        name: _floats(_column(table, name, n), n) for name in (*TRISTATE_COLUMNS, *NUMBER_COLUMNS)
    }
    return CbcColumns(
        n=n,
        values=values,
        ref_low=ref_low,
        ref_high=ref_high,
        derived=derived,
        sex=sex,
        **context,
        skin_reported=np.zeros(n, dtype=bool) if skin is None else _floats(skin, n) == 1.0,
        reticulocyte_manual=method == "manual",
        reticulocyte_method_known=(method == "manual") | (method == "automated"),
        ctcae_version=_texts(_column(table, "ctcae_version", n), n, CTCAE_DEFAULT_VERSION),
        lesions=_lesion_columns(lesions),
        film={name: _floats(_column(table, name, n), n, nan) for name in FILM_COLUMNS},
        _present=present,
        lab_flags=lab_flags,
    )


def _lesion_columns(lesions) -> dict[str, np.ndarray]:
    if lesions is None:
        return {
            "row": np.zeros(0, dtype=np.int64),
            "type": np.zeros(0, dtype=object),
            "size_mm": np.zeros(0),
            "blanching": np.zeros(0),
            "palpable": np.zeros(0),
            "site": np.zeros(0, dtype=object),
        }
    m = len(lesions["row"])
    return {
        "row": np.asarray(lesions["row"], dtype=np.int64),
        "type": _texts(np.asarray(lesions["type"], dtype=object) if "type" in lesions else None, m, ""),
        "size_mm": _floats(np.asarray(lesions["size_mm"]) if "size_mm" in lesions else None, m),
        "blanching": _floats(np.asarray(lesions["blanching"]) if "blanching" in lesions else None, m),
        "palpable": _floats(np.asarray(lesions["palpable"]) if "palpable" in lesions else None, m),
        "site": np.asarray(lesions["site"], dtype=object) if "site" in lesions else np.full(m, None, dtype=object),
    }
