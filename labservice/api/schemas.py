"""marshmallow 4 schemas of the HTTP contract: the CBC request and the answer (documentation only).

The request schemas live with the input adapters (`labservice.adapters.cbc_schema`: every input path
validates with them); they are named here too, as the contract the OpenAPI document shows.

The answer schemas describe the contract's 200 body for the OpenAPI document. The view does not
dump through them: the service already returns the contract shape, and a second pass over every
answer would cost more than the interpretation itself.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from labservice.adapters.cbc_schema import CBC_LIST_SCHEMA as CBC_LIST_SCHEMA
from labservice.adapters.cbc_schema import CBC_SCHEMA as CBC_SCHEMA
from labservice.adapters.cbc_schema import CBCSchema as CBCSchema
from labservice.adapters.cbc_schema import ResultSchema as ResultSchema
from labservice.core import vocabulary
from labservice.core.table import SCHISTOCYTE_GRADES

FLAGS = ("N", "L", "H", "LL", "HH")
#: Finding codes in report order, then the delta findings (reference_ranges/findings.csv).
FINDING_CODES = vocabulary.FINDING_CODES
ASSESSMENTS = ("very_severe", "severe", "indeterminate", "not_severe", "not_applicable")
MARROW_CRITERIA = ("met", "not_met", "not_provided")
ATTRIBUTIONS = ("consistent", "may_contribute", "not_explained", "not_assessed", "none")
URGENCIES = vocabulary.URGENCIES  # the highest first


# --- answer (documentation) ----------------------------------------------------------------------


TRISTATE_CRITERIA = ("met", "not_met", "not_assessed")
RANGE_ORIGINS = ("laboratory", "laboratory_partial", "fallback", "duffy_null", "none")
URGENCY_REASONS = vocabulary.URGENCY_REASONS


class AnswerRangeSchema(Schema):
    low = fields.Float(allow_none=True)
    high = fields.Float(allow_none=True)
    source = fields.String(metadata={"description": "Where the interval comes from, in words"})
    origin = fields.String(
        validate=validate.OneOf(RANGE_ORIGINS),
        metadata={
            "description": "laboratory (sent with the result), laboratory_partial "
            "(one bound sent), fallback table, or duffy_null table; none: a laboratory range was set aside "
            "and no fallback row applies (clinical-rules §2 v2)"
        },
    )
    note = fields.String(
        metadata={
            "description": "Present when the laboratory's range was set aside as implausible (low not below high, "
            "a bound outside plausibility, no overlap with the fallback range): what was sent and why "
            "(clinical-rules §2 v2)"
        }
    )


class ReportedSchema(Schema):
    value = fields.Float(metadata={"description": "The value as sent"})
    unit = fields.String(allow_none=True, metadata={"description": "The unit as sent (null: canonical)"})


class AnalyteAnswerSchema(Schema):
    value = fields.Float(metadata={"description": "Value in the canonical unit"})
    unit = fields.String(metadata={"description": "Canonical unit"})
    reference_range = fields.Nested(
        AnswerRangeSchema, allow_none=True, metadata={"description": "null: no range for this analyte, age and sex"}
    )
    flag = fields.String(
        validate=validate.OneOf(FLAGS),
        allow_none=True,
        metadata={"description": "null: not assessed (no range in use)"},
    )
    ctcae_grade = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=4))
    derived = fields.Boolean(metadata={"description": "Computed from other results (e.g. WBC x neutrophil %)"})
    critical = fields.Boolean(metadata={"description": "A critical value (flag LL or HH)"})
    flag_origin = fields.String(
        validate=validate.OneOf(("laboratory",)),
        metadata={
            "description": "laboratory: the flag is the laboratory's critical flag (FHIR interpretation or HL7 v2 "
            "OBX-8 LL/HH/AA), honoured (clinical-rules §3 v2); absent when the service set the flag"
        },
    )
    flag_note = fields.String(
        metadata={
            "description": "Why a value with no reference range is flagged: below any lower limit (clinical-rules "
            "§2 v2)"
        }
    )
    imprecise = fields.Boolean(
        metadata={
            "description": "Derived neutrophils or lymphocytes only: true when derived from a WBC below 1.0, an "
            "automated differential of very few cells (clinical-rules §1 v2)"
        }
    )
    note = fields.String(
        metadata={
            "description": "Derived neutrophils or lymphocytes only: derived, not measured, and whether imprecise"
        }
    )
    reported = fields.Nested(ReportedSchema, metadata={"description": "The value and unit as sent"})


class FindingSchema(Schema):
    code = fields.String(
        validate=validate.OneOf(FINDING_CODES), metadata={"description": "Each code appears at most once per CBC"}
    )
    title = fields.String()
    detail = fields.String()
    grade = fields.Integer(allow_none=True, metadata={"description": "CTCAE grade where one applies"})
    severity = fields.String(
        allow_none=True,
        metadata={
            "description": "Band label: bleeding risk for thrombocytopenia, "
            "mild/moderate/severe/profound for neutropenia, WHO 2011 "
            "severity for anaemia in every group with a WHO cut-off (clinical-rules §4 v2), "
            "raised_hematocrit/absolute_erythrocytosis for erythrocytosis"
        },
    )
    evidence = fields.Dict(
        keys=fields.String(), values=fields.Raw(), metadata={"description": "The values the finding rests on"}
    )
    rule = fields.String(metadata={"description": "The rule that fired, as file:key in reference_ranges/"})
    sources = fields.List(fields.String(), metadata={"description": "Full citations of the rule's sources"})


class NotAssessedSchema(Schema):
    code = fields.String(metadata={"description": "The finding that could not be decided"})
    reason = fields.String()
    needs = fields.List(fields.String(), metadata={"description": "Analytes that would decide it"})


class AplasticAnemiaSchema(Schema):
    assessment = fields.String(validate=validate.OneOf(ASSESSMENTS))
    criteria_met = fields.List(
        fields.String(validate=validate.OneOf(("neutrophils", "platelets", "reticulocytes"))),
        metadata={"description": "Camitta blood criteria (a) neutrophils, (b) platelets, (c) reticulocytes"},
    )
    criteria = fields.Dict(keys=fields.String(), values=fields.String(validate=validate.OneOf(TRISTATE_CRITERIA)))
    reticulocyte_threshold = fields.Float(allow_none=True)
    reticulocyte_method = fields.String(allow_none=True, validate=validate.OneOf(("automated", "manual", "unknown")))
    marrow_criterion = fields.String(validate=validate.OneOf(MARROW_CRITERIA))
    text = fields.String()
    caveat = fields.String(
        allow_none=True,
        metadata={
            "description": "Counts alone cannot diagnose or grade it; null when the assessment is not applicable "
            "for a reason of not_applicable_reasons (clinical-rules §6 v2)"
        },
    )
    not_applicable_reasons = fields.List(
        fields.String(),
        metadata={
            "description": "Why the counts cannot be read as marrow aplasia (clinical-rules §6 v2): "
            "wbc_above_range, myelosuppressive_therapy, blasts_reported (§10); empty otherwise"
        },
    )
    sources = fields.List(fields.String())


class FilmAnswerSchema(Schema):
    """What the blood film said (clinical-rules §10), described only."""

    schistocytes = fields.String(validate=validate.OneOf(SCHISTOCYTE_GRADES))
    schistocytes_percent = fields.Float()
    blasts_seen = fields.Boolean()
    platelet_count_confirmed = fields.Boolean()
    text = fields.String()


class PlasmicItemSchema(Schema):
    item = fields.String()
    needs = fields.List(fields.String())


class PlasmicSchema(Schema):
    """The PLASMIC score [S26] when the thrombotic-microangiopathy pattern is present: each item's point, the
    items not assessed (never counted as 0 or 1), and the risk band only when every item is known."""

    items = fields.Dict(keys=fields.String(), values=fields.String(validate=validate.OneOf(TRISTATE_CRITERIA)))
    points = fields.Integer()
    points_possible = fields.Integer()
    not_assessed = fields.List(fields.Nested(PlasmicItemSchema))
    risk = fields.String(allow_none=True, validate=validate.OneOf(("low", "intermediate", "high")))
    text = fields.String()
    sources = fields.List(fields.String())


class LesionAnswerSchema(Schema):
    type = fields.String(allow_none=True)
    hemorrhagic = fields.Boolean(allow_none=True, metadata={"description": "Non-blanching"})
    type_from_size = fields.Boolean(metadata={"description": "Type derived from size_mm"})
    size_mm = fields.Float(allow_none=True)
    site = fields.String(allow_none=True)


class SkinAnswerSchema(Schema):
    lesions = fields.List(fields.Nested(LesionAnswerSchema))
    attribution = fields.String(validate=validate.OneOf(ATTRIBUTIONS))
    attribution_text = fields.String()
    escalate = fields.Boolean(metadata={"description": "Non-blanching lesions with platelets below 10"})
    expected_presentation = fields.String(
        allow_none=True, metadata={"description": "What the platelet count predicts on the skin"}
    )
    expected_band = fields.String(allow_none=True)
    sources = fields.List(fields.String())


class InterpretationSchema(Schema):
    """The answer for one CBC. It describes counts; it never makes a diagnosis."""

    id = fields.String()
    ruleset_version = fields.String(metadata={"description": "Hash of the rule tables that produced the answer"})
    ctcae_version = fields.String()
    patient_id = fields.String(allow_none=True)
    analytes = fields.Dict(keys=fields.String(), values=fields.Nested(AnalyteAnswerSchema))
    findings = fields.List(fields.Nested(FindingSchema))
    not_assessed = fields.List(
        fields.Nested(NotAssessedSchema),
        metadata={"description": "Findings that could not be decided, never read as normal"},
    )
    aplastic_anemia = fields.Nested(AplasticAnemiaSchema)
    skin = fields.Nested(SkinAnswerSchema)
    film = fields.Nested(FilmAnswerSchema, metadata={"description": "Only when a blood film was sent"})
    plasmic = fields.Nested(
        PlasmicSchema, metadata={"description": "Only when the thrombotic-microangiopathy pattern is present"}
    )
    urgency = fields.String(validate=validate.OneOf(URGENCIES))
    urgency_reasons = fields.Dict(
        keys=fields.String(validate=validate.OneOf(URGENCY_REASONS)),
        values=fields.String(),
        metadata={
            "description": "Every trigger that fired, each with the action it asks for "
            "(e.g. new_critical_value: notify the treating clinician now), in report order"
        },
    )
    summary = fields.String()
    delta = fields.Nested(
        "DeltaSchema",
        metadata={
            "description": "Only when the CBC was stored and the caller has the `read` scope: the comparison with the "
            "patient's previous CBC"
        },
    )
    stored = fields.Nested(
        "StoredSchema",
        metadata={"description": "Only when the CBC was stored (it has a patient id and store was not false)"},
    )
    hit_4ts = fields.Nested(
        "Hit4TsSchema",
        metadata={
            "description": "Only when context.heparin_started_at was given: the 4Ts items the counts and dates can "
            "score over the patient's stored CBCs since heparin started (clinical-rules §12), and those not assessed"
        },
    )


class Hit4TsItemSchema(Schema):
    points = fields.Integer(allow_none=True, metadata={"description": "0, 1 or 2; null: not assessed"})
    reason = fields.String(metadata={"description": "Why the item is not assessed (or why it scores as it does)"})
    baseline = fields.Float(metadata={"description": "Fall item: the highest count from the day heparin started"})
    baseline_collected_at = fields.String()
    platelets = fields.Float()
    fall_percent = fields.Float()
    nadir = fields.Float(metadata={"description": "Fall item: the lowest count since heparin started"})
    onset_collected_at = fields.String(allow_none=True)
    onset_day = fields.Integer(
        allow_none=True, metadata={"description": "Timing item: calendar days after the day heparin started"}
    )


class Hit4TsSchema(Schema):
    """The heparin-induced thrombocytopenia 4Ts items (clinical-rules §12 v2)."""

    heparin_started_at = fields.String(allow_none=True)
    heparin_in_previous_30_days = fields.Boolean(allow_none=True)
    assessed = fields.Boolean(metadata={"description": "False when the CBC was not stored with a patient id"})
    reason = fields.String()
    items = fields.Dict(
        keys=fields.String(validate=validate.OneOf(("fall", "timing", "thrombosis", "other_causes"))),
        values=fields.Nested(Hit4TsItemSchema),
    )
    points = fields.Integer(metadata={"description": "The points of the items assessed"})
    not_assessed = fields.List(fields.String())
    pattern = fields.Boolean(metadata={"description": "Fall and timing score 2 + 2"})
    sources = fields.List(fields.String())


class DeltaPreviousSchema(Schema):
    collected_at = fields.String()
    urgency = fields.String(allow_none=True)
    platelets = fields.Float(allow_none=True)


class DeltaSchema(Schema):
    """Delta checks against the patient's previous CBC within the window (platelet_drop, new_cytopenia)."""

    assessed = fields.Boolean(metadata={"description": "False when there is no previous CBC in the window"})
    window_days = fields.Integer()
    reason = fields.String(metadata={"description": "Why the delta was not assessed"})
    previous = fields.Nested(DeltaPreviousSchema)
    platelet_fall_percent = fields.Float(allow_none=True)
    platelet_drop = fields.Boolean()
    new_cytopenias = fields.List(fields.String())
    urgency_change = fields.String(allow_none=True, validate=validate.OneOf(("escalated", "unchanged", "de-escalated")))
    sources = fields.List(fields.String())


