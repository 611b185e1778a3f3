"""GET /api/v1/patients/{id}/results: a patient's stored CBCs, oldest first, for trend charts.

Each result carries its canonical values, their units, the interpretation's urgency, findings and delta
block; the patient's referrals come with it. The id is the one the client sent with its CBCs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import Flask
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from labservice.api.referrals import ReferralSchema, referral_item
from labservice.api.schemas import URGENCIES
from labservice.errors import PROBLEM_CONTENT_TYPE, Problem
from labservice.extensions import current_database, current_ruleset
from labservice.security.principal import touched_patients
from labservice.store.models import VALUE_COLUMNS, CbcResult, Interpretation, Patient
from labservice.store.repository import as_utc, patient_record, patient_referrals

if TYPE_CHECKING:
    from flask_smorest import Api

blp = Blueprint(
    "patients",
    __name__,
    url_prefix="/api/v1",
    description="A patient's stored CBCs and referrals, for trends and delta review.",
)


# --- schemas -----------------------------------------------------------------------------------------


class PatientSummarySchema(Schema):
    id = fields.String(metadata={"description": "The patient id the client sent", "example": "MRN-0042"})
    sex = fields.String(allow_none=True, metadata={"description": "female or male; null when not known"})
    age_years = fields.Float(allow_none=True, metadata={"description": "Age at the patient's latest stored CBC"})


def _per_analyte(values: fields.Field, description: str) -> fields.Dict:
    return fields.Dict(
        keys=fields.String(metadata={"enum": list(VALUE_COLUMNS)}), values=values, metadata={"description": description}
    )


class PatientResultSchema(Schema):
    """One stored CBC with its interpretation."""

    cbc_id = fields.Integer()
    collected_at = fields.DateTime(allow_none=True)
    received_at = fields.DateTime(metadata={"description": "When the service stored it"})
    source = fields.String(metadata={"description": "How it arrived: json, batch, ..."})
    values = _per_analyte(fields.Float(allow_none=True), "Analyte -> value in its canonical unit (null: not sent)")
    units = _per_analyte(fields.String(), "Analyte -> canonical unit")
    urgency = fields.String(metadata={"enum": list(URGENCIES)})
    findings = fields.List(fields.String(), metadata={"description": "Finding codes, delta findings included"})
    reason = fields.String(metadata={"description": "One line, as on the worklist"})
    delta = fields.Nested(
        "DeltaSchema",
        metadata={
            "description": "The comparison with the previous CBC within the window (platelet_drop, new_cytopenia)"
        },
    )
    interpretation_id = fields.Integer()
    ruleset_version = fields.String(metadata={"description": "The rule tables the interpretation was made with"})


class PatientResultsSchema(Schema):
    patient = fields.Nested(PatientSummarySchema)
    results = fields.List(
        fields.Nested(PatientResultSchema),
        metadata={"description": "Oldest collection first; CBCs without a collection time last"},
    )
    referrals = fields.List(fields.Nested(ReferralSchema), metadata={"description": "Newest first"})


# --- answers -----------------------------------------------------------------------------------------


def _interpretation(cbc: CbcResult, version: str) -> Interpretation | None:
    """The interpretation made with the ruleset in use, else the latest one."""
    if not cbc.interpretations:
        return None
    current = [item for item in cbc.interpretations if item.ruleset_version == version]
    return current[0] if current else max(cbc.interpretations, key=lambda item: item.id)


def _result(cbc: CbcResult, version: str, units: dict[str, str]) -> dict[str, Any]:
    interpretation = _interpretation(cbc, version)
    return {
        "cbc_id": cbc.id,
        "collected_at": as_utc(cbc.collected_at),
        "received_at": as_utc(cbc.received_at),
        "source": cbc.source,
        "values": {name: getattr(cbc, name) for name in VALUE_COLUMNS},
        "units": units,
        "urgency": interpretation.urgency if interpretation else None,
        "findings": list(interpretation.findings) if interpretation else [],
        "reason": interpretation.reason if interpretation else None,
        "delta": interpretation.delta if interpretation else None,
        "interpretation_id": interpretation.id if interpretation else None,
        "ruleset_version": interpretation.ruleset_version if interpretation else None,
    }


def _oldest_first(cbc: CbcResult) -> tuple[bool, datetime, int]:
    """Collection time ascending, CBCs without one last (the databases disagree where NULL sorts)."""
    when = as_utc(cbc.collected_at)
    return (when is None, when or datetime.min.replace(tzinfo=UTC), cbc.id)


def _record(patient: Patient, referrals: list) -> dict[str, Any]:
    rs = current_ruleset()
    units = {name: rs.analytes[name].canonical_unit for name in VALUE_COLUMNS}
    return {
        "patient": {"id": patient.external_id, "sex": patient.sex, "age_years": patient.age_years},
        "results": [_result(cbc, rs.version, units) for cbc in sorted(patient.results, key=_oldest_first)],
        "referrals": [referral_item(referral) for referral in referrals],
    }


# --- views -------------------------------------------------------------------------------------------


@blp.route("/patients/<path:patient_id>/results", methods=["GET"])
@blp.response(200, PatientResultsSchema)
@blp.doc(
    summary="A patient's results, oldest first",
    description=(
        "Every stored CBC of the patient (the id the client sent with its CBCs), oldest collection first, "
        "with canonical values and units, the urgency, the findings and the delta block of its interpretation; "
        "and the patient's referrals, newest first."
    ),
    responses={
        "404": {
            "description": "No stored CBC for this patient id.",
            "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    },
)
def get_patient_results(patient_id: str) -> dict[str, Any]:
    """A patient's stored CBCs and referrals, for trends"""
    with current_database().session() as session:
        patient = patient_record(session, patient_id)
        if patient is None:
            touched_patients([patient_id], "read")  # the audit trail: a look-up of an unknown id is recorded too
            raise Problem(404, f"No patient with id {patient_id!r}: no CBC with this patient id was stored.")
        touched_patients([patient.external_id], "read")  # the audit trail
        return _record(patient, patient_referrals(session, patient.id))


def register(api: Api, app: Flask) -> None:
    api.register_blueprint(blp)
