"""Interpret CBC documents: parse → interpret → render, and keep what has a patient id. No Flask here."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from labservice.adapters.json_cbc import parse_documents
from labservice.core.interpret import interpret_cbc_table
from labservice.core.render import render_interpretations
from labservice.core.ruleset import Ruleset, default_ruleset
from labservice.services.history_rules import hit_not_assessed
from labservice.services.store_results import Keep, StoredCbc, to_store


def interpret_documents(
    docs: list[dict],
    ruleset: Ruleset | None = None,
    *,
    indexed: bool = False,
    keep: Keep | None = None,
    raws: list[Any] | None = None,
    clock_skew: timedelta | None = None,
    may_read: bool = True,
) -> list[dict]:
    """Interpret loaded CBC documents; raise InputError (with field paths) before interpreting any.

    `indexed` prefixes error paths with the list index, for requests that sent a JSON array. With `clock_skew`
    (the CLOCK_SKEW_SECONDS setting: every endpoint that may store gives it), a collection time more than that
    ahead of the service's clock is such an error.
    With `keep`, CBCs that carry a patient id are handed to it (with `raws`, the JSON as sent) and
    their answers become the stored answers (with `delta` and any delta findings) with `stored`. A caller that
    may not read stored data (`may_read` false: a key without the `read` scope) gets the delta findings and
    `stored: {"kept": true}` only, no delta block, ids or duplicate hint: those describe other callers' results.
    """
    rs = ruleset or default_ruleset()
    parsed = parse_documents(docs, rs, indexed=indexed, clock_skew=clock_skew)
    result = interpret_cbc_table(parsed.columns, ruleset=rs)
    answers = render_interpretations(result, parsed.patient_ids, parsed.reported)
    positions = [i for i, patient in enumerate(parsed.patient_ids) if patient] if keep is not None else []
    # A heparin start with no stored history to score against: the HIT items are listed as not assessed (§12 v2).
    kept = set(positions)
    for i, doc in enumerate(docs):
        block = hit_not_assessed(doc.get("context")) if i not in kept else None
        if block is not None:
            answers[i] = {**answers[i], "hit_4ts": block}
    if keep is not None:
        items = [
            to_store(docs[i], (raws or docs)[i], parsed.columns, i, str(parsed.patient_ids[i]), answers[i])
            for i in positions
        ]
        for i, stored in zip(positions, keep(items), strict=True):
            answers[i] = with_stored(stored) if may_read else with_stored_hidden(stored)
    return answers


def with_stored_hidden(stored: StoredCbc) -> dict:
    """The answer for a caller without `read`: its delta findings (they describe this CBC) and that it is kept.

    Not the delta block (the previous CBC's date, urgency and counts), nor whether the result was already
    held, nor the ids (a referral id would tell that the patient has an open referral)."""
    out = {key: value for key, value in stored.answer.items() if key != "delta"}
    out["stored"] = {"kept": True}
    return out


def with_stored(stored: StoredCbc) -> dict:
    """The stored answer (delta block and delta findings included) with where it was stored."""
    out = dict(stored.answer)
    out["stored"] = {
        "cbc_id": stored.cbc_id,
        "interpretation_id": stored.interpretation_id,
        "duplicate": stored.duplicate,
        "referral_id": stored.referral_id,
    }
    return out
