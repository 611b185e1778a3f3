"""Critical values (clinical-rules §3): any `critical_*` rule of thresholds.csv that fired, and (*v2*)
any critical flag the laboratory sent (`laboratory_flag_<analyte>`).

§11 v2: with myelosuppressive treatment stated, a critical low neutrophil, platelet or white cell
count (the service's limit or the laboratory's low critical flag) is a possible expected nadir: still
`critical_value`, but it asks for `urgent` (reason `critical_value_possible_nadir`) rather than
`immediate`, new or not. Other critical values (and febrile neutropenia, a red flag of its own) are
unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from labservice.core.families.base import FindingColumn, Stage, TextView, fmt
from labservice.core.grading import FLAG_NAMES, LAB_CRITICAL, laboratory_low_side

if TYPE_CHECKING:
    from labservice.core.interpret import InterpretationTable

#: The critical rules of thresholds.csv that may be an expected nadir during myelosuppressive treatment (§11).
NADIR_CRITICALS = ("critical_neutrophils_low", "critical_platelets_low", "critical_wbc_low")
#: The analytes whose low critical flag sent by the laboratory may be such a nadir.
NADIR_ANALYTES = ("neutrophils", "platelets", "wbc")
NADIR_WORDS = "possible expected nadir during myelosuppressive treatment"


def _nadir_masks(stage: Stage) -> dict[str, np.ndarray]:
    """Per critical key of stage.criticals, the rows where that hit may be an expected nadir (§11)."""
    treated = stage.cols.myelosuppressive_therapy == 1.0
    out = {}
    for key in stage.criticals:
        if key in NADIR_CRITICALS:
            out[key] = treated
        elif key.startswith(LAB_CRITICAL) and key[len(LAB_CRITICAL) :] in NADIR_ANALYTES:
            analyte = key[len(LAB_CRITICAL) :]
            # a laboratory critical flag on the low side (LL, or AA below the range), as grading reads it
            sent = stage.cols.lab_flags[analyte]
            out[key] = treated & laboratory_low_side(stage.cols, stage.ranges[analyte], stage.rs, analyte, sent)
    return out


def evaluate(stage: Stage) -> dict[str, FindingColumn]:
    criticals = stage.criticals
    n = stage.cols.n
    nadir_of = _nadir_masks(stage)
    any_critical = np.zeros(n, dtype=bool)
    not_nadir = np.zeros(n, dtype=bool)  # a critical value that asks for `immediate` as new
    nadir = np.zeros(n, dtype=bool)
    for key, hit in criticals.items():
        any_critical = any_critical | hit
        if key in nadir_of:
            nadir = nadir | (hit & nadir_of[key])
            not_nadir = not_nadir | (hit & ~nadir_of[key])
        else:
            not_nadir = not_nadir | hit
    return {
        "critical_value": FindingColumn(
            "critical_value",
            any_critical,
            extra={**criticals, **{"_nadir_" + key: mask for key, mask in nadir_of.items()}},
            raises=not_nadir,
        ),
        "critical_value_possible_nadir": FindingColumn("critical_value_possible_nadir", nadir),
    }


def _nadir_only(view: TextView, i: int) -> bool:
    nadir = view.r.triggers.get("critical_value_possible_nadir")  # a reason row: its mask is among the triggers
    return nadir is not None and bool(nadir[1][i]) and not bool(view.r.findings["critical_value"].urgency_mask()[i])


def title_rows_critical_value(result: InterpretationTable) -> np.ndarray:
    """The rows whose title_critical_value is the nadir's, for a whole table at once (what _nadir_only says of
    one row): the batch output words findings per distinct combination (labservice.core.row_texts)."""
    nadir = result.triggers.get("critical_value_possible_nadir")
    if nadir is None:
        return np.zeros(result.n, dtype=bool)
    return np.asarray(nadir[1], dtype=bool) & ~np.asarray(result.findings["critical_value"].urgency_mask(), dtype=bool)


def title_critical_value(view: TextView, i: int) -> str | None:
    """A critical value that is only a possible nadir does not say "notify now" (§11: it asks for `urgent`)."""
    return view.rs.text(view.rs.finding("critical_value_possible_nadir").title) if _nadir_only(view, i) else None


def summary_text_critical_value(view: TextView, i: int) -> str | None:
    return f"Critical value ({{evidence}}): {NADIR_WORDS}." if _nadir_only(view, i) else None


def detail_critical_value(view: TextView, i: int):
    hits, evidence = [], {}
    extra = view.r.findings["critical_value"].extra
    nadir = False
    for key, mask in extra.items():
        if key.startswith("_") or not mask[i]:
            continue
        is_nadir = bool(extra["_nadir_" + key][i]) if "_nadir_" + key in extra else False
        if key.startswith(LAB_CRITICAL):
            analyte = key[len(LAB_CRITICAL) :]
            if analyte in evidence:
                continue  # the service's own limit already called it
            value = view.v(analyte, i)
            flag = FLAG_NAMES[int(view.r.flags[analyte][i])]
            text = (
                f"{view.rs.analytes[analyte].label.lower()} {view.num(analyte, i, value)} "
                f"(flagged {flag} by the laboratory, honoured whatever the service's own limit, clinical-rules §3)"
            )
        else:
            th = view.rs.threshold(key)
            analyte = th.analyte
            value = view.v(analyte, i)
            shown = view.num(analyte, i, value)
            text = f"{view.rs.analytes[analyte].label.lower()} {shown} ({th.operator} {fmt(th.value)} {th.unit})"
        evidence[analyte] = value
        if is_nadir:
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
