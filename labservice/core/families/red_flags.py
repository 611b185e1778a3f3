"""Red flags that ask for immediate assessment whatever the counts (clinical-rules §7)."""

from __future__ import annotations

import numpy as np

from labservice.core.compare import meets
from labservice.core.families.base import FindingColumn, Stage, TextView, fmt


def evaluate(stage: Stage) -> dict[str, FindingColumn]:
    cols, rs, skin = stage.cols, stage.rs, stage.skin
    assert skin is not None, "the skin family runs first"
    fever = cols.fever == 1.0
    rash = FindingColumn("fever_with_nonblanching_rash", fever & (skin.hemorrhagic_count > 0))
    neut = cols.values["neutrophils"]
    low = meets(neut, rs.threshold("febrile_neutropenia"))
    fever_unknown_low = np.isnan(cols.fever) & low
    fever_missing_neutrophils = fever & np.isnan(neut)
    febrile = FindingColumn(
        "febrile_neutropenia",
        fever & low,
        extra={
            "fever_unknown_low_neutrophils": fever_unknown_low,
            "fever_neutrophils_missing": fever_missing_neutrophils,
        },
        undecided=fever_unknown_low | fever_missing_neutrophils,
    )
    petechiae = skin.petechiae_count > 0
    age_unknown = petechiae & np.isnan(cols.age_years)
    child = FindingColumn(
        "unexplained_petechiae_child",
        petechiae & meets(cols.age_years, rs.threshold("child_age_years")),
        extra={"age_unknown": age_unknown},
        undecided=age_unknown,
    )
    return {f.code: f for f in (rash, febrile, child)}


def detail_fever_with_nonblanching_rash(view: TextView, i: int):
    return (
        "Fever with a non-blanching rash: emergency assessment for meningococcal sepsis, whatever the counts [S19].",
        None,
        {"fever": True, "nonblanching_lesions": int(view.r.skin.hemorrhagic_count[i])},
    )


def detail_febrile_neutropenia(view: TextView, i: int):
    neut = view.v("neutrophils", i)
    unit = view.rs.unit_text("neutrophils")
    return (
        f"Fever with neutrophils {view.num('neutrophils', i)} {unit} "
        f"(at or below {view.t['febrile_neutropenia']}): possible "
        f"neutropenic sepsis; assess and treat as an emergency {view.tags('febrile_neutropenia')}.",
        None,
        {"fever": True, "neutrophils": neut},
    )


def not_assessed_febrile_neutropenia(view: TextView, i: int) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    if view.extra("febrile_neutropenia", "fever_unknown_low_neutrophils", i):
        out.append(
            (
                f"neutrophils at or below {view.t['febrile_neutropenia']} and fever not stated: "
                f"if the patient is febrile this is possible neutropenic sepsis {view.tags('febrile_neutropenia')}",
                [],
            )
        )
    if view.extra("febrile_neutropenia", "fever_neutrophils_missing", i):
        out.append(("fever reported but neutrophils not sent", ["neutrophils"]))
    return out


def detail_unexplained_petechiae_child(view: TextView, i: int):
    age = float(view.r.cols.age_years[i])
    return (
        f"Petechiae in a child or young person (age {fmt(round(age, 2))} years): immediate specialist "
        f"assessment unless explained {view.tags('child_age_years')}.",
        None,
        {"age_years": age},
    )


def not_assessed_unexplained_petechiae_child(view: TextView, i: int):
    return [("petechiae reported but age not given", [])]
