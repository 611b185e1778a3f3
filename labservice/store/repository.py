"""What the services and the views ask of the database; no SQL elsewhere, and no clinical decision here.

Storing an interpreted CBC is a use case (labservice.services.store_results): it decides the delta, the
answer and the referral, and asks this module to find or add patients, look up results already kept and
the patients' recent history, add a result with its interpretation, and read or write the open referral.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from labservice.core.vocabulary import URGENCIES
from labservice.store.models import (
    DISMISS_REASONS,
    OPEN_STATUSES,
    TRANSITIONS,
    VALUE_COLUMNS,
    Batch,
    CbcResult,
    Interpretation,
    Patient,
    Referral,
    ReferralEvent,
)

#: The largest id an Integer primary key can hold (PostgreSQL's int4): a larger id names no row, and asking the
#: database for one fails ("integer out of range" on PostgreSQL, OverflowError past 2**63 on SQLite).
MAX_ROW_ID = 2**31 - 1


class ReferralNotFound(LookupError):
    pass


class InvalidTransition(ValueError):
    """A status change the referral workflow does not allow (names both statuses)."""


def now_utc() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """Naive times are taken as UTC (SQLite returns naive datetimes)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def fingerprint(
    patient: str, collected_at: datetime | None, values: dict[str, float | None], urgency: str, findings: Sequence[str]
) -> str:
    """The identity of a result: patient, collection time, every canonical value (rounded), and what
    the interpretation concluded, so the same counts sent again with new context that changes the
    interpretation (fever with a non-blanching rash, say) are kept as a result of their own."""
    rounded = {k: (None if v is None or v != v else round(float(v), 6)) for k, v in sorted(values.items())}
    when = as_utc(collected_at)
    text = json.dumps([patient, when.isoformat() if when else None, rounded, urgency, sorted(findings)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# -- storing ---------------------------------------------------------------------------------


class PatientFacts(NamedTuple):
    """A patient as a CBC names them: the external id, and the sex and age it gives (None: not given)."""

    external_id: str
    sex: str | None
    age_years: float | None


class KeptResult(NamedTuple):
    """A result already in the database: its ids and the delta block it was stored with."""

    cbc_id: int
    interpretation_id: int
    delta: dict[str, Any]


class HistoryRow(NamedTuple):
    """A stored CBC of a patient with one of its interpretations (what a delta check compares with)."""

    patient: str
    collected_at: datetime | None  # UTC (never None: history asks for a time range)
    platelets: float | None
    urgency_rank: int
    findings: list[str]
    not_assessed: list[str]
    interpretation_id: int


class OpenReferral(NamedTuple):
    """A patient's open referral: its id and the urgency and collection time of the CBC it shows."""

    id: int
    urgency_rank: int
    collected_at: datetime | None  # UTC


def find_or_add_patients(session: Session, facts: Sequence[PatientFacts], now: datetime) -> dict[str, int]:
    """Patient ids by external id, adding those not yet known; each keeps the last sex and age given."""
    wanted = sorted({fact.external_id for fact in facts})
    found = {p.external_id: p for p in session.scalars(select(Patient).where(Patient.external_id.in_(wanted)))}
    for name in wanted:
        if name not in found:
            found[name] = Patient(external_id=name, created_at=now)
            session.add(found[name])
    for fact in facts:  # the latest known sex and age
        patient = found[fact.external_id]
        if fact.sex and fact.sex != "unknown":
            patient.sex = fact.sex
        if fact.age_years is not None and fact.age_years == fact.age_years:
            patient.age_years = fact.age_years
    session.flush()
    return {name: patient.id for name, patient in found.items()}


def kept_results(session: Session, fingerprints: Sequence[str]) -> dict[tuple[int, str], KeptResult]:
    """The results already stored with these fingerprints, by (patient id, fingerprint)."""
    return {
        (patient_id, print_): KeptResult(cbc_id, interpretation_id, delta)
        for patient_id, print_, cbc_id, interpretation_id, delta in session.execute(
            select(CbcResult.patient_id, CbcResult.fingerprint, CbcResult.id, Interpretation.id, Interpretation.delta)
            .join(Interpretation, Interpretation.cbc_id == CbcResult.id)
            .where(CbcResult.fingerprint.in_(list(fingerprints)))
        )
    }


def history(session: Session, patient_ids: Sequence[int], since: datetime, until: datetime) -> list[HistoryRow]:
    """Stored CBCs of these patients collected in [since, until], with their interpretations."""
    rows = session.execute(
        select(
            Patient.external_id,
            CbcResult.collected_at,
            CbcResult.platelets,
            Interpretation.urgency_rank,
            Interpretation.findings,
            Interpretation.not_assessed,
            Interpretation.id,
        )
        .join(CbcResult, CbcResult.patient_id == Patient.id)
        .join(Interpretation, Interpretation.cbc_id == CbcResult.id)
        .where(Patient.id.in_(list(patient_ids)), CbcResult.collected_at >= since, CbcResult.collected_at <= until)
    ).all()
    return [
        HistoryRow(patient, as_utc(collected_at), platelets, rank, findings or [], not_assessed or [], id_)
        for patient, collected_at, platelets, rank, findings, not_assessed, id_ in rows
    ]


def add_result(
    session: Session,
    *,
    patient_id: int,
    collected_at: datetime | None,
    received_at: datetime,
    source: str,
    batch_id: str | None,
    fingerprint: str,
    raw: dict[str, Any],
    age_years: float | None,
    values: dict[str, float | None],
) -> int:
    """Add a CBC result (its VALUE_COLUMNS as columns, the JSON as received); its id."""
    cbc = CbcResult(
        patient_id=patient_id,
        collected_at=collected_at,
        received_at=received_at,
        source=source,
        batch_id=batch_id,
        fingerprint=fingerprint,
        raw=raw,
        age_years=age_years,
        **{name: _number(values.get(name)) for name in VALUE_COLUMNS},
    )
    session.add(cbc)
    session.flush()
    return cbc.id


def add_interpretation(
    session: Session,
    *,
    cbc_id: int,
    ruleset_version: str,
    urgency: str,
    urgency_rank: int,
    findings: list[str],
    not_assessed: list[str],
    reason: str,
    answer: dict[str, Any],
    delta: dict[str, Any],
    created_at: datetime,
) -> int:
    """Add the interpretation of a stored result; its id."""
    interpretation = Interpretation(
        cbc_id=cbc_id,
        ruleset_version=ruleset_version,
        urgency=urgency,
        urgency_rank=urgency_rank,
        findings=findings,
        not_assessed=not_assessed,
        reason=reason,
        answer=answer,
        delta=delta,
        created_at=created_at,
    )
    session.add(interpretation)
    session.flush()
    return interpretation.id


def _number(value: float | None) -> float | None:
    return None if value is None or value != value else float(value)


def open_referral(session: Session, patient_id: int) -> OpenReferral | None:
    """The patient's open referral, read under a row lock (FOR UPDATE on PostgreSQL; SQLite's one write lock is
    already held), so two requests escalating it at once cannot lower each other's urgency."""
    referral = session.scalars(
        select(Referral)
        .where(Referral.patient_id == patient_id, Referral.status.in_(OPEN_STATUSES))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if referral is None:
        return None
    return OpenReferral(referral.id, referral.urgency_rank, as_utc(referral.collected_at))


def show_on_referral(
    session: Session,
    referral_id: int | None,
    *,
    patient_id: int,
    interpretation_id: int,
    urgency: str,
    urgency_rank: int,
    findings: list[str],
    reason: str,
    collected_at: datetime | None,
    now: datetime,
) -> int:
    """Make the referral show this interpretation (a new referral, status new, when `referral_id` is None);
    its id."""
    if referral_id is None:
        referral = Referral(patient_id=patient_id, status="new", created_at=now)
        session.add(referral)
    else:
        referral = session.get_one(Referral, referral_id)
    referral.interpretation_id = interpretation_id
    referral.urgency = urgency
    referral.urgency_rank = urgency_rank
    referral.findings = findings
    referral.finding_codes = ";" + ";".join(findings) + ";"
    referral.reason = reason
    referral.collected_at = collected_at
    referral.updated_at = now
    session.flush()
    return referral.id


# -- the worklist ----------------------------------------------------------------------------


@dataclass
class WorklistQuery:
    urgency: list[str] = field(default_factory=list)
    finding: str | None = None
    status: list[str] = field(default_factory=lambda: list(OPEN_STATUSES))
    collected_from: datetime | None = None
    collected_to: datetime | None = None
    patient: str | None = None
    page: int = 1
    per_page: int = 50


def _filtered(query: WorklistQuery) -> Select:
    statement = select(Referral).join(Patient, Patient.id == Referral.patient_id)
    if query.urgency:
        statement = statement.where(Referral.urgency.in_(query.urgency))
    if query.status:
        statement = statement.where(Referral.status.in_(query.status))
    if query.finding:
        statement = statement.where(Referral.finding_codes.like(f"%;{query.finding};%"))
    if query.collected_from:
        statement = statement.where(Referral.collected_at >= query.collected_from)
    if query.collected_to:
        statement = statement.where(Referral.collected_at <= query.collected_to)
    if query.patient:
        statement = statement.where(Patient.external_id == query.patient)
    return statement


def worklist(session: Session, query: WorklistQuery) -> tuple[list[Referral], int]:
    """Referrals matching the query, most urgent first, then the most recent CBC first; and the total."""
    statement = _filtered(query)
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    offset = (query.page - 1) * query.per_page
    if offset >= total:  # past the last page; a huge page number would overflow the database's OFFSET
        return [], int(total)
    page = session.scalars(
        statement.options(selectinload(Referral.patient))
        # NULLS LAST spelled out: PostgreSQL puts NULL first in a descending order, SQLite last.
        .order_by(Referral.urgency_rank.desc(), Referral.collected_at.desc().nulls_last(), Referral.id.desc())
        .offset(offset)
        .limit(query.per_page)
    ).all()
    return list(page), int(total)


def urgency_counts(session: Session, statuses: list[str]) -> dict[str, int]:
    """Open referrals per urgency (for the worklist header)."""
    rows = session.execute(
        select(Referral.urgency, func.count()).where(Referral.status.in_(statuses)).group_by(Referral.urgency)
    ).all()
    counts = dict.fromkeys(URGENCIES, 0)
    counts.update({urgency: int(count) for urgency, count in rows})
    return counts


def get_referral(session: Session, referral_id: int) -> Referral:
    if not 0 < referral_id <= MAX_ROW_ID:
        raise ReferralNotFound(referral_id)
    referral = session.get(
        Referral, referral_id, options=[selectinload(Referral.events), selectinload(Referral.patient)]
    )
    if referral is None:
        raise ReferralNotFound(referral_id)
    return referral


def change_referral(
    session: Session,
    referral_id: int,
    status: str,
    *,
    actor: str,
    note: str | None = None,
    on_behalf_of: str | None = None,
    now: datetime | None = None,
    reason: str | None = None,
) -> Referral:
    """Move a referral along new → acknowledged → referred | dismissed, recording who, when and why.

    A dismissal needs a `reason` of DISMISS_REASONS (`other` with a note); the event's note starts with it. A
    dismissal can be undone: back to the status it had before, while the patient has no other open referral.

    `actor` is the authenticated caller; `on_behalf_of` a name the caller sent for the person it acts for, kept
    as the free text it is.

    The row is locked first (lock_referral), so two changes at once apply one after the other."""
    lock_referral(session, referral_id)
    referral = get_referral(session, referral_id)
    if status not in TRANSITIONS.get(referral.status, ()):
        allowed = ", ".join(TRANSITIONS.get(referral.status, ())) or "none (it is closed)"
        raise InvalidTransition(f"a referral that is {referral.status} cannot become {status}; allowed: {allowed}")
    if status == "dismissed":
        note = dismissal_note(reason, note)
    if referral.status == "dismissed":
        note = _undo_note(session, referral, status, note)
    now = now or now_utc()
    session.add(
        ReferralEvent(
            referral_id=referral.id,
            from_status=referral.status,
            to_status=status,
            note=note,
            actor=actor,
            on_behalf_of=on_behalf_of,
            at=now,
        )
    )
    referral.status = status
    referral.note = note
    referral.status_by = actor
    referral.status_on_behalf_of = on_behalf_of
    referral.status_at = now
    referral.updated_at = now
    session.flush()
    session.refresh(referral, attribute_names=["events"])
    return referral


class DismissalWithoutReason(InvalidTransition):
    """A dismissal without a reason of DISMISS_REASONS (or `other` without a note)."""


def dismissal_note(reason: str | None, note: str | None) -> str:
    if reason not in DISMISS_REASONS:
        raise DismissalWithoutReason(f"a dismissal needs a reason: one of {', '.join(DISMISS_REASONS)}")
    if reason == "other" and not (note or "").strip():
        raise DismissalWithoutReason("a dismissal for another reason needs a note that says why")
    if reason == "other":
        return f"Dismissed (other reason): {note}"
    text = f"Dismissed: {DISMISS_REASONS[reason]}."
    return f"{text} {note}" if note else text


def undo_target(referral: Referral) -> str | None:
    """The status a dismissed referral had before its dismissal (None when it is not dismissed)."""
    if referral.status != "dismissed":
        return None
    dismissals = [event for event in referral.events if event.to_status == "dismissed"]
    return dismissals[-1].from_status if dismissals else "new"


def _undo_note(session: Session, referral: Referral, status: str, note: str | None) -> str:
    before = undo_target(referral)
    if status != before:
        raise InvalidTransition(
            f"a dismissed referral goes back to {before} when its dismissal is undone, not {status}"
        )
    other = open_referral(session, referral.patient_id)
    if other is not None:
        raise InvalidTransition(
            f"the patient has another open referral (#{other.id}): the dismissal of this one cannot be undone"
        )
    return f"Dismissal undone. {note}" if note else "Dismissal undone."


# -- a patient's record ----------------------------------------------------------------------


def patient_record(session: Session, external_id: str) -> Patient | None:
    """The patient with every CBC (oldest first) and its interpretations."""
    return session.scalars(
        select(Patient)
        .where(Patient.external_id == external_id)
        .options(selectinload(Patient.results).selectinload(CbcResult.interpretations))
    ).first()


def patient_referrals(session: Session, patient_id: int) -> list[Referral]:
    return list(
        session.scalars(
            select(Referral)
            .where(Referral.patient_id == patient_id)
            .options(selectinload(Referral.events))
            .order_by(Referral.created_at.desc())
        )
    )


# -- batches ---------------------------------------------------------------------------------
#
# A batch is stored in ONE transaction: its row, then every CBC, interpretation and referral of its rows
# (labservice.batch.keep.BatchTransaction), committed together once the whole file has been read. A worker
# killed before the commit leaves nothing; the database rolls the transaction back.


class BatchAlreadyStored(Exception):
    """A batch with this id was committed by another upload (found when adding its row)."""


def add_batch(
    session: Session,
    batch_id: str,
    content_sha256: str,
    filename: str | None,
    *,
    store_requested: bool = True,
    owner: str | None = None,
) -> None:
    """Add the batch row its CBCs point to, first in the batch's transaction (flushed: a concurrent upload of the
    same batch waits here on PostgreSQL until this one ends). Raises BatchAlreadyStored when it exists, unless its
    results were purged: the row is then taken up again (labservice.store.batch_records.revive_batch)."""
    from labservice.store.batch_records import revive_batch

    if session.get(Batch, batch_id) is not None:
        if revive_batch(session, batch_id, filename=filename, owner=owner):
            return
        raise BatchAlreadyStored(batch_id)
    session.add(
        Batch(
            id=batch_id,
            content_sha256=content_sha256,
            filename=filename,
            created_at=now_utc(),
            rows_in=0,
            rows_out=0,
            interpreted=0,
            rejected=0,
            stored=0,
            summary={},
            store_requested=store_requested,
            owner=owner,
            result_bytes=0,
        )
    )
    try:
        session.flush()
    except IntegrityError:
        raise BatchAlreadyStored(batch_id) from None


def finish_batch(session: Session, batch_id: str, summary: dict[str, Any]) -> None:
    """Fill in the batch row's counts and summary, last in the batch's transaction."""
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise LookupError(f"batch {batch_id} was not added in this transaction")
    batch.summary = summary
    for name in ("rows_in", "rows_out", "interpreted", "rejected", "stored"):
        setattr(batch, name, int(summary.get(name, 0)))
    session.flush()


def stored_batch_summary(session: Session, batch_id: str) -> dict[str, Any] | None:
    """The summary of a committed batch, or None when the database has no such batch."""
    batch = session.get(Batch, batch_id)
    return None if batch is None else dict(batch.summary or {})


# -- the worklist API --------------------------------------------------------------------


def lock_referral(session: Session, referral_id: int) -> Referral:
    """The referral, read after taking the lock a status change needs, so two changes at once are applied one
    after the other and the second sees the first's status. The lock is taken by an UPDATE that changes
    nothing: the row's lock on PostgreSQL, the database's write lock on SQLite (which ignores FOR UPDATE and,
    through pysqlite, reads outside a transaction until the first write)."""
    if not 0 < referral_id <= MAX_ROW_ID:
        raise ReferralNotFound(referral_id)
    session.execute(
        update(Referral)
        .where(Referral.id == referral_id)
        .values(status=Referral.status)
        .execution_options(synchronize_session=False)
    )
    referral = session.scalars(
        select(Referral).where(Referral.id == referral_id).execution_options(populate_existing=True)
    ).first()
    if referral is None:
        raise ReferralNotFound(referral_id)
    return referral
