"""InterpretationTable → a flat DataFrame, one row per CBC, built without a per-row Python loop.

The JSON renderer writes texts per CBC; tables of any size need the decisions as columns:
urgency, finding codes, aplastic-anaemia assessment, skin attribution, and a flag and CTCAE grade
per analyte present. Finding codes are packed as bits per row, so joining them costs one string
per distinct combination, not one per row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labservice.core.aplastic import ASSESSMENT_NAMES
from labservice.core.grading import FLAG_NAMES, GRADED_ANALYTES
from labservice.core.interpret import InterpretationTable
from labservice.core.table import SCHISTOCYTE_GRADES
from labservice.core.urgency import URGENCY_NAMES


def undecided_codes(result: InterpretationTable) -> list[str]:
    """Findings whose "not assessed" is reported, in the order of the JSON answer's not_assessed list
    (the `not_assessed` position of findings.csv; thrombocytosis without platelets is just absent).
    A finding decided by a tri-state or by an `undecided` mask (febrile_neutropenia with fever not
    stated) is listed here as in the JSON answer (api-contract v2: a rule whose input is missing
    lists it as not assessed, on every path)."""
    specs = [result.ruleset.finding(code) for code, f in result.findings.items() if f.not_assessed_mask() is not None]
    return [spec.code for spec in sorted(specs, key=lambda s: s.not_assessed or 0) if spec.not_assessed is not None]


def _joined_codes(masks: list[np.ndarray], codes: list[str], n: int) -> pd.Categorical:
    """'code;code' per row from boolean masks, as a categorical with one string per bit pattern."""
    bits = np.zeros(n, dtype=np.int64)
    for position, mask in enumerate(masks):
        bits |= mask.astype(np.int64) << position
    seen = np.bincount(bits, minlength=1) if n else np.zeros(1, dtype=np.int64)
    patterns = np.flatnonzero(seen)  # distinct patterns, without sorting the rows
    lookup = np.zeros(seen.size, dtype=np.int32)
    lookup[patterns] = np.arange(patterns.size, dtype=np.int32)
    texts = [";".join(code for position, code in enumerate(codes) if int(p) >> position & 1) for p in patterns]
    return pd.Categorical.from_codes(lookup[bits], categories=pd.Index(texts, dtype=object), validate=False)


def _categorical(codes: np.ndarray, names: tuple | list) -> pd.Categorical:
    """Names by integer code as a categorical (cheap for a million rows); None names become missing."""
    names = list(names)
    kept = [name for name in names if name is not None]
    remap = np.array([kept.index(name) if name is not None else -1 for name in names], dtype=np.int8)
    return pd.Categorical.from_codes(remap[codes], categories=pd.Index(kept, dtype=object), validate=False)


def film_texts(result: InterpretationTable) -> np.ndarray | None:
    """What the blood film said, per row ("schistocytes present; blasts seen"), or None when no row sent
    any film field (clinical-rules §10 v2: schistocytes are described even without the pattern)."""
    film = result.cols.film
    grade, percent = film["schistocytes_grade"], film["schistocytes_percent"]
    blasts, confirmed = film["blasts_seen"], film["platelet_count_confirmed"]
    sent = ~np.isnan(grade) | ~np.isnan(percent) | ~np.isnan(blasts) | ~np.isnan(confirmed)
    if not sent.any():
        return None
    out = np.full(result.n, None, dtype=object)
    for row in np.flatnonzero(sent):
        parts = []
        if grade[row] == grade[row]:
            parts.append(f"schistocytes {SCHISTOCYTE_GRADES[int(grade[row])]}")
        if percent[row] == percent[row]:
            parts.append(f"schistocytes {float(percent[row]):g} %")
        if blasts[row] == blasts[row]:
            parts.append("blasts seen" if blasts[row] == 1.0 else "no blasts seen")
        if confirmed[row] == 1.0:
            parts.append("platelet count confirmed on the film")
        out[row] = "; ".join(parts) or None
    return out


def interpretation_frame(result: InterpretationTable) -> pd.DataFrame:
    """The decisions for every row as columns: urgency, findings, not_assessed, aplastic_anemia,
    skin_attribution, and `<analyte>_flag` / `<analyte>_ctcae_grade` for each analyte present."""
    n = result.n
    codes = list(result.findings)
    undecided = undecided_codes(result)
    attribution_names = [b.label for b in result.ruleset.bands["skin_attribution"]] + ["not_assessed", "none"]
    attribution = pd.Categorical(result.skin.attribution, categories=pd.Index(attribution_names, dtype=object))
    columns: dict[str, object] = {
        "urgency": _categorical(result.urgency, URGENCY_NAMES),
        "findings": _joined_codes([f.present for f in result.findings.values()], codes, n),
        "not_assessed": _joined_codes(
            [np.asarray(result.findings[c].not_assessed_mask()) for c in undecided], undecided, n
        ),
        "aplastic_anemia": _categorical(result.aplastic.assessment, ASSESSMENT_NAMES),
        "skin_attribution": attribution,
        "ctcae_version": pd.Categorical(
            result.ctcae_version, categories=pd.Index(list(result.ruleset.ctcae_versions()), dtype=object)
        ),
    }
    film = film_texts(result)
    if film is not None:
        columns["film"] = pd.Categorical(film)
    for analyte in result.cols.present_analytes():
        columns[f"{analyte}_value"] = result.cols.values[analyte]
        columns[f"{analyte}_flag"] = _categorical(result.flags[analyte], FLAG_NAMES)
        if analyte in GRADED_ANALYTES:
            grade = result.grades[analyte]
            columns[f"{analyte}_ctcae_grade"] = pd.arrays.IntegerArray(grade.astype(np.int8), grade <= 0)
        if result.cols.derived[analyte].any():
            columns[f"{analyte}_derived"] = result.cols.derived[analyte]
        imprecise = result.cols.imprecise.get(analyte)
        if imprecise is not None and imprecise.any():
            columns[f"{analyte}_imprecise"] = imprecise  # clinical-rules §1 v2: derived from a WBC below 1.0
    return pd.DataFrame(columns, copy=False)
