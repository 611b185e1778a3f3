"""Critical values (clinical-rules §3): any `critical_*` rule of thresholds.csv that fired.

§11 v2: with myelosuppressive treatment stated, a critical low neutrophil, platelet or white cell
count is a possible expected nadir: still `critical_value`, but it asks for `urgent` (reason
`critical_value_possible_nadir`) rather than `immediate`, new or not. Other critical values (and
febrile neutropenia, a red flag of its own) are unchanged.
"""

from __future__ import annotations

import numpy as np

from labservice.core.families.base import FindingColumn, Stage, TextView, fmt

#: The critical rules of thresholds.csv that may be an expected nadir during myelosuppressive treatment (§11).
NADIR_CRITICALS = ("critical_neutrophils_low", "critical_platelets_low", "critical_wbc_low")
NADIR_WORDS = "possible expected nadir during myelosuppressive treatment"


def evaluate(stage: Stage) -> dict[str, FindingColumn]:
    criticals = stage.criticals
    n = stage.cols.n
    treated = stage.cols.myelosuppressive_therapy == 1.0
    any_critical = np.zeros(n, dtype=bool)
    not_nadir = np.zeros(n, dtype=bool)  # a critical value that asks for `immediate` as new
    nadir = np.zeros(n, dtype=bool)
    for key, hit in criticals.items():
        any_critical = any_critical | hit
        if key in NADIR_CRITICALS:
            nadir = nadir | (hit & treated)
            not_nadir = not_nadir | (hit & ~treated)
        else:
            not_nadir = not_nadir | hit
    extra = dict(criticals)
    return {
        "critical_value": FindingColumn(
            "critical_value", any_critical, extra={**extra, "_treated": treated}, raises=not_nadir
        ),
        "critical_value_possible_nadir": FindingColumn("critical_value_possible_nadir", nadir),
    }


def _nadir_only(view: TextView, i: int) -> bool:
    nadir = view.r.triggers.get("critical_value_possible_nadir")  # a reason row: its mask is among the triggers
    return nadir is not None and bool(nadir[1][i]) and not bool(view.r.findings["critical_value"].urgency_mask()[i])


def title_critical_value(view: TextView, i: int) -> str | None:
    """A critical value that is only a possible nadir does not say "notify now" (§11: it asks for `urgent`)."""
    return f"Critical value: {NADIR_WORDS}" if _nadir_only(view, i) else None


def summary_text_critical_value(view: TextView, i: int) -> str | None:
    return f"Critical value ({{evidence}}): {NADIR_WORDS}." if _nadir_only(view, i) else None


def detail_critical_value(view: TextView, i: int):
    hits, evidence = [], {}
    extra = view.r.findings["critical_value"].extra
    treated = bool(extra["_treated"][i])
    nadir = False
    for key, mask in extra.items():
        if key.startswith("_") or not mask[i]:
            continue
        th = view.rs.threshold(key)
        value = view.v(th.analyte, i)
        evidence[th.analyte] = value
        text = f"{view.rs.analytes[th.analyte].label.lower()} {fmt(value)} ({th.operator} {fmt(th.value)} {th.unit})"
        if treated and key in NADIR_CRITICALS:
            text += f", a {NADIR_WORDS}"
            nadir = True
        hits.append(text)
    detail = (
        f"Critical value{'s' if len(hits) > 1 else ''}: {'; '.join(hits)} [S6]. "
        "Critical limits are configurable per laboratory policy."
    )
    if nadir:
        detail += (
            " With myelosuppressive treatment stated, a low count may be the expected nadir: it stays a critical "
            "value and asks for urgent review rather than immediate notification; fever with neutrophils at or below "
            f"{view.t['febrile_neutropenia']} remains an emergency [S8]."
        )
    return detail, None, evidence
