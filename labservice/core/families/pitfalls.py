"""Pitfalls (clinical-rules §8): possible pseudothrombocytopenia, possible gestational
thrombocytopenia (*v2*: only with the rest of the CBC known to be normal) and (*v2*) the sample-integrity
check (MCHC above what a valid sample can hold)."""

from __future__ import annotations

import numpy as np

from labservice.core.compare import NO, YES, meets
from labservice.core.families.base import FindingColumn, Stage, TextView
from labservice.core.grading import FLAG_L, FLAG_N, FLAG_NONE
from labservice.core.numbers import round_sig


def _inside_range(stage: Stage, analyte: str) -> np.ndarray:
    """Sent, with a range in use, and not flagged outside it (a value on a bound is inside, §2)."""
    value, rng = stage.cols.values[analyte], stage.ranges[analyte]
    has_range = ~np.isnan(rng.low) | ~np.isnan(rng.high)
    return ~np.isnan(value) & has_range & ~(value < rng.low) & ~(value > rng.high)


def evaluate(stage: Stage) -> dict[str, FindingColumn]:
    cols, rs, lineages, skin = stage.cols, stage.rs, stage.lineages, stage.skin
    assert lineages is not None and skin is not None, "the counts and skin families run first"
    thrombocytopenic = lineages.platelets == YES
    clumps = cols.platelet_clumps == 1.0
    confirmed = cols.film["platelet_count_confirmed"] == 1.0
    film_reported = stage.film_reported if stage.film_reported is not None else np.zeros(cols.n, dtype=bool)
    # §8 v2: "isolated" and "no bleeding signs" must both be known. White cells: every one of WBC and
    # neutrophils that was sent is inside its range, and at least one was sent; haemoglobin likewise.
    white_sent = ~np.isnan(cols.values["wbc"]) | ~np.isnan(cols.values["neutrophils"])
    white_inside = white_sent & (_inside_range(stage, "wbc") | np.isnan(cols.values["wbc"]))
    white_inside &= _inside_range(stage, "neutrophils") | np.isnan(cols.values["neutrophils"])
    isolated = thrombocytopenic & white_inside & _inside_range(stage, "hemoglobin")
    no_bleeding = cols.skin_reported & (skin.hemorrhagic_count == 0)
    # The film confirming the count turns the suggestion off, clumps or not; schistocytes or blasts
    # turn the isolated-count reason off.
    pseudo = ~confirmed & ((clumps & ~np.isnan(cols.values["platelets"])) | (isolated & no_bleeding & ~film_reported))
    pseudo_finding = FindingColumn("possible_pseudothrombocytopenia", pseudo, extra={"clumps": clumps})
    integrity = _sample_integrity(stage)
    plt = cols.values["platelets"]
    pregnant = cols.pregnant == 1.0
    gestational = (
        (
            pregnant
            & meets(plt, rs.threshold("gestational_platelets_from"))
            & meets(plt, rs.threshold("gestational_platelets_below"))
            & (lineages.red == NO)
            & (lineages.white == NO)
            & _rest_of_cbc_normal(stage, {**stage.findings, integrity.code: integrity})
        )
        if np.count_nonzero(pregnant)
        else pregnant  # no pregnancy in the table (the usual CBC): all False, without reading the rest
    )
    gestational_finding = FindingColumn(
        "gestational_thrombocytopenia_possible",
        gestational,
        extra={"usual": meets(plt, rs.threshold("gestational_platelets_usual"))},
    )
    return {f.code: f for f in (pseudo_finding, gestational_finding, integrity)}


#: Analytes that are the finding itself or its inputs, not "the rest of the CBC" (§8 v2).
_GESTATIONAL_OWN = frozenset({"platelets"})
#: Findings that may stand beside gestational thrombocytopenia: the thrombocytopenia it explains.
_GESTATIONAL_ALLOWED = frozenset({"thrombocytopenia", "possible_pseudothrombocytopenia"})


def _rest_of_cbc_normal(stage: Stage, findings: dict[str, FindingColumn]) -> np.ndarray:
    """*v2* "The rest of the CBC normal" (§8): haemoglobin and WBC (or neutrophils) sent; every other
    analyte sent inside its range (N, or no range to judge it), haemoglobin also when only mildly low
    (flag L but above the pregnancy cut-off: no anaemia); no critical value; no other finding."""
    cols = stage.cols
    v = cols.values
    ok = ~np.isnan(v["hemoglobin"]) & (~np.isnan(v["wbc"]) | ~np.isnan(v["neutrophils"]))
    for analyte in cols.present_analytes():
        if analyte in _GESTATIONAL_OWN:
            continue
        flag = stage.flags[analyte]
        inside = (flag == FLAG_N) | (flag == FLAG_NONE)
        if analyte == "hemoglobin":
            inside |= (flag == FLAG_L) & (stage.anemia.state == NO)
        ok &= inside
    for code, finding in findings.items():
        if code not in _GESTATIONAL_ALLOWED:
            ok &= ~finding.present
    return ok


