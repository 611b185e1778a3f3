"""The referral worklist: GET /api/v1/referrals, GET and PATCH /api/v1/referrals/{id}.

A referral is opened by a stored CBC that needs attention (urgency other than routine, or a delta
finding) and moves new → acknowledged → referred | dismissed; every change records who (the authenticated API
key), when and why, and the name the caller says it acts for as an unverified "on behalf of" note.
The views are thin: a marshmallow schema validates the query or body, one repository call answers, and
the answer is dumped through the documented schema. Errors are RFC 9457 problems that name the parameter.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from flask import Flask, request, url_for
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, ValidationError, fields, missing, validate, validates_schema
from webargs.flaskparser import FlaskParser

from labservice.api.common import is_json, read_json
from labservice.api.common import problem_doc as _problem
from labservice.api.schemas import FINDING_CODES, URGENCIES
from labservice.errors import BODY_PATH, Problem, first_error, flatten_errors
from labservice.extensions import current_clock_skew, current_database
from labservice.security.principal import current_principal, touched_patients
from labservice.store.models import (
    COMMUNICATION_MEANS,
    DISMISS_REASONS,
    OPEN_STATUSES,
    REFERRAL_STATUSES,
    TRANSITIONS,
    Referral,
)
from labservice.store.repository import (
    CommunicatedBeforeCollection,
    DismissalWithoutReason,
    InvalidTransition,
    NoCriticalValue,
    ReferralNotFound,
    WorklistQuery,
    add_communication,
    as_utc,
    change_referral,
    communication_view,
    critical_uncommunicated,
    get_referral,
    lock_referral,
    shows_critical,
    urgency_counts,
    worklist,
)

if TYPE_CHECKING:
    from flask_smorest import Api

#: The status filter that lifts the default (open referrals only).
ALL_STATUSES = "all"
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
ACTOR_HEADER = "X-User"
ACTOR_MAX_LENGTH = 200  # referral_events.actor and referrals.status_by are String(200)
NOTE_MAX_LENGTH = 4000
#: PostgreSQL text cannot hold NUL, nor can a lone surrogate (JSON "\ud800") be stored as UTF-8; a name holds no
#: control character at all (as a patient id).
NO_NUL = validate.Regexp(r"^[^\x00\ud800-\udfff]*$", error="A note cannot hold NUL characters or lone surrogates.")
NO_CONTROL_PATTERN = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
NO_CONTROL = validate.Regexp(
    r"^[^\x00-\x1f\x7f\ud800-\udfff]*$",
    error="Cannot hold control characters (NUL, tab, line breaks) or lone surrogates.",
)


# --- request parsing: every error is a problem naming the parameter ----------------------------------


class ProblemParser(FlaskParser):
    """webargs' Flask parser whose errors are labservice problems: 415 for a body that is not JSON, 400 for
    malformed JSON, 422 with `errors` keyed by the parameter (query) or field (body) to blame."""

    def load_json(self, req, schema):
        raw = req.get_data(cache=True)
        # A URL-encoded body was already read as a form (middleware.text_input checks its fields): the data is
        # empty then, but the body was sent.
        if (raw or req.content_length) and not is_json(req.mimetype):
            raise Problem(415, f"Send the body as application/json, not {req.mimetype or 'no content type'}.")
        return read_json(raw) if raw else missing  # no body: the schema names what is required

    def handle_error(self, error, req, schema, *, error_status_code, error_headers) -> NoReturn:
        errors: dict[str, list[str]] = {}
        for location, messages in error.messages.items():
            for path, texts in flatten_errors(messages).items():
                if location == "query":  # urgency.1 -> urgency: the parameter, not its n-th value
                    path = ".".join(part for part in path.split(".") if not part.isdigit()) or BODY_PATH
                errors.setdefault(path, []).extend(text for text in texts if text not in errors.get(path, []))
        what = "query parameter" if "query" in error.messages else "field"
        raise Problem(422, f"Invalid {what} {first_error(errors)}", errors)


blp = Blueprint(
    "referrals",
    __name__,
    url_prefix="/api/v1",
    description="The referral worklist: CBCs that need attention, most urgent first, and their status.",
)
blp.ARGUMENTS_PARSER = ProblemParser()


# --- schemas -----------------------------------------------------------------------------------------


class WorklistArgsSchema(Schema):
    """The worklist's query string. Repeat urgency or status for several values."""

    urgency = fields.List(
        fields.String(validate=validate.OneOf(URGENCIES)),
        metadata={"description": "Only these urgencies (repeat the parameter for several)"},
    )
    finding = fields.String(
        validate=validate.OneOf(FINDING_CODES),
        metadata={"description": "Only referrals whose CBC has this finding code"},
    )
    status = fields.List(
        fields.String(validate=validate.OneOf((*REFERRAL_STATUSES, ALL_STATUSES))),
        metadata={
            "description": "Only these statuses (repeat for several); default the open ones (new, acknowledged); "
            "`all` for every status"
        },
    )
    patient = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Only this patient's referrals (the patient id the client sent)"},
    )
    from_ = fields.Date(
        data_key="from", metadata={"description": "Collected on or after this day (UTC)", "example": "2026-11-01"}
    )
    to = fields.Date(metadata={"description": "Collected on or before this day (UTC)", "example": "2026-11-30"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1), metadata={"description": "From 1"})
    per_page = fields.Integer(
        load_default=DEFAULT_PER_PAGE,
        validate=validate.Range(min=1, max=MAX_PER_PAGE),
        metadata={"description": f"At most {MAX_PER_PAGE}"},
    )

    @validates_schema
    def _days_in_order(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("from_") and data.get("to") and data["from_"] > data["to"]:
            raise ValidationError(f"to ({data['to']}) is before from ({data['from_']}).", "to")


class ReferralChangeSchema(Schema):
    """A status change: the new status, a note, and who makes it."""

    class Meta:
        unknown = RAISE

    status = fields.String(
        required=True,
        validate=validate.OneOf(REFERRAL_STATUSES),
        metadata={
            "description": "new → acknowledged → referred or dismissed (new may go straight to either); referred "
            "is final. A dismissal needs a `reason`; it can be undone by setting the status it had before "
            "(new or acknowledged) while the patient has no other open referral"
        },
    )
    reason = fields.String(
        load_default=None,
        validate=validate.OneOf(tuple(DISMISS_REASONS)),
        metadata={
            "description": "Why a referral is dismissed (required with status dismissed): "
            + "; ".join(f"`{code}`: {text}" for code, text in DISMISS_REASONS.items()),
            "example": "already_managed",
        },
    )
    note = fields.String(
        allow_none=True,
        load_default=None,
        validate=[validate.Length(max=NOTE_MAX_LENGTH), NO_NUL],
        metadata={"example": "Called the ward; repeat count in a citrate tube."},
    )
    actor = fields.String(
        validate=[validate.Length(min=1, max=ACTOR_MAX_LENGTH), NO_CONTROL],
        metadata={
            "description": f"The person the caller acts for (default: the {ACTOR_HEADER} header). Kept only as a "
            "free-text `on_behalf_of` note, never verified: the change is recorded under the API key "
            "that makes it",
            "example": "dr.smith",
        },
    )


class ReferralPatientSchema(Schema):
    sex = fields.String(allow_none=True, metadata={"description": "female or male; null when not known"})
    age_years = fields.Float(allow_none=True, metadata={"description": "Age at the patient's latest stored CBC"})


class ReferralLinksSchema(Schema):
    self = fields.String(metadata={"example": "/api/v1/referrals/17"})
    patient = fields.String(
        metadata={"description": "The patient's results (for trends)", "example": "/api/v1/patients/MRN-0042/results"}
    )


class ReferralSchema(Schema):
    """One referral: the patient, why the CBC needs attention, and where the workflow stands."""

    id = fields.Integer()
    patient_id = fields.String(metadata={"description": "The patient id the client sent"})
    patient = fields.Nested(ReferralPatientSchema)
    status = fields.String(metadata={"enum": list(REFERRAL_STATUSES)})
    urgency = fields.String(
        metadata={
            "enum": list(URGENCIES),
            "description": "The highest urgency of the CBCs "
            "stored while the referral is open: a later or older CBC never lowers it",
        }
    )
    findings = fields.List(
        fields.String(), metadata={"description": "Finding codes of the CBC, delta findings included"}
    )
    reason = fields.String(
        metadata={
            "description": "One line for the worklist",
            "example": "critical value, thrombocytopenia (PLT 15, Hb 13.5)",
        }
    )
    collected_at = fields.DateTime(allow_none=True, metadata={"description": "When the CBC was collected"})
    created_at = fields.DateTime(metadata={"description": "When the referral was opened"})
    critical = fields.Boolean(metadata={"description": "The CBC it shows has a critical value (clinical-rules §3)"})
    critical_uncommunicated = fields.Boolean(
        metadata={
            "description": "A critical value that nobody has yet been reached about (no communication record with "
            "reached true, POST .../communications; CLSI GP47, RCPath G158): the worklist lists these first"
        }
    )
    updated_at = fields.DateTime(metadata={"description": "Last change: a newer CBC or a status change"})
    note = fields.String(allow_none=True, metadata={"description": "The note of the latest status change"})
    status_by = fields.String(
        allow_none=True,
        metadata={
            "description": "Who made the latest status change, as authenticated: `api_key:<key name>`, or the "
            "signed-in user's name for a change made on the dashboard",
            "example": "api_key:lis-interface",
        },
    )
    status_on_behalf_of = fields.String(
        allow_none=True,
        metadata={
            "description": "The name the caller sent for the person it acted for (`actor`), as sent: not verified"
        },
    )
    status_at = fields.DateTime(allow_none=True, metadata={"description": "When"})
    interpretation_id = fields.Integer(
        metadata={
            "description": "The stored interpretation of the CBC that sets "
            "the referral's urgency: the highest of the "
            "CBCs stored while it is open (of several, the "
            "one collected last)"
        }
    )
    links = fields.Nested(ReferralLinksSchema)


class ReferralEventSchema(Schema):
    from_status = fields.String(metadata={"enum": list(REFERRAL_STATUSES)})
    to_status = fields.String(metadata={"enum": list(REFERRAL_STATUSES)})
    note = fields.String(allow_none=True)
    actor = fields.String(
        metadata={
            "description": "Who made the change, as authenticated: `api_key:<key name>`, "
            "or the signed-in user's name (dashboard)"
        }
    )
    on_behalf_of = fields.String(
        allow_none=True,
        metadata={"description": "The name the caller sent for the person it acted for, as sent: not verified"},
    )
    at = fields.DateTime()


class CommunicationSchema(Schema):
    """One record of communicating a critical result (CLSI GP47, RCPath G158)."""

    class Meta:
        unknown = RAISE

    id = fields.Integer(dump_only=True)
    notified = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=200), NO_CONTROL],
        metadata={"description": "Who was told (name and role), or who was tried", "example": "Dr Patel, FY2 ward 7"},
    )
    means = fields.String(
        required=True, validate=validate.OneOf(COMMUNICATION_MEANS), metadata={"example": "telephone"}
    )
    reached = fields.Boolean(
        load_default=True, metadata={"description": "false: the clinician could not be reached (say whom you tried)"}
    )
    read_back = fields.Boolean(
        load_default=False, metadata={"description": "The person notified read the result back (only when reached)"}
    )
    communicated_at = fields.AwareDateTime(
        load_default=None,
        metadata={
            "description": "When; default now. Not in the future beyond the clock skew, nor before the CBC was "
            "collected"
        },
    )
    note = fields.String(allow_none=True, load_default=None, validate=[validate.Length(max=NOTE_MAX_LENGTH), NO_NUL])
    recorded_by = fields.String(dump_only=True, metadata={"description": "Who recorded it, as authenticated"})
    recorded_at = fields.DateTime(dump_only=True)


