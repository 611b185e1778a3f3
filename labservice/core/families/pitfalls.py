"""Pitfalls (clinical-rules §8): possible pseudothrombocytopenia and possible gestational
thrombocytopenia."""

from __future__ import annotations

import numpy as np

from labservice.core.compare import NO, YES, meets
from labservice.core.families.base import FindingColumn, Stage, TextView, fmt


def evaluate(stage: Stage) -> dict[str, FindingColumn]:
    cols, rs, lineages, skin = stage.cols, stage.rs, stage.lineages, stage.skin
    assert lineages is not None and skin is not None, "the counts and skin families run first"
    thrombocytopenic = lineages.platelets == YES
    clumps = cols.platelet_clumps == 1.0
    isolated = thrombocytopenic & (lineages.red == NO) & (lineages.white == NO)
    no_bleeding = skin.hemorrhagic_count == 0
    pseudo = (clumps & ~np.isnan(cols.values["platelets"])) | (isolated & no_bleeding)
    pseudo_finding = FindingColumn(
        "possible_pseudothrombocytopenia",
        pseudo,
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
        extra={"usual": meets(plt, rs.threshold("gestational_platelets_usual"))},
    )
    return {f.code: f for f in (pseudo_finding, gestational_finding)}


def detail_possible_pseudothrombocytopenia(view: TextView, i: int):
    why = (
        "the laboratory reported platelet clumps"
        if view.extra("possible_pseudothrombocytopenia", "clumps", i)
        else "the thrombocytopenia is isolated and no bleeding signs were reported"
        + (
            ""
            if view.extra("possible_pseudothrombocytopenia", "skin_reported", i)
            else " (no skin examination was sent)"
        )
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