def _sample_integrity(stage: Stage) -> FindingColumn:
    """*v2* MCHC above the sample-integrity limit (§8 [S29]): as sent, else computed as haemoglobin /
    haematocrit x 100 (rounded to 6 significant figures before it is compared, §1)."""
    cols, rs = stage.cols, stage.rs
    sent = cols.values["mchc"]
    present = cols.present_analytes()
    computed = (
        round_significant(cols.values["hemoglobin"] / cols.values["hematocrit"] * 100.0)
        if "hemoglobin" in present and "hematocrit" in present
        else np.full(cols.n, np.nan)  # nothing to compute it from: no row has both
    )
    mchc = np.where(np.isnan(sent), computed, sent)
    over = meets(mchc, rs.threshold("sample_integrity_mchc"))
    return FindingColumn(
        "sample_integrity_check", over, extra={"mchc": mchc, "computed": np.isnan(sent) & ~np.isnan(computed)}
    )


def round_significant(values: np.ndarray, digits: int = 6) -> np.ndarray:
    """Values rounded to `digits` significant figures (NaN and 0 stay), as every computed number is
    before it is compared (clinical-rules §1 v2: the one helper, labservice.core.numbers.round_sig)."""
    out = round_sig(values, digits)
    out[~np.isfinite(out) & ~np.isnan(out)] = np.nan  # a haematocrit of 0 gives no MCHC
    return out


def detail_sample_integrity_check(view: TextView, i: int):
    mchc = float(view.extra("sample_integrity_check", "mchc", i))
    computed = bool(view.extra("sample_integrity_check", "computed", i))
    mchc_text = view.num("mchc", i, mchc)  # 3 figures, never rounded across the limit (§1 v2)
    how = (
        f"MCHC {mchc_text} g/dL computed as haemoglobin {view.num('hemoglobin', i)} g/dL / haematocrit "
        f"{view.num('hematocrit', i)} % x 100"
        if computed
        else f"MCHC {mchc_text} g/dL"
    )
    evidence = {"mchc": mchc, "mchc_computed": computed}
    if computed:
        evidence.update({"hemoglobin": view.v("hemoglobin", i), "hematocrit": view.v("hematocrit", i)})
    return (
        f"{how}, above {view.rs.text('{sample_integrity_mchc:.1f}')} g/dL, is not physiological in a valid sample: "
        "check for lipaemia, haemolysis, red-cell agglutination such as cold agglutinins, spherocytes; the red-cell "
        f"indices may be wrong {view.tags('sample_integrity_mchc')}. Suggest a blood film review.",
        None,
        evidence,
    )


def detail_possible_pseudothrombocytopenia(view: TextView, i: int):
    why = (
        "the laboratory reported platelet clumps"
        if view.extra("possible_pseudothrombocytopenia", "clumps", i)
        else "the thrombocytopenia is isolated (white cells and haemoglobin inside their ranges) and the skin "
        "examination sent shows no bleeding signs"
    )
    return (
        f"Possible EDTA pseudothrombocytopenia because {why}: suggest a blood film review for clumps and "
        "a repeat count in a citrate tube [S21].",
        None,
        {"platelets": view.v("platelets", i)},
    )


def detail_gestational_thrombocytopenia_possible(view: TextView, i: int):
    plt = view.v("platelets", i)
    text = (
        f"Pregnancy with platelets {view.num('platelets', i)} {view.rs.unit_text('platelets')} "
        f"({view.span('gestational_platelets_from', 'gestational_platelets_below')}) and the rest of the CBC normal "
        "(haemoglobin and white cells sent, every other count inside its range, no critical value, no other "
        "finding): "
        f"gestational thrombocytopenia is common and usually above {view.t['gestational_platelets_usual']} "
        f"{view.tags('gestational_platelets_usual')}."
    )
    if not view.extra("gestational_thrombocytopenia_possible", "usual", i):
        tags = view.tags("gestational_platelets_usual")
        text += f" This count is lower than usual for it: other causes need excluding {tags}."
    return text, None, {"platelets": plt}
