"""The dashboard's pages: the worklist, a patient's record, status changes (batch uploads: batch_pages.py).

Server-rendered with Jinja (autoescaped: patient ids and notes are untrusted text) and usable without
JavaScript. Views ask the repository for data and turn it into plain dicts for the templates; every
threshold a chart draws is read from the ruleset.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import PathConverter

from labservice.core.anemia import anemia_cutoffs
from labservice.core.families.counts import youngest_cutoff_age
from labservice.core.ruleset import AnemiaCutoff, Ruleset
from labservice.core.table import to_columns
from labservice.core.vocabulary import FINDING_CODES, URGENCIES
from labservice.dashboard.charts import FLAG_WORDS, Band, Line, Point, trend_chart
from labservice.extensions import current_clock_skew, current_database, current_ruleset
from labservice.middleware import csrf
from labservice.security import users as accounts
from labservice.security.principal import set_principal, touched_patients
from labservice.security.remote import remote_address
from labservice.store.models import (
    COMMUNICATION_MEANS,
    DISMISS_REASONS,
    OPEN_STATUSES,
    REFERRAL_STATUSES,
    TRANSITIONS,
    CbcResult,
    Interpretation,
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
    patient_record,
    patient_referrals,
    shows_critical,
    undo_target,
    urgency_counts,
    worklist,
)

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates", static_folder="static")

#: What the sign-in page says for an unknown user, a wrong password and a lock alike (no user enumeration).
SIGN_IN_FAILED = (
    "The username or password is not right, or there were too many attempts: check them, wait a minute and try again."
)
NOTE_MAX_LENGTH = 2000
PER_PAGE = 50
#: What a button that moves a referral to each status says.
ACTIONS = {"acknowledged": "Acknowledge", "referred": "Refer", "dismissed": "Dismiss"}
#: The label of the one action a dismissed referral offers (back to the status it had before).
UNDO_LABEL = "Undo dismissal"
#: The lines of each chart: (thresholds.csv key, what crossing it means). Values come from the ruleset.
PLATELET_LINES = (
    ("thrombocytopenia", "thrombocytopenia"),
    ("marrow_failure_platelets", "marrow-failure range"),
    ("critical_platelets_low", "critical"),
)
NEUTROPHIL_LINES = (("neutropenia", "neutropenia"), ("critical_neutrophils_low", "critical"))
#: For a patient stated to be Duffy-null the neutropenia line is the Duffy-null threshold (§4).
NEUTROPHIL_LINES_DUFFY_NULL = (
    ("neutropenia_duffy_null", "neutropenia, Duffy-null"),
    ("critical_neutrophils_low", "critical"),
)
UNIT_TEXT = {"10*9/L": "×10⁹/L", "10*12/L": "×10¹²/L", "g/dL": "g/dL", "%": "%", "fL": "fL"}


# --- helpers for templates --------------------------------------------------------------------


def when_text(moment: datetime | None) -> str:
    moment = as_utc(moment)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "no collection time"


def iso(moment: datetime | None) -> str:
    moment = as_utc(moment)
    return moment.isoformat() if moment else ""


def age_text(age_years: float | None) -> str:
    if age_years is None or age_years != age_years:
        return "age unknown"
    if age_years < 2:
        return f"{math.floor(age_years * 12)} mo"
    return f"{math.floor(age_years)} y"


def sex_text(sex: str | None) -> str:
    return sex if sex in ("female", "male") else "sex unknown"


def unit_text(unit: str) -> str:
    return UNIT_TEXT.get(unit, unit)


def number_text(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:g}"


#: The engine's texts write units plainly (x10^9/L, 10^9/L) or in UCUM (10*9/L, as the rule tables do); the page
#: writes each one way, as its headers do (issue 14 item 10).
PLAIN_UNITS = re.compile(r"[x×]?10[\^*](9|12)/L")
_SHOWN_UNITS = {"9": UNIT_TEXT["10*9/L"], "12": UNIT_TEXT["10*12/L"]}


def units_as_on_the_page(text: Any) -> str:
    """One spelling of units on a page: the engine's `x10^9/L`, `10^9/L` and `10*9/L` become the headers' `×10⁹/L`
    (and likewise ×10¹²/L)."""
    out = "" if text is None else str(text)
    return PLAIN_UNITS.sub(lambda match: _SHOWN_UNITS[match.group(1)], out)


bp.add_app_template_filter(units_as_on_the_page, "page_units")


@bp.context_processor
def template_helpers() -> dict[str, Any]:
    return {
        "when_text": when_text,
        "iso": iso,
        "age_text": age_text,
        "sex_text": sex_text,
        "number_text": number_text,
        "flag_words": FLAG_WORDS,
        "actions": ACTIONS,
        "undo_label": UNDO_LABEL,
        "dismiss_reasons": DISMISS_REASONS,
        "communication_means": COMMUNICATION_MEANS,
        "transitions": TRANSITIONS,
        "user": g.get("user"),
        "actor": getattr(g.get("user"), "display_name", ""),
        "csrf_field": lambda: csrf.hidden_field(session),
    }


# Security headers and the dashboard's Content-Security-Policy: labservice.middleware.headers (every response).


def not_found(what: str) -> ResponseReturnValue:
    return render_template("dashboard/not_found.html", what=what), 404


def safe_next(target: str | None, default: str) -> str:
    """A redirect target on this site's dashboard only (no scheme, no host, no //)."""
    if not target:
        return default
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/dashboard/")
        or "\\" in target
        or any(ord(char) < 32 for char in target)
    ):
        return default
    return target


