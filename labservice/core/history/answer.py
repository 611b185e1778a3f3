"""What the history rules found for one CBC (a JSON-ready outcome), and the answer with it.

`history_outcome` runs the three rules for a CBC against the patient's earlier CBCs; `with_history` applies an
outcome to the engine's answer: the history findings after the engine's, `critical_value.evidence.known`, the
urgency reasons (a known critical value asks for `urgent` under `known_critical_value` instead of `immediate`
under `new_critical_value`; the HIT pattern asks for `immediate`, the MCV delta for `soon`), the urgency (the
highest any listed reason asks for, clinical-rules §9), the summary's closing sentence, and `hit_4ts`.
The outcome is kept with the stored CBC (its delta block's `history`), so an answer can be rebuilt from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from labservice.core.history import hit, known_critical, mcv_delta
from labservice.core.history.points import PastCbc
from labservice.core.render import urgency_text
from labservice.core.ruleset import Ruleset
from labservice.core.vocabulary import URGENCY_NAMES, URGENCY_RANK

HIT_CODE = "heparin_induced_thrombocytopenia_possible"
MCV_CODE = "possible_sample_misidentification"
KNOWN_REASON = "known_critical_value"
NEW_REASON = "new_critical_value"
SUMMARY_END = " This describes the counts; it is not a diagnosis."


def history_outcome(
    cbc: PastCbc,
    earlier: Sequence[PastCbc],
    window: timedelta,
    rs: Ruleset,
    *,
    heparin_started_at: datetime | None = None,
    heparin_in_previous_30_days: bool | None = None,
) -> dict[str, Any]:
    """The history rules for `cbc` against `earlier` (the same patient's CBCs collected before it, oldest first;
    for the HIT items every one since the day heparin started, for the others those of the last `window` and
    72 hours)."""
    out: dict[str, Any] = {
        "known_critical": known_critical.compare(cbc, earlier, window),
        "mcv": mcv_delta.compare(cbc, earlier, rs),
    }
    if heparin_started_at is not None:
        out["hit_4ts"] = hit.score_4ts(cbc, earlier, heparin_started_at, heparin_in_previous_30_days, rs)
    return out


def _finding(rs: Ruleset, code: str, detail: str, evidence: dict[str, Any]) -> dict[str, Any]:
    spec = rs.finding(code)
    return {
        "code": code,
        "title": rs.text(spec.title),
        "detail": detail,
        "grade": None,
        "severity": None,
        "evidence": evidence,
        "rule": spec.rule,
        "sources": rs.cite(spec.sources),
    }


def history_findings(outcome: dict[str, Any], rs: Ruleset) -> list[dict[str, Any]]:
    """The findings the history rules add to an answer (HIT pattern, possible sample misidentification)."""
    out = []
    block = outcome.get("hit_4ts")
    if block and block.get("pattern"):
        out.append(_finding(rs, HIT_CODE, hit.detail(block), hit.evidence(block)))
    mcv = outcome.get("mcv")
    if mcv and mcv.get("finding"):
        detail = (
            f"MCV {mcv['mcv']:g} fL, {mcv['previous_mcv']:g} fL on the CBC of {mcv['previous_collected_at']} "
            f"({mcv['hours']:g} hours earlier): a change of {abs(mcv['change_fl']):g} fL. MCV is stable over days; a "
            "change this large suggests the two samples may not be from the same patient, unless the patient was "
            "transfused."
        )
        evidence = {"mcv": mcv["mcv"], "previous_mcv": mcv["previous_mcv"], "change_fl": mcv["change_fl"]}
        out.append(_finding(rs, MCV_CODE, detail, evidence))
    return out


def _action(rs: Ruleset, reason: str) -> str:
    spec = rs.reason(reason)
    assert spec is not None, reason
    return rs.text(spec.action) if spec.action else rs.urgency_action(spec.urgency)


def with_history(answer: dict[str, Any], outcome: dict[str, Any] | None, rs: Ruleset) -> dict[str, Any]:
    """The answer with what the history rules found (a new dict; `answer` is not changed); `answer` itself when
    they found nothing to add (changes_answer)."""
    if outcome is None or not changes_answer(outcome, rs):
        return answer
    out = dict(answer)
    findings = [dict(f) for f in answer.get("findings", [])]
    reasons = dict(answer.get("urgency_reasons") or {})
    known = outcome.get("known_critical")
    for finding in findings:
        if finding.get("code") == "critical_value" and known is not None:
            finding["evidence"] = {**(finding.get("evidence") or {}), "known": known["known"]}
            if known["known"]:
                finding["detail"] = (
                    f"{finding.get('detail', '')} Known: the same critical value was in the patient's previous CBC "
                    f"of {known['previous_collected_at']} (clinical-rules §3)."
                ).strip()
    rank = URGENCY_RANK.get(answer.get("urgency", ""), 0)
    if known is not None and known["known"] and NEW_REASON in reasons:
        reasons = {(KNOWN_REASON if name == NEW_REASON else name): action for name, action in reasons.items()}
        reasons[KNOWN_REASON] = _action(rs, KNOWN_REASON)
        # The engine's urgency is the highest its reasons ask for (§9): without the new critical value's
        # `immediate`, the highest of those left.
        rank = max(_reason_rank(rs, name) for name in reasons)
    added = history_findings(outcome, rs)
    for finding in added:
        reasons.setdefault(finding["code"], _action(rs, finding["code"]))
        rank = max(rank, _reason_rank(rs, finding["code"]))
    findings.extend(added)
    out["findings"] = findings
    out["urgency_reasons"] = reasons
    urgency = URGENCY_NAMES[rank]
    out["urgency"] = urgency
    if "hit_4ts" in outcome:
        out["hit_4ts"] = outcome["hit_4ts"]
    out["summary"] = _summary(answer.get("summary", ""), added, known, urgency, reasons, rs)
    return out


def changes_answer(outcome: dict[str, Any] | None, rs: Ruleset) -> bool:
    """Whether `with_history` would change an answer: a critical value compared with the previous CBC, a HIT 4Ts
    block or a history finding. Otherwise the answer stays as the engine gave it, and is not even read (a batch
    job's answers are held as text, labservice.services.store_results.hold_as_text)."""
    if not outcome:
        return False
    return outcome.get("known_critical") is not None or "hit_4ts" in outcome or bool(history_findings(outcome, rs))


def _reason_rank(rs: Ruleset, reason: str) -> int:
    spec = rs.reason(reason)
    return spec.urgency_rank if spec is not None else 0


def _summary(
    summary: str,
    added: list[dict[str, Any]],
    known: dict[str, Any] | None,
    urgency: str,
    reasons: dict[str, str],
    rs: Ruleset,
) -> str:
    """The engine's summary with a sentence per history finding and the urgency sentence said again."""
    start = summary.rfind(" Urgency ")
    if start < 0 or not summary.endswith(SUMMARY_END):
        return summary
    sentences = [f"{finding['title']}." for finding in added]
    if known is not None and known["known"]:
        sentences.append(f"The critical value was already in the previous CBC of {known['previous_collected_at']}.")
    top = {name: action for name, action in reasons.items() if _reason_rank(rs, name) == URGENCY_RANK[urgency]}
    sentences.append(f"Urgency {urgency_text(urgency, top)}.")
    return summary[:start] + " " + " ".join(sentences) + SUMMARY_END