class ReferralDetailSchema(ReferralSchema):
    """A referral with every status change and the interpretation of its CBC."""

    events = fields.List(fields.Nested(ReferralEventSchema), metadata={"description": "Oldest first"})
    communications = fields.List(
        fields.Nested(CommunicationSchema),
        metadata={"description": "Records of communicating its critical result, oldest first (issue 14 item 9)"},
    )
    interpretation = fields.Dict(
        metadata={
            "description": "The interpretation as answered when the CBC was stored, with its delta block",
            "allOf": [{"$ref": "#/components/schemas/Interpretation"}],
        }
    )


class PageLinksSchema(Schema):
    self = fields.String()
    next = fields.String(allow_none=True, metadata={"description": "null on the last page"})
    prev = fields.String(allow_none=True, metadata={"description": "null on the first page"})


class WorklistSchema(Schema):
    items = fields.List(fields.Nested(ReferralSchema))
    page = fields.Integer()
    per_page = fields.Integer()
    total = fields.Integer(metadata={"description": "Referrals matching the filters, on every page"})
    counts = fields.Dict(
        keys=fields.String(metadata={"enum": list(URGENCIES)}),
        values=fields.Integer(),
        metadata={
            "description": "Open referrals (new or acknowledged) per urgency, whatever the filters",
            "example": {"immediate": 1, "urgent": 4, "soon": 9, "routine": 0},
        },
    )
    links = fields.Nested(PageLinksSchema)