class StoredSchema(Schema):
    """Where the CBC was kept. To a key without the `read` scope only `kept`: the other fields (and the delta
    block) would tell it about results other callers stored."""

    kept = fields.Boolean(
        metadata={
            "description": "Only without the `read` scope, and then the only field: the "
            "result is held (stored now, or already)"
        }
    )
    cbc_id = fields.Integer()
    interpretation_id = fields.Integer()
    duplicate = fields.Boolean(metadata={"description": "True when this exact result was already stored"})
    referral_id = fields.Integer(allow_none=True)


class ProblemSchema(Schema):
    """RFC 9457 problem details (media type application/problem+json)."""

    type = fields.String(metadata={"example": "about:blank"})
    title = fields.String(metadata={"example": "Unprocessable Content"})
    status = fields.Integer(metadata={"example": 422})
    detail = fields.String()
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={
            "description": "Field path (e.g. results.platelets.unit, or 3.results.platelets."
            "unit for the CBC at index 3 of an array) -> messages",
            "example": {"results.platelets.unit": ["Unknown unit 'mg' for platelets."]},
        },
    )


class RulesetSchema(Schema):
    """The rule tables in use (reference_ranges/), each row with its source."""

    version = fields.String(metadata={"description": "Hash of the tables; every answer carries it"})
    thresholds = fields.List(fields.Dict())
    ctcae = fields.List(fields.Dict())
    bands = fields.Dict(keys=fields.String(), values=fields.List(fields.Dict()))
    anemia_cutoffs = fields.List(fields.Dict())
    reference_ranges = fields.List(fields.Dict())
    analytes = fields.List(fields.Dict())
    sources = fields.Dict(keys=fields.String(), values=fields.String())


class HealthSchema(Schema):
    status = fields.String(metadata={"example": "ok"})
    ruleset_version = fields.String()