# --- the worklist -----------------------------------------------------------------------------


@dataclass
class Filters:
    """The worklist's GET parameters, checked; `errors` says what was ignored and why."""

    urgency: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=lambda: list(OPEN_STATUSES))
    finding: str = ""
    date_from: str = ""
    date_to: str = ""
    page: int = 1
    errors: list[str] = field(default_factory=list)

    def query(self) -> WorklistQuery:
        start = _day(self.date_from)
        end = _day(self.date_to)
        return WorklistQuery(
            urgency=list(self.urgency),
            status=list(self.status),
            finding=self.finding or None,
            collected_from=datetime.combine(start, time.min, UTC) if start else None,
            collected_to=datetime.combine(end + timedelta(days=1), time.min, UTC) - timedelta(microseconds=1)
            if end
            else None,
            page=self.page,
            per_page=PER_PAGE,
        )

    def is_filtered(self) -> bool:
        """Whether any filter other than the default (open referrals, every urgency) is set."""
        return bool(self.urgency or self.finding or self.date_from or self.date_to) or self.status != list(
            OPEN_STATUSES
        )

    def args(self, **changes: Any) -> dict[str, Any]:
        """Query-string arguments for a link that keeps these filters (e.g. another page)."""
        status = None if self.status == list(OPEN_STATUSES) else self.status  # the default stays out of links
        out: dict[str, Any] = {
            "urgency": self.urgency,
            "status": status,
            "finding": self.finding or None,
            "from": self.date_from or None,
            "to": self.date_to or None,
            "page": self.page if self.page > 1 else None,
        }
        out.update(changes)
        return {key: value for key, value in out.items() if value not in (None, [], "")}


def _day(text: str) -> date | None:
    return date.fromisoformat(text) if text else None


def read_filters(args: Mapping[str, Any]) -> Filters:
    filters = Filters()
    urgency = [u for u in args.getlist("urgency") if u]  # type: ignore[attr-defined]
    filters.urgency = [u for u in URGENCIES if u in urgency]
    if len(filters.urgency) < len(set(urgency)):
        filters.errors.append("An unknown urgency was ignored.")
    status = [s for s in args.getlist("status") if s]  # type: ignore[attr-defined]
    if status:
        filters.status = [s for s in REFERRAL_STATUSES if s in status]
        if len(filters.status) < len(set(status)):
            filters.errors.append("An unknown status was ignored.")
        if not filters.status:
            filters.status = list(OPEN_STATUSES)
    finding = (args.get("finding") or "").strip()
    if finding in FINDING_CODES:
        filters.finding = finding
    elif finding:
        filters.errors.append("The finding filter is not a known finding code and was ignored.")
    for name, attribute in (("from", "date_from"), ("to", "date_to")):
        text = (args.get(name) or "").strip()
        try:
            _day(text)
        except ValueError:
            filters.errors.append(f"The “{name}” date is not a date (YYYY-MM-DD) and was ignored.")
            continue
        setattr(filters, attribute, text)
    try:
        filters.page = max(1, int(args.get("page") or 1))
    except ValueError:
        filters.errors.append("The page number was not a number.")
    return filters