# --- answers -----------------------------------------------------------------------------------------


def referral_item(referral: Referral) -> dict[str, Any]:
    """A referral as the worklist shows it (its patient must be loaded)."""
    patient = referral.patient
    return {
        "id": referral.id,
        "patient_id": patient.external_id,
        "patient": {"sex": patient.sex, "age_years": patient.age_years},
        "status": referral.status,
        "urgency": referral.urgency,
        "findings": list(referral.findings),
        "reason": referral.reason,
        "collected_at": as_utc(referral.collected_at),
        "created_at": as_utc(referral.created_at),
        "critical": shows_critical(referral),
        "critical_uncommunicated": critical_uncommunicated(referral),
        "updated_at": as_utc(referral.updated_at),
        "note": referral.note,
        "status_by": referral.status_by,
        "status_on_behalf_of": referral.status_on_behalf_of,
        "status_at": as_utc(referral.status_at),
        "interpretation_id": referral.interpretation_id,
        "links": {
            "self": url_for("referrals.show_referral", referral_id=referral.id),
            "patient": url_for("patients.get_patient_results", patient_id=patient.external_id),
        },
    }


def _detail(referral: Referral) -> dict[str, Any]:
    out = referral_item(referral)
    out["events"] = [
        {
            "from_status": event.from_status,
            "to_status": event.to_status,
            "note": event.note,
            "actor": event.actor,
            "on_behalf_of": event.on_behalf_of,
            "at": as_utc(event.at),
        }
        for event in referral.events
    ]
    out["communications"] = [communication_view(record) for record in referral.communications]
    out["interpretation"] = referral.interpretation.answer
    return out


