"""The audit trail: who read or changed which patient's data, when, from where, with which request.

Views say what they touched with `labservice.security.principal.touched_patients(ids, action)` (and,
for something not filed under a patient, such as a batch stored without patient ids,
`touched_resource(...)` here). After the view, one `audit_events` row per patient per request is
written in a transaction of its own (a request that stores CBCs writes its rows in its storing transaction
instead, audit_in_transaction: results and audit rows are kept together or not at all): the principal
(`actor_type`, `actor`), the action (`read`,
`create`, `update`, `interpret`), the patient id, the resource (the route template, e.g.
`GET /api/v1/patients/<path:patient_id>/results`, never the path as sent, plus a batch id where one
applies), the answer's status, the client's address (TRUSTED_PROXIES applied) and the request id.

**When the row cannot be written** the answer is withheld: the client gets 503 (problem+json under /api,
a short page elsewhere) with `Retry-After`, and an error is logged with the request id and the number of
rows lost (no patient id). A read whose access cannot be recorded never succeeds silently. CBCs stored through
the API are rolled back with their audit rows (nothing was kept; the 503 says nothing of a change). A change the
view had already committed stays committed: the 503 says so, and repeating the request is safe for
results (a CBC already stored is recognised as a duplicate; a batch already uploaded is answered as such)
while a referral status change is refused the second time (409), which shows it was made.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy import insert

from labservice.extensions import current_database
from labservice.security.principal import Principal, current_principal, patients_touched
from labservice.security.remote import remote_address
from labservice.serving.log_lines import request_id, route
from labservice.store.models import AuditEvent

log = logging.getLogger("labservice.audit")

ACTIONS = ("read", "create", "update", "interpret")
#: Actions that change stored data.
CHANGES = ("create", "update")
#: Seconds a client is asked to wait before repeating a request whose audit row could not be written.
RETRY_AFTER_SECONDS = 5
#: Column widths of audit_events (see labservice.store.models.AuditEvent).
PATIENT_WIDTH, RESOURCE_WIDTH, ACTOR_WIDTH, ADDRESS_WIDTH, REQUEST_ID_WIDTH = 200, 200, 200, 100, 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class AuditRecord:
    """One row to write: what was touched, by whom, from where, in which request."""

    action: str
    patient: str | None
    resource: str
    status: int
    principal: Principal
    remote_addr: str | None
    request_id: str

    def row(self, at: datetime) -> dict[str, Any]:
        return {
            "at": at,
            "actor_type": self.principal.kind[:10],
            "actor": _clean(self.principal.name)[:ACTOR_WIDTH],
            "action": self.action[:20],
            "patient_external_id": None if self.patient is None else _clean(self.patient)[:PATIENT_WIDTH],
            "resource": _clean(self.resource)[:RESOURCE_WIDTH],
            "status": self.status,
            "remote_addr": (self.remote_addr or "")[:ADDRESS_WIDTH] or None,
            "request_id": self.request_id[:REQUEST_ID_WIDTH],
        }


def _clean(text: str) -> str:
    """Control characters as \\xNN (PostgreSQL text cannot hold NUL; a log viewer should not see CR/LF)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class AuditUnavailable(RuntimeError):
    """The audit rows could not be written (the cause is chained)."""


def write_records(database: Any, records: list[AuditRecord]) -> None:
    """Insert the rows in one transaction of their own; raise AuditUnavailable when that fails."""
    if not records:
        return
    at = datetime.now(UTC)
    try:
        with database.session() as session:
            session.execute(insert(AuditEvent), [record.row(at) for record in records])
    except Exception as error:
        raise AuditUnavailable(f"{len(records)} audit rows not written ({type(error).__name__})") from error


# --- in a request -----------------------------------------------------------------------------------

#: The status a storing request answers with when it succeeds: the status of the audit rows written in its
#: storing transaction (audit_in_transaction).
STORED_STATUS = 200


def audit_in_transaction(session: Any, items: list[Any]) -> None:
    """Write this request's 'create' rows for the patients of the CBCs stored (labservice.services.store_results
    CbcToStore), in the storing transaction itself (`session`, before it commits): the results and their audit
    rows are kept together or not at all, and the request needs no second transaction for its audit row.

    The rows say STORED_STATUS; after the view, rows already written so are not written again (a request that
    ends with another status gets its rows with that status too). When they cannot be written AuditUnavailable
    is raised, the storing transaction is rolled back, and the answer is withheld (503, nothing was kept)."""
    patients = list(dict.fromkeys(str(item.patient) for item in items if item.patient))
    if not patients:
        return
    principal, address, rid, resource = current_principal(), remote_address(), request_id(), route()
    records = [AuditRecord("create", patient, resource, STORED_STATUS, principal, address, rid) for patient in patients]
    at = datetime.now(UTC)
    try:
        session.connection().execute(insert(AuditEvent), [record.row(at) for record in records])
    except Exception as error:
        raise AuditUnavailable(f"{len(records)} audit rows not written ({type(error).__name__})") from error
    g.setdefault("audit_written", set()).update((patient, "create") for patient in patients)


def touched_resource(resource: str, action: str) -> None:
    """Name something this request read or changed that is not filed under a patient (e.g. 'batch <id>').

    The resource is added to this request's audit rows; with no patient noted, one row without a patient
    records it."""
    g.audit_resource = (str(resource), action)


