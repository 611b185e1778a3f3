"""Texts for a whole table at once, one per row: the findings in words and a one-line summary of the counts.

A CSV batch of a million rows cannot call the JSON renderer per row. The findings' titles depend only on which
findings are present (and, for the few titles a family words per CBC, on a mask that family gives for a whole
table: `title_rows_<code>`), so they are worded once per distinct combination, by the renderer's own code.
The summary line names the counts outside their reference range: each value is written with
`text_numbers` (3 significant figures, never across a threshold, each distinct value once), and the words
after it depend on the flag and grade only. It describes counts; it names no diagnosis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labservice.core.families import family
from labservice.core.families.base import analyte_thresholds
from labservice.core.grading import FLAG_H, FLAG_HH, FLAG_L, FLAG_LL
from labservice.core.interpret import InterpretationTable
from labservice.core.numbers import CodedTexts, coded_texts
from labservice.core.render import finding_titles
from labservice.core.urgency import URGENCY_NAMES
from labservice.core.vocabulary import FINDING

#: How the summary line says a flag (clinical-rules §2 and §3: the reference range in use, the critical limits).
FLAG_WORDS = {FLAG_LL: "critically low", FLAG_HH: "critically high", FLAG_L: "low", FLAG_H: "high"}
#: The flags the summary names, critical ones first.
FLAG_ORDER = ((FLAG_LL, FLAG_HH), (FLAG_L, FLAG_H))
NOTHING_FLAGGED = "No count outside its reference range"
#: Between two findings in words (the codes are joined by ";" alone).
TITLE_SEPARATOR = "; "


def findings_text(result: InterpretationTable) -> pd.Categorical:
    """The titles of each row's findings joined by "; ", as the JSON answer words them, e.g. "Thrombocytopenia
    (platelet count below 150); Neutropenia" (empty for none): one text per distinct combination."""
    present = [np.asarray(f.present, dtype=bool) for f in result.findings.values()]
    codes = list(result.findings)
    bits = present + [rows_of(result) & present[codes.index(code)] for code, rows_of in _title_variants(result).items()]
    combination = _combination(bits, result.n)
    _, first = np.unique(combination, return_index=True)
    texts = [TITLE_SEPARATOR.join(titles) for titles in finding_titles(result, first.tolist())]
    categories, remap = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    return pd.Categorical.from_codes(
        remap.reshape(-1)[combination], categories=pd.Index(categories, dtype=object), validate=False
    )


def _combination(masks: list[np.ndarray], n: int) -> np.ndarray:
    """A number per row for its pattern of masks (0, 1, 2 ... in order of first appearance), 62 masks a word."""
    words = []
    for start in range(0, max(len(masks), 1), 62):
        word = np.zeros(n, dtype=np.int64)
        for position, mask in enumerate(masks[start : start + 62]):
            word |= mask.astype(np.int64) << position
        words.append(word)
    if len(words) == 1:
        return pd.factorize(words[0])[0]
    return pd.MultiIndex.from_arrays(words).factorize()[0]


def _title_variants(result: InterpretationTable) -> dict:
    """code -> the family's `title_rows_<code>` (a mask over the table) for each finding whose title a family
    words per CBC (`title_<code>`). A family that words a title per CBC must give that mask too."""
    rs = result.ruleset
    if "title_variants" not in rs._cache:
        variants = {}
        for spec in rs.finding_specs(FINDING):
            module = family(spec.family)
            if hasattr(module, f"title_{spec.code}"):
                variants[spec.code] = getattr(module, f"title_rows_{spec.code}")
        rs._cache["title_variants"] = variants
    return {code: rows_of for code, rows_of in rs._cache["title_variants"].items() if code in result.findings}