def _query(args: dict[str, Any]) -> WorklistQuery:
    statuses = args.get("status") or list(OPEN_STATUSES)
    start, end = args.get("from_"), args.get("to")
    return WorklistQuery(
        urgency=sorted(set(args.get("urgency") or [])),
        finding=args.get("finding"),
        status=[] if ALL_STATUSES in statuses else sorted(set(statuses)),
        collected_from=_day_start(start) if start else None,
        collected_to=_day_start(end + timedelta(days=1)) - timedelta(microseconds=1) if end else None,
        patient=args.get("patient"),
        page=args["page"],
        per_page=args["per_page"],
    )


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _page_link(page: int) -> str:
    """This request's URL with another page (the other parameters as sent)."""
    params: dict[str, Any] = request.args.to_dict(flat=False)  # Any: url_for's **values, not its _anchor etc.
    params["page"] = [str(page)]
    return url_for("referrals.list_referrals", **params)


def _page_links(page: int, per_page: int, total: int) -> dict[str, str | None]:
    return {
        "self": _page_link(page),
        "next": _page_link(page + 1) if page * per_page < total else None,
        "prev": _page_link(page - 1) if page > 1 else None,
    }


def _actor() -> str:
    """Who makes the change: the authenticated caller (this endpoint takes API keys only: `api_key:<name>`)."""
    return current_principal().id


