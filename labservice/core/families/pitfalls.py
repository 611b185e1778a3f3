"""Pitfalls (clinical-rules §8): possible pseudothrombocytopenia and possible gestational
thrombocytopenia."""

from __future__ import annotations

import numpy as np

from labservice.core.compare import NO, YES, meets
from labservice.core.families.base import FindingColumn, Stage, TextView, fmt


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
        extra={"usual": meets(plt, rs.threshold("gestational_platelets_usual"))},
    )
    return {f.code: f for f in (pseudo_finding, gestational_finding)}


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
        f"Pregnancy with platelets {fmt(plt)} {view.rs.unit_text('platelets')} "
        f"({view.span('gestational_platelets_from', 'gestational_platelets_below')}) and no other cytopenia: "
        f"gestational thrombocytopenia is common and usually above {view.t['gestational_platelets_usual']} "
        f"{view.tags('gestational_platelets_usual')}."
    )
    if not view.extra("gestational_thrombocytopenia_possible", "usual", i):
        tags = view.tags("gestational_platelets_usual")
        text += f" This count is lower than usual for it: other causes need excluding {tags}."
    return text, None, {"platelets": plt}
