"""The rules over a patient's stored history, applied to CBCs being stored (clinical-rules §3, §12 v2).

`apply_history_rules` reads what the rules need of the patients' stored CBCs (one query; a second one for the
analyte flags of the previous CBCs that had a critical value), runs labservice.core.history for each CBC against
the stored ones and the earlier CBCs of the same call, and returns the CBCs with their answers, urgencies, finding
codes and worklist lines as the rules leave them. The store then keeps them as it keeps any CBC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from labservice.core.history import PastCbc, critical_marks, history_outcome, with_history
from labservice.core.history.answer import changes_answer
from labservice.core.history.hit import not_assessed_block, start_of_day
from labservice.core.history.mcv_delta import hours
from labservice.core.ruleset import Ruleset
from labservice.store import repository

#: The context keys of the HIT pattern (api-contract `context`; clinical-rules §12 v2).
HEPARIN_STARTED_AT = "heparin_started_at"
HEPARIN_RECENT = "heparin_in_previous_30_days"
#: Why the HIT items are not scored on a path that keeps no history.
NO_HISTORY = "the 4Ts items need the patient's stored CBCs: send a patient id and let the CBC be stored"


def heparin_context(context: dict[str, Any] | None) -> tuple[datetime | None, bool | None]:
    """The heparin start (timezone-aware) and recent exposure of a CBC's context (None: not given)."""
    context = context or {}
    started = context.get(HEPARIN_STARTED_AT)
    if isinstance(started, str):
        started = datetime.fromisoformat(started)
    recent = context.get(HEPARIN_RECENT)
    return started, recent if isinstance(recent, bool) else None


def hit_not_assessed(context: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `hit_4ts` block of an answer that was not stored (None when no heparin start was given)."""
    started, recent = heparin_context(context)
    return None if started is None else not_assessed_block(started, recent, NO_HISTORY)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def apply_history_rules(
    session: Session,
    items: Sequence[Any],  # store_results.CbcToStore
    patient_ids: dict[str, int],
    times: Sequence[datetime | None],
    window: timedelta,
    rs: Ruleset,
    reason_of: Any,  # store_results.worklist_reason
) -> list[Any]:
    """The CBCs as the history rules leave them (same order; a CBC they change nothing for is returned as is)."""
    starts = [heparin_context(getattr(item, "context", None)) for item in items]
    marks = [
        item.critical if item.critical is not None else critical_marks(item.answer.get("analytes")) for item in items
    ]
    # How far back each CBC needs the stored ones: the delta window for a critical value, 72 hours for an MCV,
    # the day heparin started for the HIT items. A CBC that needs none (or has no time) asks for nothing.
    since: dict[str, datetime] = {}
    for item, at, (started, _), critical in zip(items, times, starts, marks, strict=True):
        if at is None:
            continue
        wanted = [at - window] if critical else []
        if item.values.get("mcv") is not None:
            wanted.append(at - hours(rs))
        if started is not None:
            wanted.append(start_of_day(started))
        if wanted:
            since[item.patient] = min([*wanted, since.get(item.patient, at)])
    rows = []
    if since:
        until = max(t for t in times if t is not None)
        ids = sorted({patient_ids[name] for name in since})
        rows = repository.past_rows(session, ids, min(since.values()), until)
    # The analyte flags of stored CBCs that had a critical value: whether a critical value is known.
    flags = repository.analyte_flags(
        session, [row.interpretation_id for row in rows if "critical_value" in row.findings]
    )
    pool: dict[str, list[PastCbc]] = {}
    for row in rows:
        had = critical_marks({name: {"flag": flag} for name, flag in flags.get(row.interpretation_id, {}).items()})
        pool.setdefault(row.patient, []).append(
            PastCbc(row.collected_at, _nan(row.platelets), _nan(row.mcv), had, ref=row.interpretation_id)
        )
    out = []
    for item, at, (started, recent), critical in zip(items, times, starts, marks, strict=True):
        values = item.values
        cbc = PastCbc(at, _nan(values.get("platelets")), _nan(values.get("mcv")), critical)
        mine = pool.setdefault(item.patient, [])
        earlier = sorted(
            (p for p in mine if p.collected_at is not None and at is not None and p.collected_at < at),
            key=lambda p: p.collected_at,  # type: ignore[arg-type, return-value]
        )
        outcome = history_outcome(
            cbc, earlier, window, rs, heparin_started_at=started, heparin_in_previous_30_days=recent
        )
        mine.append(cbc)  # a later CBC of the same call compares with this one
        if not changes_answer(outcome, rs):  # nothing to add: the answer is not read (a batch job's may be text)
            out.append(item)
            continue
        answer = with_history(item.answer, outcome, rs)
        if answer is item.answer:
            out.append(item)
            continue
        added = [f["code"] for f in answer["findings"][len(item.answer.get("findings", [])) :]]
        codes = [*item.findings, *(code for code in added if code not in item.findings)]
        # The history findings lead the worklist line, as the delta findings do: they are what the history adds.
        reason = reason_of([*added, *item.findings], values) if added else item.reason
        out.append(
            replace(
                item,
                answer=answer,
                answer_text=None,  # the text (if any) is the answer before the history rules
                critical=None,
                urgency=answer["urgency"],
                findings=codes,
                reason=reason,
            )
        )
    return out
