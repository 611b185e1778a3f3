"""Keep interpreted CBCs with their history: the use case behind every endpoint that stores results.

For the CBCs that carry a patient id, `store_cbcs` finds or adds the patients, skips a result already kept
(same patient, collection time, values and conclusion), compares each CBC with the patient's previous one
(labservice.core.delta), adds the delta findings to its answer and worklist line, keeps the result with its
interpretation, and opens or updates the patient's referral (labservice.services.referral_policy). The decisions
are made here and in the core; the repository persists and queries.

One CBC or a batch chunk of ten thousand take the same path and the same handful of statements (issue 12 item 2):
the patients found (and new ones added, changed ones updated), the results already kept, the patients' history in
the window as plain rows (one query), the delta checks over all of them at once (labservice.core.delta, numpy),
then the results, their interpretations and the referrals written in one INSERT (or UPDATE) each. `keep_in` runs
them in one transaction, with the request's audit rows (`before_commit`); `store_chunk` is a batch job's chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labservice.core.delta import DeltaCbc, compare_with_previous, delta_block, delta_findings
from labservice.core.numbers import text_number
from labservice.core.ruleset import Ruleset
from labservice.core.table import ANALYTES, SEX_CODES, CbcColumns
from labservice.core.vocabulary import URGENCY_RANK
from labservice.services.history_rules import apply_history_rules
from labservice.services.referral_policy import ReferralStep, referral_step
from labservice.store import json_text, repository
from labservice.store.database import Database
from labservice.store.repository import PatientFacts, as_utc, fingerprint, now_utc

#: How many finding codes and key values the one-line worklist reason shows.
REASON_FINDINGS = 4
REASON_VALUES = (("platelets", "PLT"), ("neutrophils", "ANC"), ("hemoglobin", "Hb"), ("wbc", "WBC"))
#: Tries of a store transaction that lost a race on a unique constraint.
STORE_ATTEMPTS = 3


class AnswerFromText:
    """`answer` read from `answer_text` on first use, when the object holds only the text (see `hold_as_text`)."""

    def __getattr__(self, name: str) -> Any:  # only called when `name` is not an attribute
        if name == "answer":
            text = self.__dict__.get("answer_text")
            if text is not None:
                value = orjson.loads(str(text))
                self.__dict__["answer"] = value
                return value
        raise AttributeError(name)


@dataclass
class CbcToStore(AnswerFromText):
    """One interpreted CBC with a patient id, ready to keep."""

    patient: str
    collected_at: datetime | None
    raw: dict[str, Any]
    values: dict[str, float | None]  # canonical values (VALUE_COLUMNS)
    urgency: str
    findings: list[str]
    not_assessed: list[str]
    reason: str
    answer: dict[str, Any]
    sex: str | None = None
    age_years: float | None = None
    context: dict[str, Any] = field(default_factory=dict)  # the CBC's `context` (heparin exposure, ...)
    #: repository.fingerprint of the fields above, when its maker computed it (a batch job's other process does)
    fingerprint: str | None = None
    #: the answer as JSON text, when its maker wrote it (hold_as_text); `answer` is then read from it only where
    #: the history or delta rules change it, and stored as it is elsewhere
    answer_text: json_text.Encoded | None = None
    #: the answer's critical values (labservice.core.history.critical_marks), when its maker computed them
    critical: frozenset[str] | None = None


def hold_as_text(item: CbcToStore) -> CbcToStore:
    """The CBC with its answer held as JSON text only (and its critical values noted): what a batch job's other
    process sends to the one that stores, where most answers are stored as they are (issue 12 item 1)."""
    from labservice.core.history import critical_marks

    answer = item.answer
    if "delta" in answer:  # the store adds the delta block last (with_delta): only to an answer without one
        return item
    item.critical = critical_marks(answer.get("analytes"))
    item.answer_text = json_text.encoded(answer)
    del item.answer
    return item


@dataclass
class StoredCbc(AnswerFromText):
    """Where a CBC is kept, its delta block and delta findings, and its answer with both (as stored)."""

    cbc_id: int
    interpretation_id: int
    duplicate: bool
    delta: dict[str, Any] = field(default_factory=dict)
    referral_id: int | None = None
    delta_findings: list[dict[str, Any]] = field(default_factory=list)
    answer: dict[str, Any] = field(default_factory=dict)
    batch_id: str | None = None  # the batch that stored the result (a duplicate: the batch of the kept one)
    answer_text: json_text.Encoded | None = None  # the answer as stored, when only its text is held


def _stored(cbc: StoredCbc, answer: dict[str, Any] | json_text.Encoded) -> StoredCbc:
    """`cbc` with its answer as stored: a dict, or text (then `answer` is read from it on first use)."""
    if isinstance(answer, json_text.Encoded):
        cbc.answer_text = answer
        del cbc.answer
    else:
        cbc.answer = answer
    return cbc


def stored_answer(
    item: CbcToStore, delta: dict[str, Any], found: list[dict[str, Any]]
) -> dict[str, Any] | json_text.Encoded:
    """The answer kept for `item`: with its delta findings after the engine's and its delta block (with_delta). An
    answer held as text with no delta finding gets the block added to its text, without being read."""
    if item.answer_text is not None and "answer" not in item.__dict__ and not found:
        return json_text.with_member(item.answer_text, "delta", delta)
    return with_delta(item.answer, delta, found)


Keep = Callable[[list[CbcToStore]], list[StoredCbc]]


def store_cbcs(
    session: Session,
    items: list[CbcToStore],
    *,
    source: str,
    rs: Ruleset,
    window: timedelta,
    batch_id: str | None = None,
    now: datetime | None = None,
) -> list[StoredCbc]:
    """Keep the CBCs (in order), each once; return where each one is, its delta block and its answer."""
    if not items:
        return []
    now = now or now_utc()
    patients = repository.find_or_add_patients(
        session, [PatientFacts(item.patient, item.sex, item.age_years) for item in items], now
    )
    prints = [
        item.fingerprint or fingerprint(item.patient, item.collected_at, item.values, item.urgency, item.findings)
        for item in items
    ]
    kept = repository.kept_results(
        session, [(patients[item.patient], print_) for item, print_ in zip(items, prints, strict=True)]
    )
    times = [as_utc(item.collected_at) for item in items]
    known = [t for t in times if t is not None]
    stored_history = (
        repository.history(session, sorted(set(patients.values())), min(known) - window, max(known)) if known else []
    )
    # Known critical values, the HIT 4Ts items and the MCV delta (clinical-rules §3, §12 v2) may change an answer's
    # findings and urgency: applied before the delta checks compare urgencies (labservice.services.history_rules).
    items = apply_history_rules(session, items, patients, times, window, rs, worklist_reason)
    deltas = compare_with_previous(
        [
            DeltaCbc(
                item.patient,
                times[i],
                _platelets(item.values.get("platelets")),
                URGENCY_RANK[item.urgency],
                item.findings,
                item.not_assessed,
            )
            for i, item in enumerate(items)
        ],
        [
            DeltaCbc(
                row.patient,
                row.collected_at,
                _platelets(row.platelets),
                row.urgency_rank,
                row.findings,
                row.not_assessed,
                ref=row.interpretation_id,
            )
            for row in stored_history
        ],
        window,
        rs,
    )
    out: list[StoredCbc] = []
    seen: dict[tuple[int, str], StoredCbc] = {}
    added: list[Added] = []  # the new results, in order
    copies: list[tuple[StoredCbc, StoredCbc]] = []  # a CBC sent twice in one call, and its first copy
    results: list[dict[str, Any]] = []
    interpretations: list[dict[str, Any]] = []
    for position, item in enumerate(items):
        patient_id = patients[item.patient]
        key = (patient_id, prints[position])
        platelets = item.values.get("platelets")
        if key in kept or key in seen:
            earlier = seen.get(key)
            cbc_id, interpretation_id, delta, kept_by = (
                (earlier.cbc_id, earlier.interpretation_id, earlier.delta, batch_id) if earlier else kept[key]
            )
            found = delta_findings(delta, platelets, rs)
            out.append(
                _stored(
                    StoredCbc(cbc_id, interpretation_id, True, delta, delta_findings=found, batch_id=kept_by),
                    stored_answer(item, delta, found),
                )
            )
            if earlier is not None:  # its ids are known once the new rows are added
                copies.append((out[-1], earlier))
            continue
        delta = delta_block(deltas[position], window, rs)
        extra = delta_findings(delta, platelets, rs)
        codes = [*item.findings, *(f["code"] for f in extra)]
        answer = stored_answer(item, delta, extra)
        # Delta findings lead the worklist line: a fall or a new cytopenia is what changed.
        reason = ", ".join(f["code"].replace("_", " ") for f in extra) + ", " + item.reason if extra else item.reason
        results.append(
            {
                "patient_id": patient_id,
                "collected_at": times[position],
                "received_at": now,
                "source": source,
                "batch_id": batch_id,
                "fingerprint": prints[position],
                "raw": item.raw,
                "age_years": item.age_years,
                "values": item.values,
            }
        )
        interpretations.append(
            {
                "ruleset_version": rs.version,
                "urgency": item.urgency,
                "urgency_rank": URGENCY_RANK[item.urgency],
                "findings": codes,
                "not_assessed": item.not_assessed,
                "reason": reason,
                "answer": answer,
                "delta": delta,
                "created_at": now,
            }
        )
        stored = _stored(StoredCbc(-1, -1, False, delta, delta_findings=extra, batch_id=batch_id), answer)
        seen[key] = stored
        out.append(stored)
        added.append(Added(stored, patient_id, times[position], item.urgency, codes, reason))
    # The new rows in a handful of statements: their results, then their interpretations, then the referrals.
    cbc_ids = repository.add_results(session, results)
    for row, cbc_id in zip(interpretations, cbc_ids, strict=True):
        row["cbc_id"] = cbc_id
    interpretation_ids = repository.add_interpretations(session, interpretations)
    for entry, cbc_id, interpretation_id in zip(added, cbc_ids, interpretation_ids, strict=True):
        entry.stored.cbc_id, entry.stored.interpretation_id = cbc_id, interpretation_id
    for copy, first in copies:
        copy.cbc_id, copy.interpretation_id = first.cbc_id, first.interpretation_id
    _refer_all(session, added, now)
    return out


class Added(NamedTuple):
    """A result added by store_cbcs, with what the referral policy needs."""

    stored: StoredCbc
    patient_id: int
    collected_at: datetime | None
    urgency: str
    codes: list[str]
    reason: str


def _refer_all(session: Session, added: list[Added], now: datetime) -> None:
    """Apply the referral policy to the new CBCs in order (labservice.services.referral_policy), as storing them
    one by one would: the open referrals of their patients read once (under a row lock), each patient's state
    followed in memory, then the referrals opened in one INSERT and the ones shown anew in one UPDATE."""
    if not added:
        return
    open_now = repository.open_referrals(session, [entry.patient_id for entry in added])
    # patient id -> (referral: an id, or ("new", index into opened)), the urgency and time of the CBC it shows
    state: dict[int, tuple[int | tuple[str, int], int, datetime | None]] = {
        patient_id: (shown.id, shown.urgency_rank, shown.collected_at) for patient_id, shown in open_now.items()
    }
    opened: list[tuple[int, dict[str, Any]]] = []
    shown_anew: dict[int, dict[str, Any]] = {}
    refers: list[tuple[StoredCbc, int | tuple[str, int] | None]] = []
    for stored, patient_id, collected_at, urgency, codes, reason in added:
        rank = URGENCY_RANK[urgency]
        current = state.get(patient_id)
        step = referral_step(
            rank,
            collected_at,
            bool(stored.delta_findings),
            open_rank=None if current is None else current[1],
            open_collected_at=None if current is None else current[2],
        )
        if step is ReferralStep.NONE:
            refers.append((stored, None))
            continue
        assert current is not None or step is ReferralStep.OPEN
        if step is ReferralStep.JOIN:
            assert current is not None
            refers.append((stored, current[0]))
            continue
        values = repository.referral_values(
            interpretation_id=stored.interpretation_id,
            urgency=urgency,
            urgency_rank=rank,
            findings=codes,
            reason=reason,
            collected_at=collected_at,
            now=now,
        )
        if step is ReferralStep.OPEN:
            referral: int | tuple[str, int] = ("new", len(opened))
            opened.append((patient_id, values))
        else:  # SHOW
            assert current is not None
            referral = current[0]
            if isinstance(referral, tuple):
                opened[referral[1]][1].update(values)
            else:
                shown_anew[referral] = values
        state[patient_id] = (referral, rank, collected_at)
        refers.append((stored, referral))
    new_ids = repository.write_referrals(session, opened, shown_anew, now)
    for stored, target in refers:
        stored.referral_id = new_ids[target[1]] if isinstance(target, tuple) else target


@dataclass
class ChunkStored:
    """What store_chunk did with a chunk's rows (each row is counted once, in exactly one of the three)."""

    stored: int  # results added now
    already: int  # results this batch had stored before (a chunk run again after a restart): not stored again
    duplicates: int  # results kept before by another batch or request, or sent twice in this batch
    results: list[StoredCbc]  # one per row, in order (ids, delta block, the answer as stored)