def _on_behalf_of(sent: str | None) -> str | None:
    """The name the caller says it acts for: the body's actor, else the X-User header, else none. Self-declared
    free text, kept as a note beside the actor and never in its place."""
    if sent is not None:
        return sent
    header = (request.headers.get(ACTOR_HEADER) or "").strip()
    if len(header) > ACTOR_MAX_LENGTH:
        raise Problem(
            422,
            f"The {ACTOR_HEADER} header is longer than {ACTOR_MAX_LENGTH} characters.",
            {ACTOR_HEADER: [f"At most {ACTOR_MAX_LENGTH} characters."]},
        )
    if NO_CONTROL_PATTERN.search(header):
        raise Problem(
            422,
            f"The {ACTOR_HEADER} header cannot hold control characters.",
            {ACTOR_HEADER: ["Cannot hold control characters."]},
        )
    return header or None


NOT_FOUND = _problem("No referral with this id.")


# --- views -------------------------------------------------------------------------------------------


@blp.route("/referrals", methods=["GET"])
@blp.arguments(WorklistArgsSchema, location="query", as_kwargs=False)
@blp.response(200, WorklistSchema)
@blp.doc(
    summary="The referral worklist",
    description=(
        "Referrals of stored CBCs, most urgent first (immediate, urgent, soon, routine); within an urgency the most "
        "severe first (a critical value before none, then the lowest platelet count, then the lowest neutrophil "
        "count of the CBC shown), then the most recent collection first. Without `status` only open referrals "
        "(new, acknowledged) are listed; `status=all` lists every status. `from` and `to` are UTC days and "
        "include the whole of `to`. `counts` gives the "
        "open referrals per urgency whatever the filters; `links.next` and `links.prev` keep the filters."
    ),
    responses={
        "422": _problem(
            "A query parameter that is not valid (unknown urgency, status or finding, a "
            "page below 1, per_page above 200, a day that is not YYYY-MM-DD, `to` before "
            "`from`); `errors` is keyed by the parameter."
        )
    },
)
def list_referrals(args: dict[str, Any]) -> dict[str, Any]:
    """List referrals, most urgent first"""
    query = _query(args)
    with current_database().session() as session:
        referrals, total = worklist(session, query)
        items = [referral_item(referral) for referral in referrals]
        counts = urgency_counts(session, list(OPEN_STATUSES))
    touched_patients([item["patient_id"] for item in items], "read")  # the audit trail
    return {
        "items": items,
        "page": query.page,
        "per_page": query.per_page,
        "total": total,
        "counts": counts,
        "links": _page_links(query.page, query.per_page, total),
    }


@blp.route("/referrals/<int:referral_id>", methods=["GET"])
@blp.response(200, ReferralDetailSchema)
@blp.doc(summary="One referral with its history and interpretation", responses={"404": NOT_FOUND})
def show_referral(referral_id: int) -> dict[str, Any]:
    """A referral, every status change (who, when, note) and the interpretation of its CBC"""
    with current_database().session() as session:
        try:
            detail = _detail(get_referral(session, referral_id))
        except ReferralNotFound:
            raise Problem(404, f"No referral with id {referral_id}.") from None
    touched_patients([detail["patient_id"]], "read")  # the audit trail
    return detail


@blp.route("/referrals/<int:referral_id>/communications", methods=["POST"])
@blp.arguments(
    CommunicationSchema,
    as_kwargs=False,
    example={"notified": "Dr Patel, FY2 ward 7", "means": "telephone", "reached": True, "read_back": True},
)
@blp.response(201, ReferralDetailSchema)
@blp.doc(
    summary="Record the communication of a referral's critical result",
    description="Who was notified, when, by what means, and whether they read the result back; or that the "
    "clinician could not be reached (`reached: false`). CLSI GP47 and RCPath G158 expect this record for every "
    "critical result. Recorded under the authenticated caller; shown in the referral's history and the audit "
    "trail. A referral whose critical result nobody has been reached about stays first on the worklist.",
    responses={
        "404": NOT_FOUND,
        "409": _problem("The referral shows no critical value."),
        "422": _problem("Bad field, or communicated_at in the future or before the CBC was collected."),
    },
)
def add_referral_communication(record: dict[str, Any], referral_id: int) -> tuple[dict[str, Any], int]:
    """Record who was told of a critical result, when, how, and the read-back"""
    when = record["communicated_at"] or datetime.now(UTC)
    if when > datetime.now(UTC) + current_clock_skew():
        raise Problem(422, "communicated_at is in the future.", {"communicated_at": ["Not in the future."]})
    with current_database().session() as session:
        try:
            add_communication(
                session,
                referral_id,
                notified=record["notified"],
                means=record["means"],
                reached=record["reached"],
                read_back=record["read_back"],
                communicated_at=when,
                note=record["note"],
                recorded_by=_actor(),
            )
            referral = get_referral(session, referral_id)
            session.refresh(referral, attribute_names=["communications"])
        except ReferralNotFound:
            raise Problem(404, f"No referral with id {referral_id}.") from None
        except NoCriticalValue as error:
            raise Problem(409, f"Nothing was recorded: {error}.", {"referral_id": [f"{error}."]}) from None
        except CommunicatedBeforeCollection as error:
            raise Problem(
                422, f"communicated_at: {error}.", {"communicated_at": ["Not before the CBC was collected."]}
            ) from None
        detail = _detail(referral)
    touched_patients([detail["patient_id"]], "update")  # the audit trail
    return detail, 201