def records_for_request(status: int) -> list[AuditRecord]:
    """The audit rows this request calls for (none when it touched no patient and named no resource).

    A dashboard sign-in (the view leaves `g.sign_in`: the username sent and the outcome) is one row too, action
    `sign_in`, status 303 or 401, the outcome (ok, unknown, wrong_password, locked, slowed, disabled) in the
    resource."""
    principal, address, rid = current_principal(), remote_address(), request_id()
    records = []
    attempt = g.get("sign_in")
    if isinstance(attempt, dict):
        who = principal if principal.kind == "user" else Principal("user", str(attempt.get("username") or "-"))
        records.append(
            AuditRecord("sign_in", None, f"{route()} {attempt.get('outcome', '?')}", status, who, address, rid)
        )
    touched = patients_touched()
    if status == STORED_STATUS and g.get("audit_written"):  # written with the results (audit_in_transaction)
        touched = [pair for pair in touched if pair not in g.audit_written]
        if not touched and not records:
            return records
    named = g.get("audit_resource")
    if not touched and named is None:
        return records
    resource = route() + (f" {named[0]}" if named else "")
    if not touched:
        return [*records, AuditRecord(named[1], None, resource, status, principal, address, rid)]
    return [
        *records,
        *(AuditRecord(action, patient, resource, status, principal, address, rid) for patient, action in touched),
    ]


def _write_request_records(response: Response) -> Response:
    records = records_for_request(response.status_code)
    if not records:
        return response
    try:
        write_records(current_database(), records)
    except AuditUnavailable as error:
        log.error(
            "audit trail unavailable: the answer is withheld",
            exc_info=error.__cause__,
            extra={
                "fields": {
                    "route": route().split(" ", 1)[1],
                    "method": request.method,
                    "rows_lost": len(records),
                    "status_withheld": response.status_code,
                    "actions": sorted({record.action for record in records}),
                }
            },
        )
        return withheld_response(changed=any(record.action in CHANGES for record in records))
    return response


def withheld_response(*, changed: bool) -> Response:
    """503: the audit trail could not record this access (problem+json under /api and /cds-services)."""
    from labservice.errors import problem_response

    detail = "The audit trail could not record this access, so the answer is withheld; try again shortly."
    if changed:
        detail += (
            " A change this request made may have been saved: repeating it is safe for results (a CBC "
            "already stored is recognised), and a referral status change already made is refused (409)."
        )
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    if request.path.startswith(("/api/", "/cds-services")):
        return problem_response(503, detail, title="Audit trail unavailable", headers=headers)
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Service unavailable</title>'
        f"</head><body><h1>Service unavailable</h1><p>{detail}</p></body></html>"
    )
    return Response(page, status=503, content_type="text/html; charset=utf-8", headers=headers)


def _withhold_stored(error: AuditUnavailable) -> Response:
    """A storing request whose audit rows could not be written with its results: nothing was kept."""
    log.error(
        "audit trail unavailable: nothing was stored and the answer is withheld",
        exc_info=error.__cause__,
        extra={"fields": {"route": route().split(" ", 1)[1], "method": request.method}},
    )
    return withheld_response(changed=False)


def register_audit(app: Flask) -> None:
    """Write the audit rows after each request (register after logging and the security headers: this hook
    then runs before them and they see the answer it leaves)."""
    app.after_request(_write_request_records)
    app.register_error_handler(AuditUnavailable, _withhold_stored)


# --- outside a request (the MLLP listener) ----------------------------------------------------------


def records_for(
    patients: Iterable[str | None],
    action: str,
    *,
    resource: str,
    status: int,
    principal: Principal,
    remote_addr: str | None,
    request_id: str,
) -> list[AuditRecord]:
    """One record per distinct patient, in order."""
    unique = list(dict.fromkeys(str(patient) for patient in patients if patient))
    return [AuditRecord(action, patient, resource, status, principal, remote_addr, request_id) for patient in unique]


def touched_answers(answers: Iterable[dict[str, Any]]) -> None:
    """Note the patients of interpretation answers: 'create' when the CBC was stored (the answer has `stored`,
    and its delta block compares it with the patient's stored history), 'interpret' when it was not."""
    from labservice.security.principal import touched_patients

    for answer in answers:
        patient = answer.get("patient_id")
        if patient:
            touched_patients([patient], "create" if "stored" in answer else "interpret")


def noting_patients(keep: Callable[[list[Any]], list[Any]], action: str = "create") -> Callable[[list[Any]], list[Any]]:
    """A `keep` (labservice.services.store_results.keep_in) that also notes the patients of the CBCs it stores."""
    from labservice.security.principal import touched_patients

    def keep_noted(items: list[Any]) -> list[Any]:
        stored = keep(items)
        touched_patients([item.patient for item in items], action)
        return stored

    return keep_noted


def touched_batch(batch_id: str, action: str, patients: list[str] | None = None) -> None:
    """Note a batch: its resource, and every patient its results show (`patients`, the list the batch store keeps
    with them). For a batch stored before that list was kept (None), the patients whose CBCs were stored from it
    (one indexed query)."""
    from sqlalchemy import select

    from labservice.security.principal import touched_patients
    from labservice.store.models import CbcResult, Patient

    touched_resource(f"batch {batch_id}", action)
    if patients is not None:
        touched_patients(patients, action)
        return
    with current_database().session() as session:
        stored = session.scalars(
            select(Patient.external_id)
            .join(CbcResult, CbcResult.patient_id == Patient.id)
            .where(CbcResult.batch_id == batch_id)
            .distinct()
        ).all()
    touched_patients(sorted(stored), action)
