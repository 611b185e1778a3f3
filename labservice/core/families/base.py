"""What the families share: the finding column, the evaluation stage and the text helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from labservice.core.anemia import AnemiaCutoffs
from labservice.core.compare import NOT_ASSESSED, YES
from labservice.core.ranges import RangeInUse
from labservice.core.ruleset import Ruleset
from labservice.core.table import CbcColumns

if TYPE_CHECKING:
    from labservice.core.aplastic import AplasticAssessment
    from labservice.core.interpret import InterpretationTable
    from labservice.core.skin import SkinAssessment

LINEAGE_ANALYTES = {"red": ["hemoglobin"], "white": ["wbc", "neutrophils"], "platelets": ["platelets"]}


@dataclass
class FindingColumn:
    """One finding code over all rows: where it is present and the decisions its texts read."""

    code: str
    present: np.ndarray  # bool
    grade: np.ndarray | None = None  # int8 CTCAE grade, 0 = none
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    raises: np.ndarray | None = None  # bool: rows where it raises its urgency (None: where present)
    state: np.ndarray | None = None  # int8 tri-state, for findings that can be "not assessed"
    undecided: np.ndarray | None = None  # bool: rows where it is listed as not assessed

    def urgency_mask(self) -> np.ndarray:
        return self.present if self.raises is None else self.raises

    def not_assessed_mask(self) -> np.ndarray | None:
        if self.undecided is not None:
            return self.undecided
        return None if self.state is None else self.state == NOT_ASSESSED


@dataclass
class Lineages:
    """Tri-state per lineage: YES low, NO not low, NOT_ASSESSED."""

    red: np.ndarray
    white: np.ndarray
    platelets: np.ndarray

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Per row: how many lineages are low, and how many were not assessed."""
        stacked = np.array([self.red, self.white, self.platelets])
        return np.add.reduce(stacked == YES, axis=0, dtype=np.int8), np.add.reduce(
            stacked == NOT_ASSESSED, axis=0, dtype=np.int8
        )


@dataclass
class Stage:
    """The engine's state while the families run: inputs, then what each family adds."""

    cols: CbcColumns
    rs: Ruleset
    ranges: dict[str, RangeInUse]
    criticals: dict[str, np.ndarray]
    grades: dict[str, np.ndarray]
    anemia: AnemiaCutoffs
    findings: dict[str, FindingColumn] = field(default_factory=dict)
    states: dict[str, np.ndarray] = field(default_factory=dict)  # tri-state per assessable finding
    lineages: Lineages | None = None  # set by the counts family
    aplastic: AplasticAssessment | None = None  # set by the aplastic family
    skin: SkinAssessment | None = None  # set by the skin family
    film_reported: np.ndarray | None = None  # bool, set by the film family: schistocytes or blasts reported
    flags: dict[str, np.ndarray] = field(default_factory=dict)  # int8 flag codes per analyte (core.grading)


def cite_tags(tags) -> str:
    """Source tags as a text cites them: [S1][S2]."""
    return "".join(f"[{tag}]" for tag in tags)


def fmt(x: float) -> str:
    """A number as short text (45, 0.4, 8.2)."""
    return f"{float(x):g}"


def json_number(x: float | None) -> float | None:
    """A JSON number rounded to 4 decimals, None for missing (round on a Python float: numpy's is slow)."""
    if x is None:
        return None
    x = float(x)
    return None if x != x else round(x, 4)