@blp.route("/referrals/<int:referral_id>", methods=["PATCH"])
@blp.arguments(
    ReferralChangeSchema,
    as_kwargs=False,
    example={"status": "acknowledged", "note": "Called the ward; repeat count in a citrate tube.", "actor": "dr.smith"},
)
@blp.response(200, ReferralDetailSchema)
@blp.doc(
    summary="Change a referral's status",
    description=(
        "Moves the referral new → acknowledged → referred or dismissed (new may go straight to referred or "
        "dismissed); referred and dismissed are final. The change is recorded as an event with the note, "
        "the time and the actor: the API key that makes it, as `api_key:<key name>`. A name the caller sends "
        "for the person it acts for (`actor` in the body, else the `X-User` header) is kept as the event's "
        "`on_behalf_of` note, as sent and never verified; it does not replace the actor."
    ),
    parameters=[
        {
            "in": "header",
            "name": ACTOR_HEADER,
            "required": False,
            "schema": {"type": "string"},
            "description": "The person the caller acts for when the body has no `actor`: kept as the "
            "unverified `on_behalf_of` note",
        }
    ],
    responses={
        "400": _problem("Malformed JSON."),
        "404": NOT_FOUND,
        "409": _problem("The workflow does not allow this change; the detail names both statuses."),
        "415": _problem("The body is not application/json."),
        "422": _problem(
            "A body that is not a status change: unknown status or field, a note or actor too "
            "long; `errors` is keyed by the field."
        ),
    },
)
def update_referral(change: dict[str, Any], referral_id: int) -> dict[str, Any]:
    """Acknowledge, refer or dismiss a referral, with a note"""
    actor, on_behalf_of = _actor(), _on_behalf_of(change.get("actor"))
    with current_database().session() as session:
        try:
            lock_referral(session, referral_id)  # a concurrent change waits for this one, then sees its status
            referral = change_referral(
                session,
                referral_id,
                change["status"],
                actor=actor,
                note=change["note"],
                on_behalf_of=on_behalf_of,
                reason=change.get("reason"),
            )
        except ReferralNotFound:
            raise Problem(404, f"No referral with id {referral_id}.") from None
        except DismissalWithoutReason as error:
            raise Problem(422, f"The referral was not dismissed: {error}.", {"reason": [f"{error}."]}) from None
        except InvalidTransition as error:
            current = get_referral(session, referral_id).status
            if change["status"] in TRANSITIONS[current]:  # allowed in general, not for this referral (an undo)
                raise Problem(
                    409, f"Referral {referral_id} was not changed: {error}.", {"status": [f"{error}."]}
                ) from None
            allowed = ", ".join(TRANSITIONS[current]) or "none (a referred referral is final)"
            message = f"A {current} referral cannot become {change['status']}; allowed: {allowed}."
            raise Problem(
                409,
                f"Referral {referral_id} is {current} and cannot become {change['status']}; allowed: {allowed}.",
                {"status": [message]},
            ) from None
        touched_patients([referral.patient.external_id], "update")  # the audit trail
        return _detail(referral)


def register(api: Api, app: Flask) -> None:
    api.register_blueprint(blp)
