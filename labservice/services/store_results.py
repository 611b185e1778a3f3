"""Keep interpreted CBCs with their history: the use case behind every endpoint that stores results.

For the CBCs that carry a patient id, `store_cbcs` finds or adds the patients, skips a result already kept
(same patient, collection time, values and conclusion), compares each CBC with the patient's previous one
(labservice.core.delta), adds the delta findings to its answer and worklist line, keeps the result with its
interpretation, and opens or updates the patient's referral (labservice.services.referral_policy). The decisions
are made here and in the core; the repository persists and queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labservice.core.delta import DeltaCbc, compare_with_previous, delta_block, delta_findings
from labservice.core.numbers import text_number
from labservice.core.ruleset import Ruleset
from labservice.core.table import ANALYTES, CbcColumns
from labservice.core.vocabulary import URGENCY_RANK
from labservice.services.referral_policy import ReferralStep, referral_step
from labservice.store import repository
from labservice.store.database import Database
from labservice.store.repository import PatientFacts, as_utc, fingerprint, now_utc

#: How many finding codes and key values the one-line worklist reason shows.
REASON_FINDINGS = 4
REASON_VALUES = (("platelets", "PLT"), ("neutrophils", "ANC"), ("hemoglobin", "Hb"), ("wbc", "WBC"))
#: Tries of a store transaction that lost a race on a unique constraint.
STORE_ATTEMPTS = 3


@dataclass
class CbcToStore:
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


@dataclass
class StoredCbc:
    """Where a CBC is kept, its delta block and delta findings, and its answer with both (as stored)."""

    cbc_id: int
    interpretation_id: int
    duplicate: bool
    delta: dict[str, Any] = field(default_factory=dict)
    referral_id: int | None = None
    delta_findings: list[dict[str, Any]] = field(default_factory=list)
    answer: dict[str, Any] = field(default_factory=dict)


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
    prints = [fingerprint(item.patient, item.collected_at, item.values, item.urgency, item.findings) for item in items]
    kept = repository.kept_results(session, prints)
    times = [as_utc(item.collected_at) for item in items]
    known = [t for t in times if t is not None]
    stored_history = (
        repository.history(session, sorted(set(patients.values())), min(known) - window, max(known)) if known else []
    )
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
    for position, item in enumerate(items):
        patient_id = patients[item.patient]
        key = (patient_id, prints[position])
        platelets = item.values.get("platelets")
        if key in kept or key in seen:
            earlier = seen.get(key)
            cbc_id, interpretation_id, delta = (
                (earlier.cbc_id, earlier.interpretation_id, earlier.delta) if earlier else kept[key]
            )
            found = delta_findings(delta, platelets, rs)
            out.append(
                StoredCbc(
                    cbc_id,
                    interpretation_id,
                    True,
                    delta,
                    delta_findings=found,
                    answer=with_delta(item.answer, delta, found),
                )
            )
            continue
        delta = delta_block(deltas[position], window, rs)
        extra = delta_findings(delta, platelets, rs)
        codes = [*item.findings, *(f["code"] for f in extra)]
        answer = with_delta(item.answer, delta, extra)
        # Delta findings lead the worklist line: a fall or a new cytopenia is what changed.
        reason = ", ".join(f["code"].replace("_", " ") for f in extra) + ", " + item.reason if extra else item.reason
        rank = URGENCY_RANK[item.urgency]
        cbc_id = repository.add_result(
            session,
            patient_id=patient_id,
            collected_at=times[position],
            received_at=now,
            source=source,
            batch_id=batch_id,
            fingerprint=prints[position],
            raw=item.raw,
            age_years=item.age_years,
            values=item.values,
        )
        interpretation_id = repository.add_interpretation(
            session,
            cbc_id=cbc_id,
            ruleset_version=rs.version,
            urgency=item.urgency,
            urgency_rank=rank,
            findings=codes,
            not_assessed=item.not_assessed,
            reason=reason,
            answer=answer,
            delta=delta,
            created_at=now,
        )
        stored = StoredCbc(cbc_id, interpretation_id, False, delta, delta_findings=extra, answer=answer)
        stored.referral_id = _refer(
            session, patient_id, interpretation_id, item.urgency, codes, reason, times[position], bool(extra), now
        )
        seen[key] = stored
        out.append(stored)
    return out


def with_delta(answer: dict[str, Any], delta: dict[str, Any], found: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer with its delta findings after the engine's and its delta block: what is stored and answered."""
    out = dict(answer)
    out["findings"] = [*answer.get("findings", []), *found]
    out["delta"] = delta
    return out


def _platelets(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _refer(
    session: Session,
    patient_id: int,
    interpretation_id: int,
    urgency: str,
    codes: list[str],
    reason: str,
    collected_at: datetime | None,
    has_delta: bool,
    now: datetime,
) -> int | None:
    """Apply the referral policy to a stored CBC: the id of the referral it belongs to, or None."""
    rank = URGENCY_RANK[urgency]
    shown = repository.open_referral(session, patient_id)
    step = referral_step(
        rank,
        collected_at,
        has_delta,
        open_rank=None if shown is None else shown.urgency_rank,
        open_collected_at=None if shown is None else shown.collected_at,
    )
    open_id = None if shown is None else shown.id
    if step in (ReferralStep.NONE, ReferralStep.JOIN):
        return open_id
    return repository.show_on_referral(
        session,
        open_id if step is ReferralStep.SHOW else None,
        patient_id=patient_id,
        interpretation_id=interpretation_id,
        urgency=urgency,
        urgency_rank=rank,
        findings=codes,
        reason=reason,
        collected_at=collected_at,
        now=now,
    )


def keep_in(
    database: Database, ruleset: Ruleset, window_days: int, *, source: str = "json", batch_id: str | None = None
) -> Keep:
    """A `keep` that stores into `database` in one transaction."""

    def keep(items: list[CbcToStore]) -> list[StoredCbc]:
        # Two requests may create the same patient, result or open referral at once; the loser's
        # transaction fails on a unique constraint and is run again, when it finds the winner's rows.
        for attempt in range(STORE_ATTEMPTS):
            try:
                with database.session() as session:
                    return store_cbcs(
                        session, items, source=source, rs=ruleset, window=timedelta(days=window_days), batch_id=batch_id
                    )
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
        patient=patient_id,
        collected_at=doc.get("collected_at"),
        raw=raw if isinstance(raw, dict) else {},
        values=values,
        urgency=answer["urgency"],
        findings=codes,
        not_assessed=[entry["code"] for entry in answer.get("not_assessed", [])],
        reason=worklist_reason(codes, values),
        answer=answer,
        sex=patient.get("sex"),
        age_years=None if math.isnan(age) else age,
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
