"""What the service and the views ask of the database; no SQL elsewhere.

`store_cbcs` keeps interpreted CBCs that carry a patient id: it finds or creates the patients,
skips a result already stored (same patient, collection time and values), runs the delta checks
against each patient's previous CBC, writes the result and its interpretation, and opens or
updates the patient's referral when the CBC needs attention.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import pandas as pd
from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from labservice.core.delta import DELTA_INPUT, delta_checks
from labservice.core.ruleset import Ruleset
from labservice.store.models import (
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

URGENCY_RANK = {"routine": 0, "soon": 1, "urgent": 2, "immediate": 3}
URGENCY_BY_RANK = {rank: name for name, rank in URGENCY_RANK.items()}
#: The largest id an Integer primary key can hold (PostgreSQL's int4): a larger id names no row, and asking the
#: database for one fails ("integer out of range" on PostgreSQL, OverflowError past 2**63 on SQLite).
MAX_ROW_ID = 2**31 - 1


class ReferralNotFound(LookupError):
    pass


class InvalidTransition(ValueError):
    """A status change the referral workflow does not allow (names both statuses)."""


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
    cbc_id: int
    interpretation_id: int
    duplicate: bool
    delta: dict[str, Any] = field(default_factory=dict)
    referral_id: int | None = None
    delta_findings: list[dict[str, Any]] = field(default_factory=list)


def now_utc() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """Naive times are taken as UTC (SQLite returns naive datetimes)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def fingerprint(item: CbcToStore) -> str:
    """The identity of a result: patient, collection time, every canonical value (rounded), and what
    the interpretation concluded, so the same counts sent again with new context that changes the
    interpretation (fever with a non-blanching rash, say) are kept as a result of their own."""
    values = {k: (None if v is None or v != v else round(float(v), 6)) for k, v in sorted(item.values.items())}
    when = moment.isoformat() if (moment := as_utc(item.collected_at)) else None
    text = json.dumps([item.patient, when, values, item.urgency, sorted(item.findings)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# -- storing ---------------------------------------------------------------------------------


def _patients(session: Session, items: list[CbcToStore], now: datetime) -> dict[str, Patient]:
    wanted = sorted({item.patient for item in items})
    found = {p.external_id: p for p in session.scalars(select(Patient).where(Patient.external_id.in_(wanted)))}
    for name in wanted:
        if name not in found:
            found[name] = Patient(external_id=name, created_at=now)
            session.add(found[name])
    for item in items:  # the latest known sex and age
        patient = found[item.patient]
        if item.sex and item.sex != "unknown":
            patient.sex = item.sex
        if item.age_years is not None and item.age_years == item.age_years:
            patient.age_years = item.age_years
    session.flush()
    return found


def _history(session: Session, patient_ids: list[int], since: datetime, until: datetime) -> pd.DataFrame:
    """Stored CBCs of these patients collected in [since, until], with their latest interpretation."""
    rows = session.execute(
        select(Patient.external_id, CbcResult.collected_at, CbcResult.platelets, Interpretation.urgency_rank,
               Interpretation.findings, Interpretation.not_assessed, Interpretation.id)
        .join(CbcResult, CbcResult.patient_id == Patient.id)
        .join(Interpretation, Interpretation.cbc_id == CbcResult.id)
        .where(Patient.id.in_(patient_ids), CbcResult.collected_at >= since, CbcResult.collected_at <= until)
    ).all()
    frame = pd.DataFrame(rows, columns=list(DELTA_INPUT))
    # cast: pandas-stubs leave None out of to_datetime's input (it reads None as NaT)
    frame["collected_at"] = pd.to_datetime(cast(list[Any], [as_utc(t) for t in frame["collected_at"]]), utc=True)
    frame["platelets"] = frame["platelets"].astype(np.float64)
    return frame


def delta_document(row: pd.Series, window: timedelta, rs: Ruleset) -> dict[str, Any]:
    """The delta block of an answer: what was compared and what changed."""
    if row["previous_collected_at"] is pd.NaT or pd.isna(row["previous_collected_at"]):
        return {"assessed": False, "window_days": window.days,
                "reason": "no previous CBC of this patient within the window (or no collection time)"}
    return {
        "assessed": True,
        "window_days": window.days,
        "previous": {"collected_at": row["previous_collected_at"].isoformat(),
                     "urgency": URGENCY_BY_RANK.get(int(row["previous_urgency_rank"])),
                     "platelets": None if pd.isna(row["previous_platelets"]) else float(row["previous_platelets"])},
        "platelet_fall_percent": None if pd.isna(row["platelet_fall_percent"]) else float(row["platelet_fall_percent"]),
        "platelet_drop": bool(row["platelet_drop"]),
        "new_cytopenias": list(row["new_cytopenias"]),
        "urgency_change": row["urgency_change"],
        "sources": rs.cite(rs.threshold("platelet_drop").sources),
    }


def delta_findings(delta: dict[str, Any], platelets_now: float | None, rs: Ruleset) -> list[dict[str, Any]]:
    """Findings for the answer from a delta block (platelet_drop, new_cytopenia)."""
    if not delta.get("assessed"):
        return []
    out = []
    previous = delta["previous"]
    sources = delta["sources"]
    limit = rs.value("platelet_drop")
    if delta["platelet_drop"]:
        out.append({
            "code": "platelet_drop", "title": f"Platelet count fell by {limit:g} % or more",
            "detail": (f"Platelets fell from {previous['platelets']:g} to {platelets_now:g} x10^9/L "
                       f"({delta['platelet_fall_percent']:g} %) since the CBC of {previous['collected_at']}, "
                       f"within {delta['window_days']} days. A fall this large deserves review whatever the "
                       "count (e.g. heparin exposure, consumption, sampling error)."),
            "grade": None, "severity": None,
            "evidence": {"platelets": platelets_now, "previous_platelets": previous["platelets"],
                         "fall_percent": delta["platelet_fall_percent"]},
            "rule": "thresholds.csv:platelet_drop", "sources": sources})
    if delta["new_cytopenias"]:
        names = ", ".join(delta["new_cytopenias"])
        out.append({
            "code": "new_cytopenia", "title": "New cytopenia since the previous CBC",
            "detail": (f"{names} is present now and was absent on the CBC of {previous['collected_at']} "
                       f"(within {delta['window_days']} days)."),
            "grade": None, "severity": None, "evidence": {"new": list(delta["new_cytopenias"])},
            "rule": "delta: a cytopenia decided absent on the previous CBC and present now",
            "sources": sources[-1:]})
    return out


def store_cbcs(session: Session, items: list[CbcToStore], *, source: str, rs: Ruleset, window: timedelta,
               batch_id: str | None = None, now: datetime | None = None) -> list[StoredCbc]:
    """Keep the CBCs (in order), each once; return where each one is and its delta block."""
    if not items:
        return []
    now = now or now_utc()
    patients = _patients(session, items, now)
    prints = [fingerprint(item) for item in items]
    existing = {
        (patient_id, print_): (cbc_id, interpretation_id, delta)
        for patient_id, print_, cbc_id, interpretation_id, delta in session.execute(
            select(CbcResult.patient_id, CbcResult.fingerprint, CbcResult.id, Interpretation.id, Interpretation.delta)
            .join(Interpretation, Interpretation.cbc_id == CbcResult.id)
            .where(CbcResult.fingerprint.in_(prints)))
    }
    times = [as_utc(item.collected_at) for item in items]
    known = [t for t in times if t is not None]
    history = _history(session, [p.id for p in patients.values()], min(known) - window, max(known)) if known else (
        pd.DataFrame(columns=list(DELTA_INPUT)))
    current = pd.DataFrame({
        "patient": [item.patient for item in items],
        "collected_at": pd.to_datetime(cast(list[Any], times), utc=True),  # cast: stubs omit None (read as NaT)
        "platelets": [item.values.get("platelets") for item in items],
        "urgency_rank": [URGENCY_RANK[item.urgency] for item in items],
        "findings": [item.findings for item in items],
        "not_assessed": [item.not_assessed for item in items],
        "ref": [None] * len(items),
    })
    current["platelets"] = current["platelets"].astype(np.float64)
    deltas = delta_checks(current, history, pd.Timedelta(window), rs)
    out: list[StoredCbc] = []
    seen: dict[tuple[int, str], StoredCbc] = {}
    for position, item in enumerate(items):
        patient = patients[item.patient]
        key = (patient.id, prints[position])
        if key in existing or key in seen:
            earlier = seen.get(key)
            cbc_id, interpretation_id, delta = (
                (earlier.cbc_id, earlier.interpretation_id, earlier.delta) if earlier else existing[key])
            out.append(StoredCbc(cbc_id, interpretation_id, True, delta,
                                 delta_findings=delta_findings(delta, item.values.get("platelets"), rs)))
            continue
        delta = delta_document(deltas.iloc[position], window, rs)
        extra = delta_findings(delta, item.values.get("platelets"), rs)
        codes = [*item.findings, *(f["code"] for f in extra)]
        cbc = CbcResult(patient_id=patient.id, collected_at=times[position], received_at=now, source=source,
                        batch_id=batch_id, fingerprint=prints[position], raw=item.raw, age_years=item.age_years,
                        **{name: _number(item.values.get(name)) for name in VALUE_COLUMNS})
        session.add(cbc)
        session.flush()
        answer = dict(item.answer)
        answer["findings"] = [*answer.get("findings", []), *extra]
        answer["delta"] = delta
        # Delta findings lead the worklist line: a fall or a new cytopenia is what changed.
        reason = ", ".join(f["code"].replace("_", " ") for f in extra) + ", " + item.reason if extra else item.reason
        interpretation = Interpretation(
            cbc_id=cbc.id, ruleset_version=rs.version, urgency=item.urgency, urgency_rank=URGENCY_RANK[item.urgency],
            findings=codes, not_assessed=item.not_assessed, reason=reason, answer=answer, delta=delta,
            created_at=now)
        session.add(interpretation)
        session.flush()
        stored = StoredCbc(cbc.id, interpretation.id, False, delta, delta_findings=extra)
        stored.referral_id = _refer(session, patient, interpretation, times[position], codes, bool(extra), now)
        seen[key] = stored
        out.append(stored)
    return out


def _number(value: float | None) -> float | None:
    return None if value is None or value != value else float(value)


def _refer(session: Session, patient: Patient, interpretation: Interpretation, collected_at: datetime | None,
           codes: list[str], has_delta: bool, now: datetime) -> int | None:
    """Open the patient's referral when the CBC needs attention; every CBC stored while one is open belongs to it.

    An open referral's urgency is the highest of its CBCs' urgencies: a CBC never lowers it, whenever it was
    collected or arrives, and a more urgent one always raises it (issue 10: a CBC dated in the future, or posted
    before an older critical one, hid the critical result). The referral shows the CBC that sets its urgency
    (its interpretation, findings, reason and collection time); of CBCs of that same urgency, the newest
    collected (a later arrival at an equal time). A routine CBC without a delta finding opens none and changes
    none. The open referral is read under a row lock (FOR UPDATE on PostgreSQL; SQLite's one write lock is
    already held), so two requests escalating it at once cannot lower each other's urgency.
    """
    needs_attention = interpretation.urgency_rank > 0 or has_delta
    referral = session.scalars(select(Referral).where(Referral.patient_id == patient.id,
                                                      Referral.status.in_(OPEN_STATUSES))
                               .with_for_update().execution_options(populate_existing=True)).first()
    if referral is None and not needs_attention:
        return None
    if referral is None:
        referral = Referral(patient_id=patient.id, status="new", created_at=now)
        session.add(referral)
    elif not _takes_over(referral, interpretation.urgency_rank, collected_at, needs_attention):
        return referral.id
    referral.interpretation_id = interpretation.id
    referral.urgency = interpretation.urgency
    referral.urgency_rank = interpretation.urgency_rank
    referral.findings = codes
    referral.finding_codes = ";" + ";".join(codes) + ";"
    referral.reason = interpretation.reason
    referral.collected_at = collected_at
    referral.updated_at = now
    session.flush()
    return referral.id


def _takes_over(referral: Referral, rank: int, collected_at: datetime | None, needs_attention: bool) -> bool:
    """Whether a CBC of this urgency and time becomes the one the open referral shows: a more urgent one always;
    one of the same urgency that needs attention when it was collected no earlier (or either time is unknown)."""
    if rank != referral.urgency_rank:
        return rank > referral.urgency_rank
    if not needs_attention:
        return False
    shown = as_utc(referral.collected_at)
    return shown is None or collected_at is None or collected_at >= shown


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
        .offset(offset).limit(query.per_page)).all()
    return list(page), int(total)


def urgency_counts(session: Session, statuses: list[str]) -> dict[str, int]:
    """Open referrals per urgency (for the worklist header)."""
    rows = session.execute(select(Referral.urgency, func.count()).where(Referral.status.in_(statuses))
                           .group_by(Referral.urgency)).all()
    counts = {name: 0 for name in ("immediate", "urgent", "soon", "routine")}
    counts.update({urgency: int(count) for urgency, count in rows})
    return counts


def get_referral(session: Session, referral_id: int) -> Referral:
    if not 0 < referral_id <= MAX_ROW_ID:
        raise ReferralNotFound(referral_id)
    referral = session.get(Referral, referral_id, options=[selectinload(Referral.events),
                                                            selectinload(Referral.patient)])
    if referral is None:
        raise ReferralNotFound(referral_id)
    return referral


def change_referral(session: Session, referral_id: int, status: str, *, actor: str, note: str | None = None,
                    on_behalf_of: str | None = None, now: datetime | None = None) -> Referral:
    """Move a referral along new → acknowledged → referred | dismissed, recording who, when and why.

    `actor` is the authenticated caller; `on_behalf_of` a name the caller sent for the person it acts for, kept
    as the free text it is.

    The row is locked first (lock_referral), so two changes at once apply one after the other."""
    lock_referral(session, referral_id)
    referral = get_referral(session, referral_id)
    if status not in TRANSITIONS.get(referral.status, ()):
        allowed = ", ".join(TRANSITIONS.get(referral.status, ())) or "none (it is closed)"
        raise InvalidTransition(f"a referral that is {referral.status} cannot become {status}; allowed: {allowed}")
    now = now or now_utc()
    session.add(ReferralEvent(referral_id=referral.id, from_status=referral.status, to_status=status, note=note,
                              actor=actor, on_behalf_of=on_behalf_of, at=now))
    referral.status = status
    referral.note = note
    referral.status_by = actor
    referral.status_on_behalf_of = on_behalf_of
    referral.status_at = now
    referral.updated_at = now
    session.flush()
    session.refresh(referral, attribute_names=["events"])
    return referral


# -- a patient's record ----------------------------------------------------------------------


def patient_record(session: Session, external_id: str) -> Patient | None:
    """The patient with every CBC (oldest first) and its interpretations."""
    return session.scalars(
        select(Patient).where(Patient.external_id == external_id)
        .options(selectinload(Patient.results).selectinload(CbcResult.interpretations))).first()


def patient_referrals(session: Session, patient_id: int) -> list[Referral]:
    return list(session.scalars(select(Referral).where(Referral.patient_id == patient_id)
                                .options(selectinload(Referral.events)).order_by(Referral.created_at.desc())))


# -- batches ---------------------------------------------------------------------------------
#
# A batch is stored in ONE transaction: its row, then every CBC, interpretation and referral of its rows
# (labservice.batch.keep.BatchTransaction), committed together once the whole file has been read. A worker
# killed before the commit leaves nothing; the database rolls the transaction back.


class BatchAlreadyStored(Exception):
    """A batch with this id was committed by another upload (found when adding its row)."""


def add_batch(session: Session, batch_id: str, content_sha256: str, filename: str | None, *,
              store_requested: bool = True, owner: str | None = None) -> None:
    """Add the batch row its CBCs point to, first in the batch's transaction (flushed: a concurrent upload of the
    same batch waits here on PostgreSQL until this one ends). Raises BatchAlreadyStored when it exists, unless its
    results were purged: the row is then taken up again (labservice.store.batch_records.revive_batch)."""
    from labservice.store.batch_records import revive_batch

    if session.get(Batch, batch_id) is not None:
        if revive_batch(session, batch_id, filename=filename, owner=owner):
            return
        raise BatchAlreadyStored(batch_id)
    session.add(Batch(id=batch_id, content_sha256=content_sha256, filename=filename, created_at=now_utc(),
                      rows_in=0, rows_out=0, interpreted=0, rejected=0, stored=0, summary={},
                      store_requested=store_requested, owner=owner, result_bytes=0))
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


# -- the worklist API (issue 5) --------------------------------------------------------------------


def lock_referral(session: Session, referral_id: int) -> Referral:
    """The referral, read after taking the lock a status change needs, so two changes at once are applied one
    after the other and the second sees the first's status. The lock is taken by an UPDATE that changes
    nothing: the row's lock on PostgreSQL, the database's write lock on SQLite (which ignores FOR UPDATE and,
    through pysqlite, reads outside a transaction until the first write)."""
    if not 0 < referral_id <= MAX_ROW_ID:
        raise ReferralNotFound(referral_id)
    session.execute(update(Referral).where(Referral.id == referral_id).values(status=Referral.status)
                    .execution_options(synchronize_session=False))
    referral = session.scalars(select(Referral).where(Referral.id == referral_id)
                               .execution_options(populate_existing=True)).first()
    if referral is None:
        raise ReferralNotFound(referral_id)
    return referral