#: The session key of when this browser session last looked at the worklist (ISO 8601, UTC).
SEEN_KEY = "worklist_seen_at"


def waiting_text(since: datetime | None, now: datetime) -> str:
    """How long a referral has waited since its CBC arrived, as a clinician reads it: 45 min, 3 h 20 min, 2 d 4 h."""
    since = as_utc(since)
    if since is None:
        return "–"
    minutes = max(0, int((now - since).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _last_looked() -> datetime | None:
    """When this session last looked at the worklist (None the first time); now is remembered for next time."""
    seen = session.get(SEEN_KEY)
    session[SEEN_KEY] = datetime.now(UTC).isoformat()
    try:
        return datetime.fromisoformat(seen) if isinstance(seen, str) else None
    except ValueError:
        return None


@bp.get("/")
def worklist_page() -> ResponseReturnValue:
    filters = read_filters(request.args)
    query = filters.query()
    now = datetime.now(UTC)
    last_looked = _last_looked()
    with current_database().session() as session:
        referrals, total = worklist(session, query)
        counts = urgency_counts(session, query.status)
        rows: list[dict[str, Any]] = [
            {
                "id": r.id,
                "urgency": r.urgency,
                "status": r.status,
                "reason": r.reason,
                "collected_at": r.collected_at,
                "patient": r.patient.external_id,
                "sex": r.patient.sex,
                "age_years": r.patient.age_years,
                "findings": list(r.findings or []),
                "allowed": _allowed(r),
                "uncommunicated": _uncommunicated(r),
                "arrived_at": r.created_at,
                "waiting": waiting_text(r.created_at, now),
                # Opened, or raised by a new CBC, after this session last looked (none the first time).
                "new_since_looked": last_looked is not None and (as_utc(r.updated_at) or now) > last_looked,
            }
            for r in referrals
        ]
    touched_patients([row["patient"] for row in rows], "read")  # the audit trail
    pages = max(1, math.ceil(total / PER_PAGE))
    return render_template(
        "dashboard/worklist.html",
        rows=rows,
        total=total,
        counts=counts,
        filters=filters,
        pages=pages,
        urgencies=URGENCIES,
        statuses=REFERRAL_STATUSES,
        finding_codes=FINDING_CODES,
        per_page=PER_PAGE,
        here=request.full_path.rstrip("?"),
        last_looked=last_looked,
        filters_open=bool(filters.errors) or filters.is_filtered(),
    )


# --- status changes ---------------------------------------------------------------------------


@bp.get("/referrals/<int:referral_id>/status")
def status_form(referral_id: int) -> ResponseReturnValue:
    """The status form on a page of its own, with a note."""
    with current_database().session() as session:
        try:
            referral = get_referral(session, referral_id)
        except ReferralNotFound:
            return not_found(f"referral {referral_id}")
        view = _referral_view(referral)
    touched_patients([view["patient"]], "read")  # the audit trail
    chosen = request.args.get("status", "")
    back = safe_next(request.args.get("next"), url_for("dashboard.patient_page", external_id=view["patient"]))
    return render_template("dashboard/referral_status.html", referral=view, chosen=chosen, back=back)


def communication_time(text: str, now: datetime) -> datetime | None:
    """The form's "when" (an HTML datetime-local, read as UTC like every time the dashboard shows); empty is now,
    something that is not a date and time is None."""
    text = text.strip()
    if not text:
        return now
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@bp.post("/referrals/<int:referral_id>/communications")
def record_communication(referral_id: int) -> ResponseReturnValue:
    """Record who was told of the referral's critical result, how and when, and the read-back (CLSI GP47)."""
    form = request.form
    back = safe_next(form.get("next"), url_for("dashboard.worklist_page"))
    notified = (form.get("notified") or "").strip()
    means = form.get("means", "")
    note = (form.get("note") or "").strip() or None
    reached = form.get("reached") == "yes"
    if (
        not notified
        or len(notified) > 200
        or means not in COMMUNICATION_MEANS
        or (note and len(note) > NOTE_MAX_LENGTH)
    ):
        flash("Say who was notified (or tried) and by what means.", "error")
        return redirect(back, 303)
    now = datetime.now(UTC)
    when = communication_time(form.get("communicated_at", ""), now)
    if when is None or when > now + current_clock_skew():
        flash("When: a date and time in UTC, not in the future (leave it empty for now).", "error")
        return redirect(back, 303)
    try:
        with current_database().session() as session:
            add_communication(
                session,
                referral_id,
                notified=notified,
                means=means,
                reached=reached,
                read_back=form.get("read_back") == "yes",
                communicated_at=when,
                note=note,
                recorded_by=g.user.display_name,
            )
            patient = get_referral(session, referral_id).patient.external_id
        touched_patients([patient], "update")  # the audit trail
    except ReferralNotFound:
        return not_found(f"referral {referral_id}")
    except (NoCriticalValue, CommunicatedBeforeCollection) as error:
        flash(f"Nothing was recorded: {error}.", "error")
        return redirect(back, 303)
    said = f"communicated to {notified}" if reached else f"{notified} could not be reached"
    flash(f"Patient {patient}: critical result {said}, recorded by {g.user.display_name}.", "success")
    return redirect(back, 303)


@bp.post("/referrals/<int:referral_id>/status")
def change_status(referral_id: int) -> ResponseReturnValue:
    """Acknowledge, refer or dismiss; back to the page the form was on, with a message."""
    status = request.form.get("status", "")
    note = (request.form.get("note") or "").strip() or None
    reason = request.form.get("reason") or None
    actor = g.user.display_name  # the signed-in user (labservice.middleware.auth made sure there is one)
    back = safe_next(request.form.get("next"), url_for("dashboard.worklist_page"))
    form_page = url_for("dashboard.status_form", referral_id=referral_id, status=status or None, next=back)
    if note and len(note) > NOTE_MAX_LENGTH:
        flash(f"A note can have at most {NOTE_MAX_LENGTH} characters.", "error")
        return redirect(form_page, 303)
    if status not in ACTIONS and status != "new":
        flash("Choose Acknowledge, Refer or Dismiss.", "error")
        return redirect(form_page, 303)
    try:
        with current_database().session() as session:
            referral = change_referral(session, referral_id, status, actor=actor, note=note, reason=reason)
            patient = referral.patient.external_id
        touched_patients([patient], "update")  # the audit trail
    except ReferralNotFound:
        return not_found(f"referral {referral_id}")
    except DismissalWithoutReason as error:  # back to the form, which asks for the reason
        flash(f"The referral was not dismissed: {error}.", "error")
        return redirect(form_page, 303)
    except InvalidTransition as error:
        flash(f"The status was not changed: {error}.", "error")
        return redirect(back, 303)
    flash(f"Patient {patient}: referral {status} by {actor}.", "success")
    return redirect(back, 303)


def _allowed(referral) -> tuple[str, ...]:
    """The status changes this referral offers: a dismissed one offers only the undo, to its earlier status."""
    if referral.status == "dismissed":
        target = undo_target(referral)
        return (target,) if target else ()
    return TRANSITIONS.get(referral.status, ())


def _communications(referral) -> list[dict[str, Any]]:
    return [communication_view(record) for record in referral.communications]


def _uncommunicated(referral) -> bool:
    """A critical result that nobody has yet been reached about (issue 14 item 9)."""
    return critical_uncommunicated(referral)


def _referral_view(referral) -> dict[str, Any]:
    return {
        "critical": shows_critical(referral),
        "communications": _communications(referral),
        "uncommunicated": _uncommunicated(referral),
        "id": referral.id,
        "status": referral.status,
        "urgency": referral.urgency,
        "reason": referral.reason,
        "collected_at": referral.collected_at,
        "created_at": referral.created_at,
        "note": referral.note,
        "patient": referral.patient.external_id,
        "allowed": _allowed(referral),
        "events": [
            {
                "at": e.at,
                "from": e.from_status,
                "to": e.to_status,
                "actor": e.actor,
                "on_behalf_of": e.on_behalf_of,
                "note": e.note,
            }
            for e in referral.events
        ],
    }


# --- a patient's record -----------------------------------------------------------------------


@dataclass(frozen=True)
class HbCutoff:
    """The WHO haemoglobin cut-off(s) for this patient and the sentence that names them."""

    lines: tuple[Line, ...]
    text: str
    sources: tuple[str, ...] = ()


def hemoglobin_cutoff(
    rs: Ruleset, sex: str | None, age_years: float | None, pregnant: bool | None, trimester: int | None
) -> HbCutoff:
    """The WHO anaemia cut-off from anemia_cutoffs.csv, chosen by the engine's own lookup (core.anemia)."""
    low, high, row = _cutoff(rs, sex, age_years, pregnant, trimester)
    if row is None or low != low:
        return HbCutoff((), f"No WHO anaemia cut-off applies (under {youngest_cutoff_age(rs)}): none is drawn.")
    age_note = "" if age_years is not None else " (age unknown: read as an adult)"
    if low == high:
        text = f"WHO anaemia cut-off {low:g} g/dL for {row.population}{age_note}."
        return HbCutoff((Line(low, "anaemia cut-off", "anemia_cutoffs.csv"),), text, row.sources)
    female = _cutoff(rs, "female", age_years, pregnant, trimester)
    male = _cutoff(rs, "male", age_years, pregnant, trimester)
    lines = []
    for (value, _, found), who in ((female, "women"), (male, "men")):
        if found is not None:
            lines.append(Line(value, f"anaemia cut-off, {who}", "anemia_cutoffs.csv"))
    text = f"Sex not recorded: the WHO anaemia cut-off is between {low:g} and {high:g} g/dL (both drawn){age_note}."
    return HbCutoff(tuple(lines), text, row.sources)


def _cutoff(
    rs: Ruleset, sex: str | None, age_years: float | None, pregnant: bool | None, trimester: int | None
) -> tuple[float, float, AnemiaCutoff | None]:
    nan = float("nan")
    table = {
        "sex": [sex or "unknown"],
        "age_years": [nan if age_years is None else age_years],
        "pregnant": [nan if pregnant is None else float(pregnant)],
        "pregnancy_trimester": [nan if trimester is None else float(trimester)],
        "hemoglobin": [nan],
    }
    found = anemia_cutoffs(to_columns(table), rs)
    index = int(found.row_index[0])
    return float(found.low[0]), float(found.high[0]), (rs.anemia_cutoffs[index] if index >= 0 else None)


def _latest_interpretation(cbc: CbcResult) -> Interpretation | None:
    return max(cbc.interpretations, key=lambda i: i.id) if cbc.interpretations else None


def _chronological(results: list[CbcResult]) -> list[CbcResult]:
    """Oldest first; CBCs with no collection time before the dated ones (they cannot be placed in time)."""
    return sorted(results, key=lambda c: (c.collected_at is not None, as_utc(c.collected_at) or datetime.min, c.id))


def _pregnancy(raw: Any) -> tuple[bool | None, int | None]:
    patient = raw.get("patient") if isinstance(raw, dict) else None
    if not isinstance(patient, dict):
        return None, None
    pregnant = patient.get("pregnant")
    trimester = patient.get("pregnancy_trimester")
    return (
        pregnant if isinstance(pregnant, bool) else None,
        trimester if isinstance(trimester, int) and trimester in (1, 2, 3) else None,
    )


def _duffy_null(raw: Any) -> bool:
    patient = raw.get("patient") if isinstance(raw, dict) else None
    return isinstance(patient, dict) and patient.get("duffy_null") is True


def _neutrophil_chart(rs: Ruleset, results: list[CbcResult], duffy_null: bool) -> dict[str, Any]:
    chart: dict[str, Any] = {"analyte": "neutrophils", "title": "Neutrophils"}
    if duffy_null:
        threshold = rs.threshold("neutropenia_duffy_null")
        chart["note"] = (
            f"Stated Duffy-null: neutropenia is below {threshold.value:g} here, not {rs.value('neutropenia'):g}."
        )
        chart["sources"] = rs.cite(threshold.sources)
    lines = NEUTROPHIL_LINES_DUFFY_NULL if duffy_null else NEUTROPHIL_LINES
    chart["svg"] = _chart(rs, "neutrophils", "Neutrophils", results, _ruleset_lines(rs, lines))
    return chart


#: Charts on a log axis: platelets, whose low values (12 against 31) matter as much as high ones.
LOG_AXIS = frozenset({"platelets"})


def _chart(rs: Ruleset, analyte: str, title: str, results: list[CbcResult], lines: tuple[Line, ...]) -> str:
    unit = unit_text(rs.analytes[analyte].canonical_unit)
    points = [
        Point(c.collected_at, getattr(c, analyte), analyte_flag(c, analyte))
        for c in results
        if c.collected_at is not None and getattr(c, analyte) is not None
    ]
    band = reference_band(results, analyte)
    svg = trend_chart(f"chart-{analyte}", title, unit, points, lines, band=band, log=analyte in LOG_AXIS)
    return Markup(svg)  # charts.py escapes its text


def _analyte_answer(cbc: CbcResult, analyte: str) -> dict[str, Any]:
    interpretation = _latest_interpretation(cbc)
    answer = (interpretation.answer or {}) if interpretation is not None else {}
    found = (answer.get("analytes") or {}).get(analyte)
    return found if isinstance(found, dict) else {}


def analyte_flag(cbc: CbcResult, analyte: str) -> str | None:
    """The flag the stored interpretation gave this value (N, L, H, LL, HH), or None when it was not flagged."""
    flag = _analyte_answer(cbc, analyte).get("flag")
    return flag if flag in ("N", "L", "H", "LL", "HH") else None


def reference_band(results: list[CbcResult], analyte: str) -> Band | None:
    """The reference interval the latest interpreted CBC used for this analyte, and whose it was."""
    for cbc in reversed(results):
        found = _analyte_answer(cbc, analyte).get("reference_range")
        if isinstance(found, dict) and found.get("low") is not None and found.get("high") is not None:
            origin = "laboratory's range" if found.get("origin") == "laboratory" else "reference interval"
            return Band(float(found["low"]), float(found["high"]), origin)
    return None


def _ruleset_lines(rs: Ruleset, spec: tuple[tuple[str, str], ...]) -> tuple[Line, ...]:
    return tuple(Line(rs.value(key), label, key) for key, label in spec)


class PatientIdConverter(PathConverter):
    """A patient id in a dashboard URL: matched like `<path:>` (an id may hold `/`, which the server has
    already decoded from %2F), written as one percent-encoded segment. werkzeug's `path` converter left `/`,
    `?` and `..` as they were, so the id `../../api/v1/referrals?x=` made a worklist link that left the
    dashboard."""

    def to_url(self, value: str) -> str:
        return quote(str(value), safe="")


@bp.get("/patients/<patient_id:external_id>")
def patient_page(external_id: str) -> ResponseReturnValue:
    rs = current_ruleset()
    with current_database().session() as session:
        patient = patient_record(session, external_id)
        if patient is None:
            touched_patients([external_id], "read")  # the audit trail: a look-up of an unknown id is recorded too
            return not_found(f"patient {external_id}")
        touched_patients([patient.external_id], "read")  # the audit trail
        results = _chronological(list(patient.results))
        referrals = [_referral_view(r) for r in patient_referrals(session, patient.id)]
        latest = results[-1] if results else None
        interpretation = _latest_interpretation(latest) if latest else None
        pregnant, trimester = _pregnancy(latest.raw if latest else None)
        cutoff = hemoglobin_cutoff(rs, patient.sex, patient.age_years, pregnant, trimester)
        charts = [
            {
                "analyte": "platelets",
                "title": "Platelets",
                "svg": _chart(rs, "platelets", "Platelets", results, _ruleset_lines(rs, PLATELET_LINES)),
            },
            _neutrophil_chart(rs, results, _duffy_null(latest.raw if latest else None)),
            {
                "analyte": "hemoglobin",
                "title": "Haemoglobin",
                "note": cutoff.text,
                "sources": rs.cite(cutoff.sources),
                "svg": _chart(rs, "hemoglobin", "Haemoglobin", results, cutoff.lines),
            },
        ]
        table = [
            {
                "collected_at": c.collected_at,
                "platelets": c.platelets,
                "neutrophils": c.neutrophils,
                "hemoglobin": c.hemoglobin,
                "wbc": c.wbc,
                "flags": {a: analyte_flag(c, a) for a in ("platelets", "neutrophils", "hemoglobin", "wbc")},
                "source": c.source,
                "urgency": getattr(_latest_interpretation(c), "urgency", None),
            }
            for c in reversed(results)
        ]
        view = {
            "external_id": patient.external_id,
            "sex": patient.sex,
            "age_years": patient.age_years,
            "undated": sum(1 for c in results if c.collected_at is None),
            "latest": None
            if interpretation is None or latest is None
            else {
                "collected_at": latest.collected_at,
                "urgency": interpretation.urgency,
                "answer": interpretation.answer or {},
                "delta": interpretation.delta or {},
                "ruleset_version": interpretation.ruleset_version,
            },
        }
    open_referral = next((r for r in referrals if r["status"] in OPEN_STATUSES), None)
    units = {a: unit_text(rs.analytes[a].canonical_unit) for a in ("platelets", "neutrophils", "hemoglobin", "wbc")}
    return render_template(
        "dashboard/patient.html",
        patient=view,
        charts=charts,
        results=table,
        referrals=referrals,
        open_referral=open_referral,
        units=units,
        here=url_for("dashboard.patient_page", external_id=view["external_id"]),
    )


# --- signing in and out; CSRF -------------------------------------------------------------------


@bp.before_request
def check_csrf() -> ResponseReturnValue | None:
    """Every dashboard POST carries this session's CSRF token (labservice.middleware.csrf), or is refused with 400.

    Runs after authentication (an app-level hook runs first), so only signed-in users and the sign-in form get
    here. An upload's form is read with the upload limit, as the upload itself reads it."""
    if request.method != "POST":
        return None
    upload = request.endpoint == "dashboard.upload_batch"
    if upload:
        request.max_content_length = current_app.config["MAX_UPLOAD_BYTES"]
    try:
        sent = request.form.get(csrf.FIELD_NAME)
    except RequestEntityTooLarge:
        if not upload:
            raise
        from labservice.dashboard.batch_pages import upload_page  # it imports this module (its routes are on bp)

        limit = current_app.config["MAX_UPLOAD_BYTES"]
        return upload_page(f"The upload is larger than {limit} bytes (MAX_UPLOAD_BYTES).", status=413)
    if not csrf.is_valid(session, sent):
        return render_template("dashboard/form_refused.html"), 400
    return None


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    """The sign-in form; a success starts a new session (everything from before is dropped)."""
    target = safe_next(request.values.get("next"), url_for("dashboard.worklist_page"))
    if request.method == "GET":
        if g.get("user") is not None:
            return redirect(target, 303)
        return render_template("dashboard/sign_in.html", next=target, error=None, username="")
    username = (request.form.get("username") or "").strip()[:100]
    password = request.form.get("password") or ""
    with current_database().session() as db:
        outcome = accounts.sign_in(db, username, password, address=remote_address())
        user = outcome.user
        if user is not None:
            accounts.start_session(session, user)
            set_principal(accounts.user_principal(user))
    g.sign_in = {"username": username, "outcome": outcome.reason}  # for the audit trail; never shown
    if user is None:
        return render_template("dashboard/sign_in.html", next=target, error=SIGN_IN_FAILED, username=username), 401
    return redirect(target, 303)


@bp.post("/sign-out")
def sign_out() -> ResponseReturnValue:
    """End every session of this user (a copied cookie too) and go back to the sign-in page."""
    with current_database().session() as db:
        accounts.end_sessions(db, g.user.id)
    session.clear()
    flash("You are signed out.", "success")
    return redirect(url_for("dashboard.sign_in"), 303)