class TextView:
    """What a family's texts read for one CBC: the result `r`, the ruleset `rs`, thresholds as text `t`."""

    r: InterpretationTable
    rs: Ruleset
    t: dict[str, str]

    def v(self, analyte: str, i: int) -> float:
        return float(self.r.cols.values[analyte][i])

    def extra(self, code: str, key: str, i: int) -> Any:
        return self.r.findings[code].extra[key][i]

    def grade_text(self, analyte: str, i: int) -> str:
        grade = int(self.r.grades[analyte][i])
        version = str(self.r.ctcae_version[i])
        if grade <= 0:
            term = self.ctcae_missing_term(version, analyte)
            return f"not graded: {term}" if term else "no CTCAE grade"
        return f"CTCAE v{version} grade {grade} {self.ctcae_tags(version, analyte, grade)}"

    def ctcae_missing_term(self, version: str, analyte: str) -> str | None:
        """Why a CTCAE version grades no value of an analyte (v6.0 has no lymphocyte term, §4 v2),
        or None when the version has rows for it. Read from ctcae.csv: a version with no row for an
        analyte has no term for it, and its notes name the terms it does have."""
        key = ("ctcae_missing_term", version, analyte)
        if key not in self.rs._cache:
            rows = [r for r in self.rs.ctcae if r.version == version]
            text = None
            if rows and not any(r.analyte == analyte for r in rows):
                label = self.rs.analytes[analyte].label.lower()
                tags = cite_tags(dict.fromkeys(tag for r in rows for tag in r.sources))
                text = (
                    f"CTCAE v{version} has no {self.rs.analytes[analyte].label} term {tags}, so the {label} "
                    f"count has no v{version} grade (the finding stands)"
                )
            self.rs._cache[key] = text
        return self.rs._cache[key]

    def span(self, low_key: str, high_key: str) -> str:
        """The values that meet a lower-bound rule and an upper-bound rule of thresholds.csv, in
        words from their values and operators only: "from 100 to below 150" (>= 100, < 150). No
        bound is computed (no "100-149"), so the text never crosses or invents one."""
        key = ("span", low_key, high_key)
        if key not in self.rs._cache:
            low, high = self.rs.threshold(low_key), self.rs.threshold(high_key)
            starts, ends = {">=": "from", ">": "above"}, {"<": "to below", "<=": "up to"}
            if low.operator not in starts or high.operator not in ends:
                raise ValueError(
                    f"{low_key} {low.operator} / {high_key} {high.operator} is not a lower and an upper bound"
                )
            self.rs._cache[key] = f"{starts[low.operator]} {fmt(low.value)} {ends[high.operator]} {fmt(high.value)}"
        return self.rs._cache[key]

    def tags(self, threshold_key: str) -> str:
        """The source tags of a thresholds.csv rule, as a text cites them: [S1][S2]."""
        key = ("threshold_tags", threshold_key)
        if key not in self.rs._cache:
            self.rs._cache[key] = cite_tags(self.rs.threshold(threshold_key).sources)
        return self.rs._cache[key]

    def ctcae_tags(self, version: str, analyte: str, grade: int) -> str:
        key = ("ctcae_tags", version, analyte, grade)
        if key not in self.rs._cache:
            rows = [r for r in self.rs.ctcae if (r.version, r.analyte, r.grade) == (version, analyte, grade)]
            self.rs._cache[key] = cite_tags(dict.fromkeys(tag for r in rows for tag in r.sources))
        return self.rs._cache[key]

    def band(self, scheme: str, index: int):
        return self.rs.bands[scheme][index] if index >= 0 else None

    def low_lineages(self, i: int) -> tuple[list[str], list[str]]:
        """The low lineages in words, and the keys of those not assessed."""
        lin = self.r.lineages
        names = {
            "red": "red cells (anaemia)",
            "white": "white cells (leukopenia or neutropenia)",
            "platelets": "platelets (thrombocytopenia)",
        }
        low = [names[k] for k in names if getattr(lin, k)[i] == YES]
        unknown = [k for k in names if getattr(lin, k)[i] == NOT_ASSESSED]
        return low, unknown

    def lineage_evidence(self, i: int) -> dict:
        return {
            a: json_number(self.v(a, i))
            for a in ("hemoglobin", "wbc", "neutrophils", "platelets")
            if not math.isnan(self.v(a, i))
        }

    def missing(self, i: int) -> set[str]:
        return {a for a in self.r.cols.values if math.isnan(self.r.cols.values[a][i])}
