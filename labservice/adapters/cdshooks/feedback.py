"""CDS Hooks 2.0 feedback: `{"feedback": [{card, outcome, acceptedSuggestions?, overrideReason?,
outcomeTimestamp}]}`, validated into records that hold no patient data.

`card` and suggestion ids are the random UUIDs of our own cards. `overrideReason.userComment` is
free text a clinician typed and may name the patient, so it is not kept: the record says only
whether there was one. The view appends the records to a JSON Lines file (`CDS_FEEDBACK_FILE`,
default `<instance>/cds-feedback.jsonl`); a table is not needed for an append-only log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from labservice.adapters.cdshooks.request import BadHookRequest

OUTCOMES = ("accepted", "overridden")
CODING_FIELDS = ("system", "code", "display")


def parse_feedback(body: Any) -> list[dict[str, Any]]:
    """The feedback items as records to log; raise BadHookRequest naming every bad field."""
    if not isinstance(body, dict):
        raise BadHookRequest({"body": ["A feedback request must be a JSON object with a feedback array."]})
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        raise BadHookRequest({"feedback": ["feedback is required: a non-empty array of Feedback objects."]})
    errors: dict[str, list[str]] = {}
    records = [_record(item, f"feedback[{i}]", errors) for i, item in enumerate(items)]
    if errors:
        raise BadHookRequest(errors)
    return records


def _record(item: Any, where: str, errors: dict[str, list[str]]) -> dict[str, Any]:
    if not isinstance(item, dict):
        errors[where] = ["A Feedback must be a JSON object."]
        return {}
    card = item.get("card")
    if not isinstance(card, str) or not card.strip():
        errors.setdefault(f"{where}.card", []).append("card is required: the card.uuid of our answer.")
    outcome = item.get("outcome")
    if outcome not in OUTCOMES:
        errors.setdefault(f"{where}.outcome", []).append(f"outcome must be one of {', '.join(OUTCOMES)}.")
    stamp = item.get("outcomeTimestamp")
    if not isinstance(stamp, str) or _timestamp(stamp) is None:
        errors.setdefault(f"{where}.outcomeTimestamp", []).append(
            "outcomeTimestamp is required: an ISO 8601 date-time, e.g. 2020-12-11T00:00:00Z."
        )
    accepted = _accepted_ids(item.get("acceptedSuggestions"), outcome, f"{where}.acceptedSuggestions", errors)
    reason, comment = _override(item.get("overrideReason"), f"{where}.overrideReason", errors)
    record: dict[str, Any] = {"card": card, "outcome": outcome, "outcomeTimestamp": stamp}
    if accepted:
        record["acceptedSuggestions"] = accepted
    if reason:
        record["overrideReason"] = reason
    if comment:
        record["userComment"] = "given (not kept)"
    return record


def _timestamp(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _accepted_ids(value: Any, outcome: Any, where: str, errors: dict[str, list[str]]) -> list[str]:
    if value is None:
        if outcome == "accepted":
            # Spec, Feedback table: acceptedSuggestions is "Required for accepted outcomes".
            errors.setdefault(where, []).append("acceptedSuggestions is required when outcome is accepted.")
        return []
    if not isinstance(value, list) or not value:
        errors.setdefault(where, []).append("acceptedSuggestions must be a non-empty array of {id}.")
        return []
    ids = []
    for j, entry in enumerate(value):
        ident = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(ident, str) or not ident.strip():
            errors.setdefault(f"{where}[{j}].id", []).append("id is required: the suggestion's uuid.")
        else:
            ids.append(ident)
    return ids


def _override(value: Any, where: str, errors: dict[str, list[str]]) -> tuple[dict[str, str] | None, bool]:
    if value is None:
        return None, False
    if not isinstance(value, dict):
        errors.setdefault(where, []).append("overrideReason must be a JSON object {reason?, userComment?}.")
        return None, False
    reason = value.get("reason")
    coding: dict[str, str] | None = None
    if reason is not None:
        if not isinstance(reason, dict) or not any(isinstance(reason.get(key), str) for key in CODING_FIELDS):
            errors.setdefault(f"{where}.reason", []).append("reason must be a Coding {system, code, display}.")
        else:
            coding = {key: reason[key] for key in CODING_FIELDS if isinstance(reason.get(key), str)}
    comment = value.get("userComment")
    if comment is not None and not isinstance(comment, str):
        errors.setdefault(f"{where}.userComment", []).append("userComment must be a string.")
    return coding, isinstance(comment, str) and bool(comment.strip())