def summary_lines(
    result: InterpretationTable, decimal: str = ".", censored: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    """One line per row (object array): a short sentence per count outside its reference range, critical ones
    first, then the urgency. "Neutrophils 0.4 x10^9/L critically low (CTCAE grade 4). Platelets 45 x10^9/L low
    (CTCAE grade 3). Urgency immediate." Numbers use `decimal` as their decimal mark. `censored` gives, per analyte,
    the text of a censored value (such as "<5") where a row had one, written instead of the value the engine read it
    as. (Sentences, not a list: a line holds no `;` or `,` that a CSV would have to quote.)

    A sentence depends on the value, the flag and the grade only: it is written once per distinct combination and
    rows pick theirs (a row near a threshold, or with a censored value, gets its own). The sentences are then put
    in row order and added up per row in one pass (reduceat)."""
    rows_named: list[np.ndarray] = []
    sentences: list[np.ndarray] = []
    for wanted in FLAG_ORDER:
        for analyte in result.cols.present_analytes():
            flags = np.asarray(result.flags[analyte])
            rows = np.flatnonzero((flags == wanted[0]) | (flags == wanted[1]))
            if rows.size:
                sentences.append(_sentences(result, analyte, rows, decimal, (censored or {}).get(analyte)))
                rows_named.append(rows)
    urgency = np.asarray(result.urgency, dtype=np.intp)
    endings = np.array([f"Urgency {name}." for name in URGENCY_NAMES], dtype=object)
    out = np.array([f"{NOTHING_FLAGGED}. {ending}" for ending in endings], dtype=object)[urgency]
    if sentences:
        row_of = np.concatenate(rows_named)
        order = np.argsort(row_of, kind="stable")  # row order; within a row, the order the sentences were made
        ordered_rows = row_of[order]
        starts = np.flatnonzero(np.r_[True, ordered_rows[1:] != ordered_rows[:-1]])
        named = ordered_rows[starts]
        out[named] = np.add.reduceat(np.concatenate(sentences)[order], starts) + endings[urgency[named]]
    return out


def _sentences(
    result: InterpretationTable, analyte: str, rows: np.ndarray, decimal: str, censored: np.ndarray | None
) -> np.ndarray:
    """The sentence of each of `rows` for one analyte: "Platelets 45 x10^9/L low (CTCAE grade 3). "."""
    rs = result.ruleset
    numbers = _numbers(result, analyte, rows, decimal)
    grade = result.grades.get(analyte)
    grades = np.zeros(rows.size, dtype=np.int64) if grade is None else np.maximum(grade[rows], 0)
    flag_grade = np.asarray(result.flags[analyte])[rows].astype(np.int64) * 16 + grades
    keys, combination = np.unique(numbers.codes * 256 + flag_grade, return_inverse=True)
    combination = combination.reshape(-1)
    label, unit = rs.analytes[analyte].label, rs.unit_text(analyte)

    def sentence(number: str, key: int) -> str:
        grade_words = f" (CTCAE grade {key % 16})" if key % 16 else ""
        return f"{label} {number} {unit} {FLAG_WORDS[key // 16 % 16]}{grade_words}. "

    table = [sentence(numbers.texts[int(k) // 256], int(k) % 256) for k in keys]
    out = np.asarray(table, dtype=object)[combination]
    own = dict(numbers.own)
    if censored is not None:
        shown = np.flatnonzero(censored[rows] != None)  # noqa: E711 (elementwise; None or text)
        own.update({int(i): str(censored[rows][i]).replace(".", decimal) for i in shown.tolist()})
    for i, text in own.items():
        out[i] = sentence(text, int(flag_grade[i]))
    return out


def _numbers(result: InterpretationTable, analyte: str, rows: np.ndarray, decimal: str) -> CodedTexts:
    """The values of `rows` as text, coded, compared with what TextView.num compares them with: the analyte's fixed
    thresholds, the bounds of the range in use and, for haemoglobin, the anaemia cut-offs."""
    compared: list = list(analyte_thresholds(result.ruleset, analyte))
    rng = result.ranges.get(analyte)
    if rng is not None:
        compared += [rng.low[rows], rng.high[rows]]
    if analyte == "hemoglobin":
        compared += [result.anemia.low[rows], result.anemia.high[rows]]
    return coded_texts(result.cols.values[analyte][rows], compared, decimal)
