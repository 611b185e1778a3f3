"""Skin findings (clinical-rules §7): the vasculitis pattern, and non-blanching lesions with low
platelets as an urgency reason. The lesion typing and attribution are in labservice.core.skin."""

from __future__ import annotations

from labservice.core.compare import meets
from labservice.core.families.base import FindingColumn, Stage, TextView
from labservice.core.skin import assess_skin


def evaluate(stage: Stage) -> dict[str, FindingColumn]:
    stage.skin = skin = assess_skin(stage.cols, stage.rs)
    plt = stage.cols.values["platelets"]
    # Palpable purpura suggests small-vessel vasculitis; IgA vasculitis by definition is not
    # related to thrombocytopenia [S18], so a low count is named in the text.
    vasculitis = FindingColumn(
        "vasculitis_pattern",
        skin.palpable_count > 0,
        extra={"low_platelets": meets(plt, stage.rs.threshold("thrombocytopenia"))},
    )
    lesions_low = FindingColumn(
        "nonblanching_lesions_low_platelets",
        (skin.hemorrhagic_count > 0) & meets(plt, stage.rs.threshold("urgent_lesions_platelets")),
    )
    return {f.code: f for f in (vasculitis, lesions_low)}


def detail_vasculitis_pattern(view: TextView, i: int):
    text = (
        "Palpable purpura suggests small-vessel vasculitis, e.g. IgA vasculitis, whose definition requires "
        "that the purpura is not related to thrombocytopenia [S18]."
    )
    if view.extra("vasculitis_pattern", "low_platelets", i):
        text += " The platelet count is low here, so the pattern needs clinical review."
    return text, None, {"palpable_lesions": int(view.r.skin.palpable_count[i])}