def count_chunk(results: list[StoredCbc], batch_id: str) -> ChunkStored:
    """Sort a chunk's results into stored, already (by this batch, before) and duplicates."""
    stored = sum(1 for result in results if not result.duplicate)
    counted = {result.cbc_id for result in results if not result.duplicate}
    already = 0
    for result in results:
        if result.duplicate and result.batch_id == batch_id and result.cbc_id not in counted:
            counted.add(result.cbc_id)
            already += 1
    return ChunkStored(stored, already, len(results) - stored - already, results)


def store_chunk(
    database: Database,
    items: list[CbcToStore],
    *,
    batch_id: str,
    rs: Ruleset,
    window_days: int,
    source: str = "batch",
    before_commit: Callable[[Session, ChunkStored], None] | None = None,
    now: datetime | None = None,
) -> ChunkStored:
    """Store one chunk of a batch job's rows in ONE transaction of its own, committed before this returns: the
    chunk is kept whole or not at all. For batch jobs (issue 12 item 1) that commit chunk by chunk.

    Idempotent per chunk: a job restarted after a crash may run a chunk again, committed or not. A row this batch
    already stored (same patient, collection time, values and conclusion: the result's fingerprint, unique per
    patient in the database) is not stored again and is counted in `already`, so stored + already is the same on
    every run of the chunk. The batch's row (repository.add_batch) must exist before the first chunk.

    Cost: a handful of statements whatever the chunk's size (labservice.services.store_results.store_cbcs):
    the patients found or added (1-3), the results already kept (1), the chunk's patients' history in the window
    (1 query for the whole chunk), the delta checks over the chunk (labservice.core.delta, vectorised), the results
    and interpretations added (1 INSERT each), the open referrals read and written (1-3). Lookups take IN_CHUNK
    values a statement, so chunks of 10,000 rows are fine on SQLite and PostgreSQL.

    `before_commit(session, counts)` runs in the same transaction just before the commit: a job records its
    progress there (rows stored so far), so its progress and its rows are committed together. Two writers racing
    on a new patient or referral: the loser's transaction is run again (STORE_ATTEMPTS), finding the winner's rows.
    """
    window = timedelta(days=window_days)
    for attempt in range(STORE_ATTEMPTS):
        try:
            with database.session() as session:
                results = store_cbcs(session, items, source=source, rs=rs, window=window, batch_id=batch_id, now=now)
                counts = count_chunk(results, batch_id)
                if before_commit is not None:
                    before_commit(session, counts)
                return counts
        except IntegrityError:
            if attempt == STORE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def with_delta(answer: dict[str, Any], delta: dict[str, Any], found: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer with its delta findings after the engine's and its delta block: what is stored and answered."""
    out = dict(answer)
    out["findings"] = [*answer.get("findings", []), *found]
    out["delta"] = delta
    return out


def _platelets(value: float | None) -> float:
    return math.nan if value is None else float(value)


#: Called in a storing transaction before it commits, with the CBCs stored (the request's audit rows are written
#: so, labservice.middleware.audit_trail.audit_in_transaction): when it raises, nothing is kept.
BeforeCommit = Callable[[Session, list[CbcToStore]], None]


def keep_in(
    database: Database,
    ruleset: Ruleset,
    window_days: int,
    *,
    source: str = "json",
    batch_id: str | None = None,
    before_commit: BeforeCommit | None = None,
) -> Keep:
    """A `keep` that stores into `database` in one transaction (with `before_commit`'s rows, if given)."""

    def keep(items: list[CbcToStore]) -> list[StoredCbc]:
        # Two requests may create the same patient, result or open referral at once; the loser's
        # transaction fails on a unique constraint and is run again, when it finds the winner's rows.
        for attempt in range(STORE_ATTEMPTS):
            try:
                with database.session() as session:
                    stored = store_cbcs(
                        session, items, source=source, rs=ruleset, window=timedelta(days=window_days), batch_id=batch_id
                    )
                    if before_commit is not None:
                        before_commit(session, items)
                    return stored
            except IntegrityError:
                if attempt == STORE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    return keep


def keep_in_session(
    session: Session, ruleset: Ruleset, window_days: int, *, source: str = "batch", batch_id: str | None = None
) -> Keep:
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
                        stored = store_cbcs(session, items, source=source, rs=ruleset, window=window, batch_id=batch_id)
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


#: female / male from the engine's sex codes; unknown is None (not stored as a sex).
SEX_BY_CODE = {code: name for name, code in SEX_CODES.items() if name != "unknown"}


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
    sex = patient.get("sex") or SEX_BY_CODE.get(int(columns.sex[row]))  # a CSV's sex is in the engine's columns
    return CbcToStore(
        patient=patient_id,
        collected_at=doc.get("collected_at"),
        raw=raw if isinstance(raw, dict) else {},
        values=values,
        urgency=answer["urgency"],
        findings=codes,
        not_assessed=[entry["code"] for entry in answer.get("not_assessed", [])],
        reason=worklist_reason(codes, values),
        answer=answer,
        sex=sex,
        age_years=None if math.isnan(age) else age,
        context=dict(doc.get("context") or {}),
    )


def worklist_reason(codes: list[str], values: dict[str, float | None]) -> str:
    """One line for the worklist: the first findings and the counts that matter, e.g.
    'critical value, pancytopenia, thrombocytopenia (PLT 45, ANC 0.4, Hb 8.2)'."""
    shown = ", ".join(code.replace("_", " ") for code in codes[:REASON_FINDINGS]) or "no finding"
    if len(codes) > REASON_FINDINGS:
        shown += f" (+{len(codes) - REASON_FINDINGS})"
    counts = ", ".join(
        f"{label} {text_number(values[name])}" for name, label in REASON_VALUES if values.get(name) is not None
    )
    return f"{shown} ({counts})" if counts else shown
