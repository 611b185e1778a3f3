"""Findings from counts: single lineages (§4), combined cytopenias (§5), pitfalls (§8).

Each finding is a column: a boolean mask over the CBC rows, the rule key it came from and the
source tags of that rule. Lineage states are tri-state so that a missing analyte reads as
"not assessed", never as normal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labservice.core.anemia import AnemiaCutoffs
from labservice.core.compare import NO, NOT_ASSESSED, YES, band_index, decide, meets, tristate, tristates
from labservice.core.ranges import RangeInUse
from labservice.core.ruleset import Ruleset
from labservice.core.table import CbcColumns


@dataclass
class FindingColumn:
    """One finding code over all rows."""

    code: str
    present: np.ndarray  # bool
    rule: str  # the rule key in reference_ranges/ (file:key)
    sources: tuple[str, ...]
    grade: np.ndarray | None = None  # int8 CTCAE grade, 0 = none
    extra: dict[str, np.ndarray] = field(default_factory=dict)


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


def _below_lln(values: np.ndarray, rng: RangeInUse) -> np.ndarray:
    out = np.where(values < rng.low, YES, NO).astype(np.int8)
    out[np.isnan(values) | np.isnan(rng.low)] = NOT_ASSESSED
    return out


def single_lineage(
    cols: CbcColumns, ranges: dict[str, RangeInUse], grades: dict[str, np.ndarray], anemia: AnemiaCutoffs, rs: Ruleset
) -> tuple[dict[str, FindingColumn], dict[str, np.ndarray]]:
    """Thrombocytopenia, thrombocytosis, anaemia, neutropenia, leukopenia, lymphopenia.

    Returns the findings and the tri-state per finding (for "not assessed" reporting).
    """
    v = cols.values
    plt, neut, hb = v["platelets"], v["neutrophils"], v["hemoglobin"]
    states: dict[str, np.ndarray] = {}

    t = rs.threshold("thrombocytopenia")
    states["thrombocytopenia"] = tristate(plt, t)
    thrombocytopenia = FindingColumn(
        "thrombocytopenia",
        states["thrombocytopenia"] == YES,
        "thresholds.csv:thrombocytopenia",
        t.sources + rs.threshold("thrombocytopenia_often_benign").sources + ("S3", "S4", "S5"),
        grade=grades["platelets"],
        extra={
            "bleeding_band": band_index(plt, rs.bands["platelet_bleeding_risk"]),
            "often_benign_range": meets(plt, rs.threshold("thrombocytopenia_often_benign")),
        },
    )

    t = rs.threshold("thrombocytosis")
    states["thrombocytosis"] = tristate(plt, t)
    thrombocytosis = FindingColumn(
        "thrombocytosis", states["thrombocytosis"] == YES, "thresholds.csv:thrombocytosis", t.sources
    )

    states["anemia"] = anemia.state
    # WHO 2011 severity bands are applied to non-pregnant people from 15 years only.
    who_adult = rs.threshold("anemia_severity_from_age_years")
    adult = (np.isnan(cols.age_years) | meets(cols.age_years, who_adult)) & (cols.pregnant != 1.0)
    severity = band_index(hb, rs.bands["anemia_severity_adult"])
    severity[~adult] = -1
    anemia_finding = FindingColumn(
        "anemia",
        anemia.state == YES,
        "anemia_cutoffs.csv",
        ("S9", "S3"),
        grade=grades["hemoglobin"],
        extra={"severity": severity},
    )

    duffy = cols.duffy_null == 1.0
    t_neut, t_duffy = rs.threshold("neutropenia"), rs.threshold("neutropenia_duffy_null")
    neutropenic = np.where(duffy, meets(neut, t_duffy), meets(neut, t_neut))
    states["neutropenia"] = np.where(np.isnan(neut), NOT_ASSESSED, np.where(neutropenic, YES, NO)).astype(np.int8)
    neutropenia = FindingColumn(
        "neutropenia",
        neutropenic,
        "thresholds.csv:neutropenia",
        (*t_neut.sources, "S3"),
        grade=grades["neutrophils"],
        extra={
            "severity": band_index(neut, rs.bands["neutropenia_severity"]),
            "duffy_null": duffy,
            "derived": cols.derived["neutrophils"],
        },
    )

    states["leukopenia"] = _below_lln(v["wbc"], ranges["wbc"])
    leukopenia = FindingColumn(
        "leukopenia", states["leukopenia"] == YES, "ranges:wbc.low", ("S14", "S3"), grade=grades["wbc"]
    )
    states["lymphopenia"] = _below_lln(v["lymphocytes"], ranges["lymphocytes"])
    lymphopenia = FindingColumn(
        "lymphopenia",
        states["lymphopenia"] == YES,
        "ranges:lymphocytes.low",
        ("S14", "S3"),
        grade=grades["lymphocytes"],
    )
    findings = {
        f.code: f for f in (thrombocytopenia, thrombocytosis, anemia_finding, neutropenia, leukopenia, lymphopenia)
    }
    return findings, states


def lineages_from(states: dict[str, np.ndarray], cols: CbcColumns) -> Lineages:
    """Red = anaemia; white = leukopenia or neutropenia; platelets = thrombocytopenia (§5).

    White is low if either is low; not low if one is assessed not low and the other was either
    assessed not low or not sent; otherwise (a WBC sent with no range to judge it) not assessed.
    """
    leuko, neutro = states["leukopenia"], states["neutropenia"]
    wbc_undecided = (leuko == NOT_ASSESSED) & ~np.isnan(cols.values["wbc"])
    white = np.full(cols.n, NOT_ASSESSED, dtype=np.int8)
    white[((leuko == NO) | (neutro == NO)) & ~wbc_undecided] = NO
    white[(leuko == YES) | (neutro == YES)] = YES
    return Lineages(red=states["anemia"], white=white, platelets=states["thrombocytopenia"])


def combined(
    cols: CbcColumns, lineages: Lineages, rs: Ruleset
) -> tuple[dict[str, FindingColumn], dict[str, np.ndarray]]:
    """Bicytopenia, pancytopenia and the marrow-failure range."""
    low, unknown = lineages.counts()
    states = {"pancytopenia": decide(low, unknown, 3)}
    # Bicytopenia is exactly two low: three low is pancytopenia, not bicytopenia.
    bicytopenia_state = decide(low, unknown, 2)
    bicytopenia_state[low == 3] = NO
    states["bicytopenia"] = bicytopenia_state
    # Two low with the third unknown is bicytopenia that might be pancytopenia: report it as
    # bicytopenia and let the pancytopenia state say "not assessed".
    bicytopenia = FindingColumn(
        "bicytopenia",
        low == 2,
        "combined:two_lineages_low",
        ("S11",),
        extra={"third_unknown": (low == 2) & (unknown == 1)},
    )
    pancytopenia = FindingColumn("pancytopenia", low == 3, "combined:three_lineages_low", ("S11", "S22"))

    v = cols.values
    criteria = tristates(
        [v["hemoglobin"], v["neutrophils"], v["platelets"]],
        [rs.threshold(f"marrow_failure_{a}") for a in ("hemoglobin", "neutrophils", "platelets")],
    )
    met = np.add.reduce(criteria == YES, axis=0, dtype=np.int8)
    undecided = np.add.reduce(criteria == NOT_ASSESSED, axis=0, dtype=np.int8)
    states["marrow_failure_range"] = decide(met, undecided, rs.value("marrow_failure_min_criteria"))
    marrow = FindingColumn(
        "marrow_failure_range",
        states["marrow_failure_range"] == YES,
        "thresholds.csv:marrow_failure_*",
        rs.threshold("marrow_failure_platelets").sources,
        extra={"hb": criteria[0], "neut": criteria[1], "plt": criteria[2]},
    )
    return {f.code: f for f in (bicytopenia, pancytopenia, marrow)}, states


def critical_value(criticals: dict[str, np.ndarray], rs: Ruleset) -> FindingColumn:
    any_critical = np.zeros_like(next(iter(criticals.values())))
    tags: list[str] = []
    for key, hit in criticals.items():
        any_critical = any_critical | hit
        tags.extend(t for t in rs.threshold(key).sources if t not in tags)
    return FindingColumn(
        "critical_value",
        any_critical,
        "thresholds.csv:critical_*",
        tuple(tags),
        extra={key: hit for key, hit in criticals.items()},
    )


def pitfalls(
    cols: CbcColumns, lineages: Lineages, hemorrhagic_lesions: np.ndarray, rs: Ruleset
) -> dict[str, FindingColumn]:
    """Possible pseudothrombocytopenia and possible gestational thrombocytopenia (§8)."""
    thrombocytopenic = lineages.platelets == YES
    clumps = cols.platelet_clumps == 1.0
    isolated = thrombocytopenic & (lineages.red == NO) & (lineages.white == NO)
    no_bleeding = hemorrhagic_lesions == 0
    pseudo = (clumps & ~np.isnan(cols.values["platelets"])) | (isolated & no_bleeding)
    pseudo_finding = FindingColumn(
        "possible_pseudothrombocytopenia",
        pseudo,
        "pitfalls:pseudothrombocytopenia",
        ("S21",),
        extra={"clumps": clumps, "skin_reported": cols.skin_reported},
    )
    plt = cols.values["platelets"]
    gestational = (
        (cols.pregnant == 1.0)
        & meets(plt, rs.threshold("gestational_platelets_from"))
        & meets(plt, rs.threshold("gestational_platelets_below"))
        & (lineages.red == NO)
        & (lineages.white == NO)
    )
    gestational_finding = FindingColumn(
        "gestational_thrombocytopenia_possible",
        gestational,
        "thresholds.csv:gestational_platelets_*",
        ("S1",),
        extra={"usual": meets(plt, rs.threshold("gestational_platelets_usual"))},
    )
    return {f.code: f for f in (pseudo_finding, gestational_finding)}
