"""What the families share: the finding column, the evaluation stage and the text helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from labservice.core.anemia import AnemiaCutoffs
from labservice.core.compare import NOT_ASSESSED, YES
from labservice.core.numbers import text_number
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


def analyte_thresholds(rs: Ruleset, analyte: str) -> tuple[float, ...]:
    """Every fixed threshold an analyte's value may be compared with (thresholds.csv, ctcae.csv
    bounds, bands in its unit), so a text never writes the value across one (§1 v2)."""
    key = ("analyte_thresholds", analyte)
    if key not in rs._cache:
        unit = rs.analytes[analyte].canonical_unit if analyte in rs.analytes else None
        values = [t.value for t in rs.thresholds.values() if t.analyte == analyte]
        values += [r.bound for r in rs.ctcae if r.analyte == analyte and r.bound is not None]
        values += [
            bound
            for bands in rs.bands.values()
            for band in bands
            if band.unit == unit
            for bound in (band.lower, band.upper)
        ]
        rs._cache[key] = tuple(sorted({float(v) for v in values if v == v}))
    return rs._cache[key]


def cite_tags(tags) -> str:
    """Source tags as a text cites them: [S1][S2]."""
    return "".join(f"[{tag}]" for tag in tags)


def fmt(x: float) -> str:
    """A number of the rule tables as short text (45, 0.4, 8.2). A measured or computed value is
    written with TextView.num (3 significant figures, never across a threshold: §1 v2)."""
    return f"{float(x):g}"


def json_number(x: float | None) -> float | None:
    """A JSON number, None for missing. Not rounded: a value keeps at least the digits that were sent,
    and every computed number is already rounded to 6 significant figures (clinical-rules §1 v2)."""
    if x is None:
        return None
    x = float(x)
    return None if x != x else x


class TextView:
    """What a family's texts read for one CBC: the result `r`, the ruleset `rs`, thresholds as text `t`."""

    r: InterpretationTable
    rs: Ruleset
    t: dict[str, str]

    def v(self, analyte: str, i: int) -> float:
        return float(self.r.cols.values[analyte][i])

    def num(self, analyte: str, i: int, value: float | None = None) -> str:
        """An analyte's value (or `value`, in its canonical unit) as text: 3 significant figures, with
        more where fewer would put it across, or onto, a threshold of that analyte: a bound of the
        range in use, a rule of thresholds.csv, a CTCAE bound, a band, a WHO anaemia cut-off
        (clinical-rules §1 v2: 149.99 is written 149.99, not 150; never a raw float such as 0.540336)."""
        x = self.v(analyte, i) if value is None else float(value)
        bounds = [*analyte_thresholds(self.rs, analyte)]
        rng = self.r.ranges.get(analyte)
        if rng is not None:
            bounds += [float(rng.low[i]), float(rng.high[i])]
        if analyte == "hemoglobin":
            bounds += [float(self.r.anemia.low[i]), float(self.r.anemia.high[i])]
        return text_number(x, bounds)

    def derived_text(self, analyte: str, i: int) -> str:
        """What a text says of a count derived from WBC x a percentage (clinical-rules §1, lymphocytes
        and imprecision v2), or "" for a measured count."""
        if not self.r.cols.derived[analyte][i]:
            return ""
        label = self.rs.analytes[analyte].label.lower()
        text = f"The absolute count was derived from WBC x {label} %, not measured."
        imprecise = self.r.cols.imprecise.get(analyte)
        if imprecise is not None and imprecise[i]:
            th = self.rs.threshold("derived_count_imprecise_wbc")
            text += (
                f" It rests on an automated differential of very few cells (WBC {self.num('wbc', i)}, "
                f"{th.operator} {fmt(th.value)} {self.rs.unit_text('wbc')}), so it is imprecise."
            )
        return text

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
