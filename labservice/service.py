"""Use cases the edges call: parse → interpret → render, and keep what has a patient id. No Flask here."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labservice.adapters.json_cbc import parse_documents
from labservice.core.interpret import interpret_cbc_table
from labservice.core.render import render_interpretations
from labservice.core.ruleset import Ruleset, default_ruleset
from labservice.core.table import ANALYTES, CbcColumns
from labservice.store.database import Database
from labservice.store.repository import CbcToStore, StoredCbc, store_cbcs

#: How many finding codes and key values the one-line worklist reason shows.
REASON_FINDINGS = 4
REASON_VALUES = (("platelets", "PLT"), ("neutrophils", "ANC"), ("hemoglobin", "Hb"), ("wbc", "WBC"))

Keep = Callable[[list[CbcToStore]], list[StoredCbc]]
#: Tries of a store transaction that lost a race on a unique constraint.
STORE_ATTEMPTS = 3


def interpret_documents(docs: list[dict], ruleset: Ruleset | None = None, *, indexed: bool = False,
                        keep: Keep | None = None, raws: list[Any] | None = None,
                        clock_skew: timedelta | None = None, may_read: bool = True) -> list[dict]:
    """Interpret loaded CBC documents; raise InputError (with field paths) before interpreting any.

    `indexed` prefixes error paths with the list index, for requests that sent a JSON array. With `clock_skew`
    (the CLOCK_SKEW_SECONDS setting: every endpoint that may store gives it), a collection time more than that
    ahead of the service's clock is such an error.
    With `keep`, CBCs that carry a patient id are handed to it (with `raws`, the JSON as sent) and
    their answers gain `delta`, `stored` and any delta findings. A caller that may not read stored data
    (`may_read` false: a key without the `read` scope) gets the delta findings and `stored: {"kept": true}` only,
    no delta block, ids or duplicate hint: those describe other callers' results (issue 10).
    """
    rs = ruleset or default_ruleset()
    parsed = parse_documents(docs, rs, indexed=indexed, clock_skew=clock_skew)
    result = interpret_cbc_table(parsed.columns, ruleset=rs)
    answers = render_interpretations(result, parsed.patient_ids, parsed.reported)
    if keep is not None:
        positions = [i for i, patient in enumerate(parsed.patient_ids) if patient]
        items = [to_store(docs[i], (raws or docs)[i], parsed.columns, i, str(parsed.patient_ids[i]), answers[i])
                 for i in positions]
        for i, stored in zip(positions, keep(items), strict=True):
            answers[i] = with_stored(answers[i], stored) if may_read else with_stored_hidden(answers[i], stored)
    return answers


def keep_in(database: Database, ruleset: Ruleset, window_days: int, *, source: str = "json",
            batch_id: str | None = None) -> Keep:
    """A `keep` that stores into `database` in one transaction."""

    def keep(items: list[CbcToStore]) -> list[StoredCbc]:
        # Two requests may create the same patient, result or open referral at once; the loser's
        # transaction fails on a unique constraint and is run again, when it finds the winner's rows.
        for attempt in range(STORE_ATTEMPTS):
            try:
                with database.session() as session:
                    return store_cbcs(session, items, source=source, rs=ruleset,
                                      window=timedelta(days=window_days), batch_id=batch_id)
            except IntegrityError:
                if attempt == STORE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    return keep


def keep_in_session(session: Session, ruleset: Ruleset, window_days: int, *, source: str = "batch",
                    batch_id: str | None = None) -> Keep:
    """A `keep` that stores into the caller's open transaction (a batch's), committing nothing: the caller
    commits every call's rows at once, or none.

    On PostgreSQL each call runs in a SAVEPOINT, so a call that loses a race with another request on a
    unique constraint (the same new patient, result or open referral) is rolled back alone and run again,
    when it finds the winner's rows; the calls before it are kept. On SQLite the transaction holds the
    database's one write lock from its first write, so no other writer can race it. Objects are expunged
    after each call, so a long batch does not grow the session's memory.
    """
    savepoints = session.get_bind().dialect.name != "sqlite"

    def keep(items: list[CbcToStore]) -> list[StoredCbc]:
        window = timedelta(days=window_days)
        for attempt in range(STORE_ATTEMPTS):
            try:
                if savepoints:
                    with session.begin_nested():  # rolled back alone if the call fails
                        stored = store_cbcs(session, items, source=source, rs=ruleset, window=window,
                                            batch_id=batch_id)
                else:
                    stored = store_cbcs(session, items, source=source, rs=ruleset, window=window, batch_id=batch_id)
            except IntegrityError:
                if not savepoints or attempt == STORE_ATTEMPTS - 1:
                    raise
                continue
            session.expunge_all()
            return stored
        raise AssertionError("unreachable")

    return keep


def to_store(doc: dict, raw: Any, columns: CbcColumns, row: int, patient_id: str, answer: dict) -> CbcToStore:
    """What the store keeps of one CBC: row `row` of the engine's `columns` (its input, in canonical units), its
    patient and its answer."""
    values = {}
    for name in ANALYTES:  # all of them identify the result; VALUE_COLUMNS are also kept as columns
        value = float(columns.values[name][row])
        values[name] = None if math.isnan(value) else value
    codes = [finding["code"] for finding in answer["findings"]]
    age = float(columns.age_years[row])
    patient = doc.get("patient") or {}
    return CbcToStore(
        patient=patient_id, collected_at=doc.get("collected_at"),
        raw=raw if isinstance(raw, dict) else {}, values=values, urgency=answer["urgency"], findings=codes,
        not_assessed=[entry["code"] for entry in answer.get("not_assessed", [])],
        reason=worklist_reason(codes, values), answer=answer, sex=patient.get("sex"),
        age_years=None if math.isnan(age) else age)


def worklist_reason(codes: list[str], values: dict[str, float | None]) -> str:
    """One line for the worklist: the first findings and the counts that matter, e.g.
    'critical value, pancytopenia, thrombocytopenia (PLT 45, ANC 0.4, Hb 8.2)'."""
    shown = ", ".join(code.replace("_", " ") for code in codes[:REASON_FINDINGS]) or "no finding"
    if len(codes) > REASON_FINDINGS:
        shown += f" (+{len(codes) - REASON_FINDINGS})"
    counts = ", ".join(f"{label} {values[name]:g}" for name, label in REASON_VALUES if values.get(name) is not None)
    return f"{shown} ({counts})" if counts else shown


def with_stored_hidden(answer: dict, stored: StoredCbc) -> dict:
    """The answer for a caller without `read`: its delta findings (they describe this CBC) and that it is kept.

    Not the delta block (the previous CBC's date, urgency and counts), nor whether the result was already
    held, nor the ids (a referral id would tell that the patient has an open referral)."""
    out = dict(answer)
    out["findings"] = [*answer["findings"], *stored.delta_findings]
    out["stored"] = {"kept": True}
    return out


def with_stored(answer: dict, stored: StoredCbc) -> dict:
    """The answer with its delta block, delta findings and where it was stored."""
    out = dict(answer)
    out["findings"] = [*answer["findings"], *stored.delta_findings]
    out["delta"] = stored.delta
    out["stored"] = {"cbc_id": stored.cbc_id, "interpretation_id": stored.interpretation_id,
                     "duplicate": stored.duplicate, "referral_id": stored.referral_id}
    return out
