"""Combined cytopenias (clinical-rules §5): bicytopenia, pancytopenia and the marrow-failure range."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from labservice.core.compare import NO, NOT_ASSESSED, YES, decide, tristates
from labservice.core.families.base import LINEAGE_ANALYTES, FindingColumn, Stage, TextView

if TYPE_CHECKING:
    from labservice.core.interpret import InterpretationTable


def evaluate(stage: Stage) -> dict[str, FindingColumn]:
    cols, rs, lineages = stage.cols, stage.rs, stage.lineages
    assert lineages is not None, "the counts family runs first"
    low, unknown = lineages.counts()
    pancytopenia_state = decide(low, unknown, 3)
    # Bicytopenia is exactly two low: three low is pancytopenia, not bicytopenia.
    bicytopenia_state = decide(low, unknown, 2)
    bicytopenia_state[low == 3] = NO
    # Two low with the third unknown is bicytopenia that might be pancytopenia: report it as
    # bicytopenia and let the pancytopenia state say "not assessed".
    bicytopenia = FindingColumn(
        "bicytopenia", low == 2, extra={"third_unknown": (low == 2) & (unknown == 1)}, state=bicytopenia_state
    )
    pancytopenia = FindingColumn("pancytopenia", low == 3, state=pancytopenia_state)

    v = cols.values
    criteria = tristates(
        [v["hemoglobin"], v["neutrophils"], v["platelets"]],
        [rs.threshold(f"marrow_failure_{a}") for a in ("hemoglobin", "neutrophils", "platelets")],
    )
    met = np.add.reduce(criteria == YES, axis=0, dtype=np.int8)
    undecided = np.add.reduce(criteria == NOT_ASSESSED, axis=0, dtype=np.int8)
    marrow_state = decide(met, undecided, rs.value("marrow_failure_min_criteria"))
    marrow = FindingColumn(
        "marrow_failure_range",
        marrow_state == YES,
        extra={"hb": criteria[0], "neut": criteria[1], "plt": criteria[2]},
        state=marrow_state,
    )
    stage.states.update(
        {"pancytopenia": pancytopenia_state, "bicytopenia": bicytopenia_state, "marrow_failure_range": marrow_state}
    )
    return {f.code: f for f in (bicytopenia, pancytopenia, marrow)}


def detail_bicytopenia(view: TextView, i: int):
    low, unknown = view.low_lineages(i)
    text = f"Two cell lines are low: {' and '.join(low)} [S11]."
    if unknown:
        needs = [a for k in unknown for a in LINEAGE_ANALYTES[k]]
        text += f" The third line was not assessed ({' or '.join(needs)} not sent): pancytopenia cannot be excluded."
    return text, None, view.lineage_evidence(i)


def detail_pancytopenia(view: TextView, i: int):
    return (
        "All three cell lines are low: red cells, white cells and platelets [S11]. "
        "Pancytopenia needs prompt haematology input [S22].",
        None,
        view.lineage_evidence(i),
    )


def _marrow_examination_only(view: TextView, i: int) -> bool:
    """§6 v2: where the aplastic-anaemia assessment is not applicable (blasts, a WBC above its range,
    myelosuppressive treatment), the range is described without naming aplastic anaemia."""
    return bool(view.r.aplastic.excluded[i])


def title_rows_marrow_failure_range(result: InterpretationTable) -> np.ndarray:
    """The rows whose title_marrow_failure_range is the marrow examination's, for a whole table at once."""
    return np.asarray(result.aplastic.excluded, dtype=bool)


def title_marrow_failure_range(view: TextView, i: int) -> str | None:
    return "Counts in the range that prompts a marrow examination" if _marrow_examination_only(view, i) else None


def detail_marrow_failure_range(view: TextView, i: int):
    met = [
        label
        for key, label in (
            ("hb", f"haemoglobin < {view.t['marrow_failure_hemoglobin']} g/dL"),
            ("neut", f"neutrophils < {view.t['marrow_failure_neutrophils']} {view.rs.unit_text('neutrophils')}"),
            ("plt", f"platelets < {view.t['marrow_failure_platelets']} {view.rs.unit_text('platelets')}"),
        )
        if view.extra("marrow_failure_range", key, i) == YES
    ]
    if _marrow_examination_only(view, i):
        return (
            f"Counts in the range that prompts a marrow examination ({'; '.join(met)}) "
            f"{view.tags('marrow_failure_min_criteria')}. It describes the counts; it is not a diagnosis.",
            None,
            view.lineage_evidence(i),
        )
    return (
        f"At least two of the BSH 2016 entry criteria are met ({'; '.join(met)}) "
        f"{view.tags('marrow_failure_min_criteria')}. This is the range "
        "that prompts a haematologist to consider marrow failure; it is not a diagnosis.",
        None,
        view.lineage_evidence(i),
    )


def _lineages_not_assessed(view: TextView, code: str, i: int):
    missing = view.missing(i)
    _, unknown = view.low_lineages(i)
    needs = [a for k in unknown for a in LINEAGE_ANALYTES[k] if a in missing]
    return [(f"{code} cannot be assessed without {' or '.join(needs) or 'the missing lineage'}", needs)]


def not_assessed_pancytopenia(view: TextView, i: int):
    return _lineages_not_assessed(view, "pancytopenia", i)


def not_assessed_bicytopenia(view: TextView, i: int):
    return _lineages_not_assessed(view, "bicytopenia", i)


def not_assessed_marrow_failure_range(view: TextView, i: int):
    needs = [
        a
        for key, a in (("hb", "hemoglobin"), ("neut", "neutrophils"), ("plt", "platelets"))
        if view.extra("marrow_failure_range", key, i) == NOT_ASSESSED
    ]
    return [(f"could be met if {' or '.join(needs)} were low", needs)]
