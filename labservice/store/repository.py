"""What the services and the views ask of the database; no SQL elsewhere, and no clinical decision here.

Storing an interpreted CBC is a use case (labservice.services.store_results): it decides the delta, the
answer and the referral, and asks this module to find or add patients, look up results already kept and
the patients' recent history, add a result with its interpretation, and read or write the open referral.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import JSON, Select, and_, any_, bindparam, case, func, insert, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from labservice.core.vocabulary import URGENCIES
from labservice.store import json_text
from labservice.store.models import (
    COMMUNICATION_MEANS,
    DISMISS_REASONS,
    OPEN_STATUSES,
    TRANSITIONS,
    VALUE_COLUMNS,
    Base,
    Batch,
    CbcResult,
    CriticalCommunication,
    Patient,
    Referral,
    ReferralEvent,
)

#: The largest id an Integer primary key can hold (PostgreSQL's int4): a larger id names no row, and asking the
#: database for one fails ("integer out of range" on PostgreSQL, OverflowError past 2**63 on SQLite).
MAX_ROW_ID = 2**31 - 1
#: Values in one IN (...) of a look-up: SQLite allows 32,766 bound parameters a statement, and a batch chunk asks
#: about thousands of patients or results at once.
IN_CHUNK = 5000


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
    batch_id: str | None = None  # the batch that stored it (None: a single request)


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


# The storing statements are built once (expanding IN parameters) and run on the session's connection as Core
# statements: no ORM unit of work, flush or identity map on the storing path, one round trip each.
_PATIENTS = Base.metadata.tables["patients"]
_RESULTS = Base.metadata.tables["cbc_results"]
_INTERPRETATIONS = Base.metadata.tables["interpretations"]
_REFERRALS = Base.metadata.tables["referrals"]
_ADD_PATIENT = insert(_PATIENTS).returning(_PATIENTS.c.id, sort_by_parameter_order=True)
_UPDATE_PATIENT = (
    update(_PATIENTS)
    .where(_PATIENTS.c.id == bindparam("b_id"))
    .values(sex=bindparam("b_sex"), age_years=bindparam("b_age"))
)
_ADD_RESULT = insert(_RESULTS).returning(_RESULTS.c.id, sort_by_parameter_order=True)
_ADD_INTERPRETATION = insert(_INTERPRETATIONS).returning(_INTERPRETATIONS.c.id, sort_by_parameter_order=True)

#: `column` among the values of the parameter `name` (a list).
Member = Callable[[Any, str], Any]


def _listed(column: Any, name: str) -> Any:
    """column IN (:name_1, :name_2, ...): one bound parameter per value (SQLite)."""
    return column.in_(bindparam(name, expanding=True))


def _in_array(column: Any, name: str) -> Any:
    """column = ANY(:name): the values as one array parameter (PostgreSQL). A list of thousands of values as many
    parameters cost the driver more than the query (psycopg parses the statement's placeholders in Python)."""
    return column == any_(bindparam(name, type_=postgresql.ARRAY(column.type)))


class _Lookups(NamedTuple):
    """The storing path's statements that take a list of values, written for one kind of database."""

    find_patients: Any
    kept: Any
    prints_of_patients: Any
    history: Any
    open_referrals: Any


def _lookups(member: Member) -> _Lookups:
    return _Lookups(
        find_patients=select(_PATIENTS.c.id, _PATIENTS.c.external_id, _PATIENTS.c.sex, _PATIENTS.c.age_years).where(
            member(_PATIENTS.c.external_id, "names")
        ),
        kept=select(
            _RESULTS.c.patient_id,
            _RESULTS.c.fingerprint,
            _RESULTS.c.id,
            _INTERPRETATIONS.c.id,
            _INTERPRETATIONS.c.delta,
            _RESULTS.c.batch_id,
        )
        .join(_INTERPRETATIONS, _INTERPRETATIONS.c.cbc_id == _RESULTS.c.id)
        .where(member(_RESULTS.c.id, "ids")),
        # The fingerprints stored for some patients: read from the unique (patient_id, fingerprint) index alone. A
        # lookup by fingerprint alone cannot use that index and scanned the whole table once per batch chunk, so
        # storing slowed as the table grew (issue 12).
        prints_of_patients=select(_RESULTS.c.patient_id, _RESULTS.c.fingerprint, _RESULTS.c.id).where(
            member(_RESULTS.c.patient_id, "ids")
        ),
        history=select(
            _PATIENTS.c.external_id,
            _RESULTS.c.collected_at,
            _RESULTS.c.platelets,
            _INTERPRETATIONS.c.urgency_rank,
            _INTERPRETATIONS.c.findings,
            _INTERPRETATIONS.c.not_assessed,
            _INTERPRETATIONS.c.id,
        )
        .join(_RESULTS, _RESULTS.c.patient_id == _PATIENTS.c.id)
        .join(_INTERPRETATIONS, _INTERPRETATIONS.c.cbc_id == _RESULTS.c.id)
        .where(
            member(_PATIENTS.c.id, "ids"),
            _RESULTS.c.collected_at >= bindparam("since"),
            _RESULTS.c.collected_at <= bindparam("until"),
        ),
        open_referrals=select(
            _REFERRALS.c.patient_id, _REFERRALS.c.id, _REFERRALS.c.urgency_rank, _REFERRALS.c.collected_at
        )
        .where(member(_REFERRALS.c.patient_id, "ids"), _REFERRALS.c.status.in_(OPEN_STATUSES))
        .with_for_update(),
    )


_LOOKUPS = {"sqlite": _lookups(_listed), "postgresql": _lookups(_in_array)}


def _lookups_for(connection: Any) -> _Lookups:
    return _LOOKUPS.get(connection.dialect.name, _LOOKUPS["sqlite"])


_ADD_REFERRAL = insert(_REFERRALS).returning(_REFERRALS.c.id, sort_by_parameter_order=True)
#: The columns a referral takes from the CBC it shows (referral_values).
SHOWN_COLUMNS = (
    "interpretation_id",
    "urgency",
    "urgency_rank",
    "findings",
    "finding_codes",
    "reason",
    "collected_at",
    "updated_at",
)
_SHOW_REFERRAL = (
    update(_REFERRALS)
    .where(_REFERRALS.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in SHOWN_COLUMNS})
)


