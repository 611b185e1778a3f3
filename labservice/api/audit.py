"""GET /api/v1/audit: the audit trail, newest first, for administrators (scope `admin`).

Who read or changed which patient's data, when, from where, in which request (see
labservice.middleware.audit_trail). Filters: patient, actor, action, request_id, from, to; pages like
GET /api/v1/referrals. Errors are problem+json naming the parameter. Reading the trail is itself recorded (action
`read`, resource `GET /api/v1/audit audit trail`, the `patient` filter as the patient when one is given).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from flask import Flask, request, url_for
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Select, func, select

from labservice.api.common import problem_doc as _problem
from labservice.api.referrals import PageLinksSchema, ProblemParser
from labservice.errors import Problem
from labservice.extensions import current_database
from labservice.middleware.audit_trail import ACTIONS, touched_resource
from labservice.security.principal import current_principal, touched_patients
from labservice.store.models import AuditEvent
from labservice.store.repository import as_utc

if TYPE_CHECKING:
    from flask_smorest import Api

MAX_PER_PAGE = 500
DEFAULT_PER_PAGE = 100

blp = Blueprint(
    "audit",
    __name__,
    url_prefix="/api/v1",
    description="The audit trail: who read or changed which patient's data (scope admin).",
)
blp.ARGUMENTS_PARSER = ProblemParser()


class Moment(fields.Field):
    """A date (YYYY-MM-DD: the whole UTC day) or a date-time (without an offset: UTC)."""

    default_error_messages = {"invalid": "Not a date (YYYY-MM-DD) or an ISO 8601 date-time."}  # noqa: RUF012

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[datetime, bool]:
        if not isinstance(value, str) or len(value) > 40:
            raise self.make_error("invalid")
        text = value.strip()
        try:
            if len(text) == 10:
                return datetime.combine(date.fromisoformat(text), time.min, UTC), True
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            # 0001-01-01T00:00:00+14:00 is before year 1 in UTC: OverflowError, a 500 before
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC), False
        except (ValueError, OverflowError):
            raise self.make_error("invalid") from None


class AuditArgsSchema(Schema):
    patient = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Only rows about this patient (the id the client sent)", "example": "MRN-0042"},
    )
    actor = fields.String(
        validate=validate.Length(min=1, max=220),
        metadata={
            "description": "Only this actor: a key name or username, or `kind:name` (e.g. `api_key:lis-interface`, "
            "`user:dr.smith`)"
        },
    )
    action = fields.String(
        validate=validate.Length(min=1, max=20),
        metadata={
            "description": f"Only this action: {', '.join(ACTIONS)} (or another recorded action, e.g. a sign-in)"
        },
    )
    request_id = fields.String(
        validate=validate.Length(min=1, max=64),
        metadata={"description": "Only the rows of this request (its X-Request-ID)"},
    )
    from_ = Moment(
        data_key="from",
        metadata={
            "type": "string",
            "description": "On or after this UTC day (YYYY-MM-DD) or moment (ISO 8601)",
            "example": "2026-11-01",
        },
    )
    to = Moment(
        metadata={
            "type": "string",
            "description": "On or before this UTC day (the whole day) or moment",
            "example": "2026-11-30",
        }
    )
    page = fields.Integer(load_default=1, validate=validate.Range(min=1), metadata={"description": "From 1"})
    per_page = fields.Integer(
        load_default=DEFAULT_PER_PAGE,
        validate=validate.Range(min=1, max=MAX_PER_PAGE),
        metadata={"description": f"At most {MAX_PER_PAGE}"},
    )

    @validates_schema
    def _in_order(self, data: dict[str, Any], **_: Any) -> None:
        start, end = _start(data.get("from_")), _end(data.get("to"))
        if start and end and start > end:
            raise ValidationError("to is before from.", "to")


def _start(value: tuple[datetime, bool] | None) -> datetime | None:
    return value[0] if value else None


def _end(value: tuple[datetime, bool] | None) -> datetime | None:
    if not value:
        return None
    moment, whole_day = value
    if whole_day and moment.date() == date.max:  # 9999-12-31: the day after it does not exist
        return datetime.max.replace(tzinfo=UTC)
    return moment + timedelta(days=1) - timedelta(microseconds=1) if whole_day else moment


class AuditEventSchema(Schema):
    id = fields.Integer()
    at = fields.DateTime(metadata={"description": "When the answer was given (UTC)"})
    actor_type = fields.String(metadata={"enum": ["api_key", "user", "cds_client", "mllp", "anonymous"]})
    actor = fields.String(metadata={"description": "Key name, username, CDS client issuer or HL7 sender"})
    action = fields.String(metadata={"description": "read, create, update, interpret (interpreted, not stored)"})
    patient_id = fields.String(
        allow_none=True,
        metadata={
            "description": "The patient id the client sent; null for a row about something not filed under a "
            "patient (e.g. a batch stored without patient ids)"
        },
    )
    resource = fields.String(
        metadata={
            "description": "The route (never the path as sent), plus a batch id where one applies",
            "example": "GET /api/v1/patients/<path:patient_id>/results",
        }
    )
    status = fields.Integer(metadata={"description": "The answer's HTTP status"})
    remote_addr = fields.String(allow_none=True, metadata={"description": "The client's address"})
    request_id = fields.String(metadata={"description": "The request's X-Request-ID (also in the logs)"})


class AuditPageSchema(Schema):
    items = fields.List(fields.Nested(AuditEventSchema))
    page = fields.Integer()
    per_page = fields.Integer()
    total = fields.Integer(metadata={"description": "Rows matching the filters, on every page"})
    links = fields.Nested(PageLinksSchema)


def _filtered(args: dict[str, Any]) -> Select:
    statement = select(AuditEvent)
    if args.get("patient"):
        statement = statement.where(AuditEvent.patient_external_id == args["patient"])
    actor = args.get("actor")
    if actor:
        kind, sep, name = actor.partition(":")
        if sep and kind in ("api_key", "user", "cds_client", "mllp", "anonymous"):
            statement = statement.where(AuditEvent.actor_type == kind, AuditEvent.actor == name)
        else:
            statement = statement.where(AuditEvent.actor == actor)
    if args.get("action"):
        statement = statement.where(AuditEvent.action == args["action"])
    if args.get("request_id"):
        statement = statement.where(AuditEvent.request_id == args["request_id"])
    if start := _start(args.get("from_")):
        statement = statement.where(AuditEvent.at >= start)
    if end := _end(args.get("to")):
        statement = statement.where(AuditEvent.at <= end)
    return statement


def _item(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": as_utc(event.at),
        "actor_type": event.actor_type,
        "actor": event.actor,
        "action": event.action,
        "patient_id": event.patient_external_id,
        "resource": event.resource,
        "status": event.status,
        "remote_addr": event.remote_addr,
        "request_id": event.request_id,
    }


def _page_link(page: int) -> str:
    params: dict[str, Any] = request.args.to_dict(flat=False)  # Any: url_for's **values, not its _anchor etc.
    params["page"] = [str(page)]
    return url_for("audit.list_audit_events", **params)


@blp.route("/audit", methods=["GET"])
@blp.arguments(AuditArgsSchema, location="query", as_kwargs=False)
@blp.response(200, AuditPageSchema)
@blp.doc(
    summary="The audit trail",
    description=(
        "Every read or change of patient data, newest first: one row per patient per request, with the actor "
        "(API key, user, CDS client), the action, the route (never the path as sent), the answer's status, the "
        "client's address and the request id. `from` and `to` take a UTC day (the whole of `to` is included) or "
        "a moment. Administrators only (scope `admin`). Each read of the trail is recorded in it too (with the "
        "`patient` filter as its patient)."
    ),
    responses={
        "403": _problem("The caller is not an administrator."),
        "422": _problem("A query parameter that is not valid; `errors` is keyed by the parameter."),
    },
)
def list_audit_events(args: dict[str, Any]) -> dict[str, Any]:
    """Read the audit trail, newest first"""
    touched_resource("audit trail", "read")  # reading the trail is recorded too
    touched_patients([args.get("patient")], "read")  # a look-up of one patient's trail names the patient
    if not current_principal().has("admin"):  # authentication refuses first; this keeps the rule next to the data
        raise Problem(
            403, "Only an administrator (scope admin) may read the audit trail.", {"scope": ["Missing: admin."]}
        )
    page, per_page = args["page"], args["per_page"]
    statement = _filtered(args)
    with current_database().session() as session:
        total = int(session.scalar(select(func.count()).select_from(statement.subquery())) or 0)
        offset = (page - 1) * per_page
        events = (
            []
            if offset >= total
            else session.scalars(
                statement.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).offset(offset).limit(per_page)
            ).all()
        )
        items = [_item(event) for event in events]
    return {
        "items": items,
        "page": page,
        "per_page": per_page,
        "total": total,
        "links": {
            "self": _page_link(page),
            "next": _page_link(page + 1) if page * per_page < total else None,
            "prev": _page_link(page - 1) if page > 1 else None,
        },
    }


def register(api: Api, app: Flask) -> None:
    api.register_blueprint(blp)
