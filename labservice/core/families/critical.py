"""Critical values (clinical-rules §3): any `critical_*` rule of thresholds.csv that fired, and (*v2*)
any critical flag the laboratory sent (`laboratory_flag_<analyte>`)."""

from __future__ import annotations

import numpy as np

from labservice.core.families.base import FindingColumn, Stage, TextView, fmt
from labservice.core.grading import FLAG_NAMES, LAB_CRITICAL


def evaluate(stage: Stage) -> dict[str, FindingColumn]:
    criticals = stage.criticals
    any_critical = np.zeros(stage.cols.n, dtype=bool)
    for hit in criticals.values():
        any_critical = any_critical | hit
    return {"critical_value": FindingColumn("critical_value", any_critical, extra=dict(criticals))}


def detail_critical_value(view: TextView, i: int):
    hits, evidence = [], {}
    for key, mask in view.r.findings["critical_value"].extra.items():
        if mask[i] and key.startswith(LAB_CRITICAL):
            analyte = key[len(LAB_CRITICAL) :]
            if analyte in evidence:
                continue  # the service's own limit already called it
            value = view.v(analyte, i)
            evidence[analyte] = value
            flag = FLAG_NAMES[int(view.r.flags[analyte][i])]
            hits.append(
                f"{view.rs.analytes[analyte].label.lower()} {fmt(value)} (flagged {flag} by the laboratory, "
                "honoured whatever the service's own limit, clinical-rules §3)"
            )
        elif mask[i]:
            th = view.rs.threshold(key)
            value = view.v(th.analyte, i)
            evidence[th.analyte] = value
            hits.append(
                f"{view.rs.analytes[th.analyte].label.lower()} {fmt(value)} ({th.operator} {fmt(th.value)} {th.unit})"
            )
    return (
        f"Critical value{'s' if len(hits) > 1 else ''}: {'; '.join(hits)} [S6]. "
        "Critical limits are configurable per laboratory policy.",
        None,
        evidence,
    )