def _in_chunks(values: Sequence[Any]) -> Iterator[list[Any]]:
    items = list(values)
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


def _insert_returning(session: Session, statement: Any, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Run an INSERT ... RETURNING id for the rows (one statement; executemany for several): the ids, in order."""
    connection = session.connection()
    if len(rows) == 1:
        return [connection.execute(statement, rows[0]).scalar_one()]
    return list(connection.execute(statement, list(rows)).scalars())


def find_or_add_patients(session: Session, facts: Sequence[PatientFacts], now: datetime) -> dict[str, int]:
    """Patient ids by external id, adding those not yet known; each keeps the last sex and age given.

    One SELECT, one INSERT of the new patients (RETURNING their ids; COPY for many, as add_results) and one UPDATE
    of those whose sex or age changed, whatever the number of patients (a batch chunk's thousands)."""
    connection = session.connection()
    wanted = sorted({fact.external_id for fact in facts})
    found: dict[str, tuple[int, str | None, float | None]] = {}
    for names in _in_chunks(wanted):
        for id_, name, sex, age in connection.execute(_lookups_for(connection).find_patients, {"names": names}):
            found[name] = (id_, sex, age)
    latest: dict[str, tuple[str | None, float | None]] = {name: (sex, age) for name, (_, sex, age) in found.items()}
    for fact in facts:  # the latest known sex and age
        sex, age = latest.get(fact.external_id, (None, None))
        if fact.sex and fact.sex != "unknown":
            sex = fact.sex
        if fact.age_years is not None and fact.age_years == fact.age_years:
            age = fact.age_years
        latest[fact.external_id] = (sex, age)
    ids = {name: id_ for name, (id_, _, _) in found.items()}
    new = [name for name in wanted if name not in found]
    if new:
        rows = [
            {"external_id": name, "sex": latest[name][0], "age_years": latest[name][1], "created_at": now}
            for name in new
        ]
        added = _copy_returning(session, _PATIENTS, rows)  # a batch chunk's new patients: COPY (see add_results)
        ids.update(
            zip(new, added if added is not None else _insert_returning(session, _ADD_PATIENT, rows), strict=True)
        )
    changed = [
        {"b_id": id_, "b_sex": latest[name][0], "b_age": latest[name][1]}
        for name, (id_, sex, age) in found.items()
        if (sex, age) != latest[name]
    ]
    if changed:
        connection.execute(_UPDATE_PATIENT, changed)
    return ids


def kept_results(session: Session, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], KeptResult]:
    """The results already stored under these (patient id, fingerprint) keys, by key: the patients' fingerprints
    first (an index-only read), then the rows of those that match."""
    connection = session.connection()
    wanted = set(keys)
    found: dict[int, tuple[int, str]] = {}
    for ids in _in_chunks(sorted({patient_id for patient_id, _ in wanted})):
        for patient_id, print_, cbc_id in connection.execute(_lookups_for(connection).prints_of_patients, {"ids": ids}):
            if (patient_id, print_) in wanted:
                found[cbc_id] = (patient_id, print_)
    out: dict[tuple[int, str], KeptResult] = {}
    for ids in _in_chunks(sorted(found)):
        for patient_id, print_, cbc_id, interpretation_id, delta, batch_id in connection.execute(
            _lookups_for(connection).kept, {"ids": ids}
        ):
            out[(patient_id, print_)] = KeptResult(cbc_id, interpretation_id, delta, batch_id)
    return out


def history(session: Session, patient_ids: Sequence[int], since: datetime, until: datetime) -> list[HistoryRow]:
    """Stored CBCs of these patients collected in [since, until], with their interpretations: plain rows (no
    DataFrame), one query for a whole batch chunk's patients (IN_CHUNK ids a statement)."""
    connection = session.connection()
    out = []
    for ids in _in_chunks(patient_ids):
        for patient, collected_at, platelets, rank, findings, not_assessed, id_ in connection.execute(
            _lookups_for(connection).history, {"ids": ids, "since": since, "until": until}
        ):
            out.append(
                HistoryRow(patient, as_utc(collected_at), platelets, rank, findings or [], not_assessed or [], id_)
            )
    return out


#: From this many rows an INSERT is a COPY on PostgreSQL and the driver's executemany on SQLite
#: (`_copy_returning`); fewer go through one INSERT ... RETURNING.
COPY_FROM_ROWS = 50


def _copy_returning(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> list[int] | None:
    """PostgreSQL: add the rows with COPY, their ids taken first from the table's sequence in one query (in the
    order given, as INSERT ... RETURNING gives them); None on another database or for a few rows. COPY costs a
    fraction of a many-row INSERT's bound parameters (issue 12 item 1: a batch chunk's thousands of rows)."""
    dialect = session.get_bind().dialect.name
    if len(rows) < COPY_FROM_ROWS or dialect not in ("postgresql", "sqlite"):
        return None
    if dialect == "sqlite":
        return _sqlite_insert_many(session, table, rows)
    connection = session.connection()
    ids = list(
        connection.execute(
            text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
            {"table": table.name, "n": len(rows)},
        ).scalars()
    )
    names = [column.name for column in table.columns if column.name != "id" and column.name in rows[0]]
    as_json = {name for name in names if isinstance(table.c[name].type, JSON)}
    driver = connection.connection.driver_connection
    assert driver is not None
    statement = f"COPY {table.name} (id, {', '.join(names)}) FROM STDIN"
    import psycopg

    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for id_, row in zip(ids, rows, strict=True):
                copy.write_row([id_, *(json_text.dumps(row[n]) if n in as_json else row[n] for n in names)])
    except psycopg.IntegrityError as error:  # as an INSERT's would be: the caller's retry (STORE_ATTEMPTS) sees it
        raise IntegrityError(statement, None, error) from error
    return ids


def _sqlite_insert_many(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> list[int]:
    """SQLite: add the rows with the driver's executemany, each value bound as SQLAlchemy binds it (its column
    type's bind processor: JSON text, datetimes), with ids following the largest one (the table's own rule for a
    new rowid). Another writer cannot add rows between the two: SQLite has one writer, and a transaction whose
    snapshot is stale cannot start writing (it fails, as any write of it would)."""
    connection = session.connection()
    first = int(connection.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()) + 1
    ids = list(range(first, first + len(rows)))
    names = [column.name for column in table.columns if column.name != "id" and column.name in rows[0]]
    dialect = connection.dialect
    processors = [table.c[name].type._cached_bind_processor(dialect) for name in names]
    params = [
        (
            id_,
            *(
                value if process is None else process(value)
                for process, value in zip(processors, (row[n] for n in names), strict=True)
            ),
        )
        for id_, row in zip(ids, rows, strict=True)
    ]
    statement = f"INSERT INTO {table.name} (id, {', '.join(names)}) VALUES ({', '.join('?' * (len(names) + 1))})"
    driver = connection.connection.driver_connection
    assert driver is not None
    import sqlite3

    try:
        driver.executemany(statement, params)
    except sqlite3.IntegrityError as error:  # as an INSERT's through SQLAlchemy would be
        raise IntegrityError(statement, None, error) from error
    return ids


def add_results(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Add CBC results in one INSERT (RETURNING the ids in the order given). Each row holds patient_id,
    collected_at, received_at, source, batch_id, fingerprint, raw (the JSON as received), age_years and
    `values` (canonical; VALUE_COLUMNS are kept as columns)."""
    if not rows:
        return []
    params = [
        {
            "patient_id": row["patient_id"],
            "collected_at": row["collected_at"],
            "received_at": row["received_at"],
            "source": row["source"],
            "batch_id": row["batch_id"],
            "fingerprint": row["fingerprint"],
            "raw": row["raw"],
            "age_years": row["age_years"],
            **{name: _number(row["values"].get(name)) for name in VALUE_COLUMNS},
        }
        for row in rows
    ]
    copied = _copy_returning(session, _RESULTS, params)
    return copied if copied is not None else _insert_returning(session, _ADD_RESULT, params)


def add_interpretations(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Add interpretations in one INSERT (RETURNING the ids in the order given); each row holds cbc_id,
    ruleset_version, urgency, urgency_rank, findings, not_assessed, reason, answer, delta and created_at."""
    if not rows:
        return []
    copied = _copy_returning(session, _INTERPRETATIONS, rows)
    return copied if copied is not None else _insert_returning(session, _ADD_INTERPRETATION, rows)


def _number(value: float | None) -> float | None:
    return None if value is None or value != value else float(value)


def open_referrals(session: Session, patient_ids: Sequence[int]) -> dict[int, OpenReferral]:
    """The open referral of each of these patients that has one, read under a row lock (FOR UPDATE on PostgreSQL;
    SQLite's one write lock is already held), so two requests escalating it at once cannot lower each other's
    urgency."""
    connection = session.connection()
    out: dict[int, OpenReferral] = {}
    for ids in _in_chunks(sorted(set(patient_ids))):
        for patient_id, id_, rank, collected_at in connection.execute(
            _lookups_for(connection).open_referrals, {"ids": ids}
        ):
            out[patient_id] = OpenReferral(id_, rank, as_utc(collected_at))
    return out


def open_referral(session: Session, patient_id: int) -> OpenReferral | None:
    """The patient's open referral, read under a row lock (as open_referrals), or None."""
    return open_referrals(session, [patient_id]).get(patient_id)


def referral_values(
    *,
    interpretation_id: int,
    urgency: str,
    urgency_rank: int,
    findings: list[str],
    reason: str,
    collected_at: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    """The columns a referral takes from the CBC it shows (SHOWN_COLUMNS)."""
    return {
        "interpretation_id": interpretation_id,
        "urgency": urgency,
        "urgency_rank": urgency_rank,
        "findings": findings,
        "finding_codes": ";" + ";".join(findings) + ";",
        "reason": reason,
        "collected_at": collected_at,
        "updated_at": now,
    }


def write_referrals(
    session: Session, opened: Sequence[tuple[int, dict[str, Any]]], shown: dict[int, dict[str, Any]], now: datetime
) -> list[int]:
    """Open new referrals (status new) for `opened` (patient id, referral_values), in one INSERT, and make the
    referrals `shown` (by id) show other CBCs, in one UPDATE; the new referrals' ids, in order."""
    if shown:
        session.connection().execute(
            _SHOW_REFERRAL,
            [{"b_id": id_, **{f"b_{name}": values[name] for name in SHOWN_COLUMNS}} for id_, values in shown.items()],
        )
    if not opened:
        return []
    rows = [{"patient_id": patient_id, "status": "new", "created_at": now, **values} for patient_id, values in opened]
    return _insert_returning(session, _ADD_REFERRAL, rows)


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


def uncommunicated_critical() -> Any:
    """True for a referral showing a critical value that nobody has yet been told of (no communication that reached
    someone): issue 14 item 9, CLSI GP47 / RCPath G158."""
    reached = select(CriticalCommunication.id).where(
        CriticalCommunication.referral_id == Referral.id, CriticalCommunication.reached.is_(True)
    )
    return and_(Referral.finding_codes.like("%;critical_value;%"), ~reached.exists())


def shows_critical(referral: Referral) -> bool:
    """The referral shows a CBC with a critical value (clinical-rules §3)."""
    return ";critical_value;" in (referral.finding_codes or "")


def critical_uncommunicated(referral: Referral) -> bool:
    """uncommunicated_critical() for a loaded referral (its communications loaded): a critical value that nobody has
    yet been reached about (issue 14 item 9)."""
    return shows_critical(referral) and not any(record.reached for record in referral.communications)


def worklist_order() -> tuple:
    """The worklist's order (issue 13 item 5; clinical-rules §9): critical results not yet communicated first (issue
    14 item 9); then the most urgent first; within an urgency the most
    severe first: a referral showing a critical value before one without, then the lowest platelet count, then the
    lowest neutrophil count (of the CBC the referral shows; a count not measured after those measured); then the most
    recent CBC first. NULLS LAST spelled out: PostgreSQL puts NULL first in a descending order, SQLite last."""
    return (
        case((uncommunicated_critical(), 1), else_=0).desc(),
        Referral.urgency_rank.desc(),
        Referral.finding_codes.like("%;critical_value;%").desc(),  # true (1) first on SQLite and PostgreSQL
        CbcResult.platelets.asc().nulls_last(),
        CbcResult.neutrophils.asc().nulls_last(),
        Referral.collected_at.desc().nulls_last(),
        Referral.id.desc(),
    )


def worklist(session: Session, query: WorklistQuery) -> tuple[list[Referral], int]:
    """Referrals matching the query in the worklist's order (worklist_order); and the total."""
    from labservice.store.models import Interpretation  # the CBC a referral shows: its counts order the list

    statement = _filtered(query)
    total = session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    offset = (query.page - 1) * query.per_page
    if offset >= total:  # past the last page; a huge page number would overflow the database's OFFSET
        return [], int(total)
    page = session.scalars(
        statement.join(Interpretation, Interpretation.id == Referral.interpretation_id)
        .join(CbcResult, CbcResult.id == Interpretation.cbc_id)
        .options(selectinload(Referral.patient), selectinload(Referral.communications))
        .order_by(*worklist_order())
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
    other = open_referrals(session, [referral.patient_id]).get(referral.patient_id)
    if other is not None:
        raise InvalidTransition(
            f"the patient has another open referral (#{other.id}): the dismissal of this one cannot be undone"
        )
    return f"Dismissal undone. {note}" if note else "Dismissal undone."


# -- critical-result communication (issue 14 item 9) -------------------------------------------


class NoCriticalValue(InvalidTransition):
    """A communication record for a referral that shows no critical value."""


class CommunicatedBeforeCollection(ValueError):
    """A communication dated before the referral's CBC was collected: no result existed to tell anyone of."""


def add_communication(
    session: Session,
    referral_id: int,
    *,
    notified: str,
    means: str,
    reached: bool,
    read_back: bool,
    communicated_at: datetime,
    recorded_by: str,
    note: str | None = None,
    now: datetime | None = None,
) -> CriticalCommunication:
    """Record that a referral's critical result was communicated (or could not be): who, when, how, read-back."""
    referral = get_referral(session, referral_id)
    if ";critical_value;" not in (referral.finding_codes or ""):
        raise NoCriticalValue(f"referral {referral_id} shows no critical value: there is nothing to communicate")
    if means not in COMMUNICATION_MEANS:
        raise ValueError(f"means must be one of {', '.join(COMMUNICATION_MEANS)}")
    collected, when = as_utc(referral.collected_at), as_utc(communicated_at)
    if collected is not None and when is not None and when < collected:
        raise CommunicatedBeforeCollection(f"the time given is before the CBC was collected ({collected.isoformat()})")
    record = CriticalCommunication(
        referral_id=referral.id,
        notified=notified,
        means=means,
        reached=reached,
        read_back=read_back and reached,
        communicated_at=communicated_at,
        note=note,
        recorded_by=recorded_by,
        recorded_at=now or now_utc(),
    )
    session.add(record)
    referral.updated_at = record.recorded_at
    session.flush()
    return record


def communication_view(record: CriticalCommunication) -> dict[str, Any]:
    return {
        "id": record.id,
        "notified": record.notified,
        "means": record.means,
        "reached": record.reached,
        "read_back": record.read_back,
        "communicated_at": as_utc(record.communicated_at),
        "note": record.note,
        "recorded_by": record.recorded_by,
        "recorded_at": as_utc(record.recorded_at),
    }


# -- a patient's record ----------------------------------------------------------------------


def patient_record(session: Session, external_id: str) -> Patient | None:
    """The patient with every CBC (oldest first) and its interpretations."""
    return session.scalars(
        select(Patient)
        .where(Patient.external_id == external_id)
        .options(selectinload(Patient.results).selectinload(CbcResult.interpretations))
    ).first()


def known_patients(session: Session, external_ids: Sequence[str]) -> set[str]:
    """Of these patient ids, those with a stored record."""
    found: set[str] = set()
    for part in _in_chunks(sorted(set(external_ids))):
        found.update(session.scalars(select(Patient.external_id).where(Patient.external_id.in_(part))))
    return found


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


# -- the history rules (clinical-rules §3, §12 v2) ----------------------------------------------


class PastRow(NamedTuple):
    """A stored CBC as the history rules read it (labservice.core.history)."""

    patient: str
    collected_at: datetime  # UTC
    platelets: float | None
    mcv: float | None
    findings: list[str]
    interpretation_id: int


#: Values in one IN (...) of the history rules' look-ups (SQLite allows 32,766 bound parameters a statement).
PAST_IN_CHUNK = 5000


def past_rows(session: Session, patient_ids: Sequence[int], since: datetime, until: datetime) -> list[PastRow]:
    """Stored CBCs of these patients collected in [since, until] with the codes of their interpretations, oldest
    first (one query per PAST_IN_CHUNK patients)."""
    from labservice.store.models import Interpretation

    ids = list(patient_ids)
    rows: list[Any] = []
    for start in range(0, len(ids), PAST_IN_CHUNK):
        rows += session.execute(
            select(
                Patient.external_id,
                CbcResult.collected_at,
                CbcResult.platelets,
                CbcResult.mcv,
                Interpretation.findings,
                Interpretation.id,
            )
            .join(CbcResult, CbcResult.patient_id == Patient.id)
            .join(Interpretation, Interpretation.cbc_id == CbcResult.id)
            .where(
                Patient.id.in_(ids[start : start + PAST_IN_CHUNK]),
                CbcResult.collected_at >= since,
                CbcResult.collected_at <= until,
            )
        ).all()
    out = [
        PastRow(patient, as_utc(at), platelets, mcv, findings or [], id_)  # type: ignore[arg-type]
        for patient, at, platelets, mcv, findings, id_ in rows
    ]
    return sorted(out, key=lambda row: (row.collected_at, row.interpretation_id))


def analyte_flags(session: Session, interpretation_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """The analyte flags (N, L, H, LL, HH) of these stored interpretations, as answered."""
    from labservice.store.models import Interpretation

    if not interpretation_ids:
        return {}
    ids = list(interpretation_ids)
    out: dict[int, dict[str, str]] = {}
    for start in range(0, len(ids), PAST_IN_CHUNK):
        for id_, answer in session.execute(
            select(Interpretation.id, Interpretation.answer).where(
                Interpretation.id.in_(ids[start : start + PAST_IN_CHUNK])
            )
        ):
            analytes = (answer or {}).get("analytes") or {}
            out[id_] = {name: str(entry.get("flag")) for name, entry in analytes.items() if isinstance(entry, dict)}
    return out
