"""marshmallow 4 schemas: the CBC request (validated strictly) and the answer (documentation only).

Request schemas check structure and types; units, plausibility and clinical meaning are the
service's job. Unknown fields are rejected everywhere (marshmallow's default RAISE), numbers must be
JSON numbers (no strings, booleans, NaN or Infinity), booleans must be JSON booleans.

The answer schemas describe the contract's 200 body for the OpenAPI document. The view does not
dump through them: the service already returns the contract shape, and a second pass over every
answer would cost more than the interpretation itself.
"""

from __future__ import annotations

import math
from typing import Any, cast

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from labservice.core import vocabulary
from labservice.core.table import LESION_TYPES

#: Result keys of the contract, in its order (absolute counts unless named _percent).
ANALYTE_KEYS = vocabulary.ANALYTES
SEXES = ("female", "male", "unknown")
CTCAE_VERSIONS = vocabulary.CTCAE_VERSIONS
RETICULOCYTE_METHODS = ("automated", "manual")
FLAGS = ("N", "L", "H", "LL", "HH")
#: Finding codes in report order, then the delta findings (reference_ranges/findings.csv).
FINDING_CODES = vocabulary.FINDING_CODES
ASSESSMENTS = ("very_severe", "severe", "indeterminate", "not_severe", "not_applicable")
MARROW_CRITERIA = ("met", "not_met", "not_provided")
ATTRIBUTIONS = ("consistent", "may_contribute", "not_explained", "not_assessed", "none")
URGENCIES = tuple(reversed(vocabulary.URGENCY_NAMES))  # the highest first
UNIT_MAX_LENGTH = 64


# --- strict fields -------------------------------------------------------------------------------


class StrictFloat(fields.Float):
    """A JSON number only: marshmallow's Float would also take "45" (and rejects bool, NaN, inf)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if not isinstance(value, int | float):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class StrictInteger(fields.Integer):
    """A JSON integer only: no strings, no booleans, no 2.5."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if value is True or value is False or not isinstance(value, int | float):
            raise self.make_error("invalid", input=value)
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid", input=value)
        return int(value)


class StrictBoolean(fields.Boolean):
    """A JSON true/false only: marshmallow's Boolean would also take 1, "yes" and "off"."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid", input=value)


def _nullable_float(**kwargs: Any) -> StrictFloat:
    return StrictFloat(allow_none=True, load_default=None, **kwargs)


def _nullable_bool(**kwargs: Any) -> StrictBoolean:
    return StrictBoolean(allow_none=True, load_default=None, **kwargs)


# --- request -------------------------------------------------------------------------------------


class ReferenceRangeSchema(Schema):
    """The laboratory's own interval for this result, in the result's unit."""

    low = _nullable_float()
    high = _nullable_float()

    @validates_schema
    def _low_below_high(self, data: dict, **_: Any) -> None:
        low, high = data.get("low"), data.get("high")
        if low is not None and high is not None and not low < high:
            raise ValidationError("low must be below high.")


class ResultSchema(Schema):
    """One analyte result: value in the given unit, optionally with the laboratory's range."""

    value = StrictFloat(required=True)
    unit = fields.String(required=True, validate=validate.Length(min=1, max=UNIT_MAX_LENGTH),
                         metadata={"description": "UCUM or common unit, e.g. 10*9/L, 10*3/uL, g/L"})
    reference_range = fields.Nested(ReferenceRangeSchema, allow_none=True, load_default=None)


_RESULT_SCHEMA = ResultSchema()


def _fast_result(value: dict) -> dict | None:
    """The common `{"value": n, "unit": "u"}` without a schema pass (a third of a CBC's load time).

    Returns exactly what ResultSchema would, or None to let ResultSchema decide (and explain).
    """
    if len(value) != 2:
        return None
    raw, unit = value.get("value"), value.get("unit")
    # type() rather than isinstance(): bool is an int subclass and must go to the schema.
    if (type(raw) not in (int, float) or type(unit) is not str
            or not 0 < len(unit) <= UNIT_MAX_LENGTH):
        return None
    if type(raw) is int and abs(raw) > 2**53:
        return None  # let Float report overflow or precision as it does
    number = float(cast(float, raw))
    if not math.isfinite(number):
        return None
    return {"value": number, "unit": unit, "reference_range": None}


class ResultField(fields.Field):
    """A result object, or a bare JSON number meaning the analyte's canonical unit."""

    default_error_messages = {  # noqa: RUF012 (marshmallow merges this class attribute)
        "invalid": "Not a valid result: give a number or an object with value and unit.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict:
        if isinstance(value, dict):
            return _fast_result(value) or _RESULT_SCHEMA.load(value)
        if value is True or value is False or not isinstance(value, int | float):
            raise self.make_error("invalid")
        try:
            number = float(value)
        except OverflowError:
            raise ValidationError("Number too large.") from None
        if not math.isfinite(number):
            raise ValidationError("Special numeric values (nan or infinity) are not permitted.")
        return {"value": number, "unit": None, "reference_range": None}

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


def _result_field(description: str) -> ResultField:
    return ResultField(metadata={
        "description": description,
        "oneOf": [{"type": "number"}, {"$ref": "#/components/schemas/Result"}],
    })


class ResultsSchema(Schema):
    """Analyte results keyed by analyte; at least one is required."""

    platelets = _result_field("Platelet count (canonical 10*9/L)")
    wbc = _result_field("White cell count (canonical 10*9/L)")
    neutrophils = _result_field("Absolute neutrophil count (canonical 10*9/L)")
    lymphocytes = _result_field("Absolute lymphocyte count (canonical 10*9/L)")
    hemoglobin = _result_field("Haemoglobin (canonical g/dL)")
    hematocrit = _result_field("Haematocrit")
    rbc = _result_field("Red cell count")
    mcv = _result_field("Mean cell volume")
    mch = _result_field("Mean cell haemoglobin")
    mchc = _result_field("Mean cell haemoglobin concentration")
    rdw = _result_field("Red cell distribution width")
    reticulocytes = _result_field("Absolute reticulocyte count")
    reticulocytes_percent = _result_field("Reticulocytes as a percentage of red cells")
    neutrophils_percent = _result_field("Neutrophils as a percentage of white cells")

    @validates_schema
    def _at_least_one(self, data: dict, **_: Any) -> None:
        if not data:
            raise ValidationError(f"Give at least one analyte result ({', '.join(ANALYTE_KEYS)}).")


class PatientSchema(Schema):
    """Patient context: sex, age (age_years, or birth_date with collected_at), pregnancy, Duffy."""

    id = fields.String(validate=[validate.Length(min=1, max=200), validate.Regexp(
        r"^[^\x00-\x1f\x7f\ud800-\udfff]*$",  # a lone surrogate (JSON "\ud800") cannot be stored as UTF-8 text
        error="A patient id cannot hold control characters (NUL, tab, line breaks) or lone surrogates.")])
    sex = fields.String(validate=validate.OneOf(SEXES))
    age_years = StrictFloat(validate=validate.Range(min=0, max=130),
                            metadata={"description": "Age in years; fractions for infants"})
    birth_date = fields.Date(metadata={"description": "Needs collected_at to give an age"})
    pregnant = _nullable_bool()
    pregnancy_trimester = StrictInteger(allow_none=True, load_default=None,
                                        validate=validate.OneOf((1, 2, 3)))
    duffy_null = _nullable_bool(metadata={"description": "Duffy-null phenotype, if known"})

    @validates_schema
    def _trimester_needs_pregnancy(self, data: dict, **_: Any) -> None:
        if data.get("pregnancy_trimester") is not None and data.get("pregnant") is False:
            raise ValidationError("A trimester was given but pregnant is false.",
                                  "pregnancy_trimester")


class SpecimenSchema(Schema):
    platelet_clumps = _nullable_bool(metadata={"description": "Clumps seen on the film"})


class LesionSchema(Schema):
    """One skin lesion: a type, or a size from which the type follows."""

    type = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(LESION_TYPES))
    size_mm = _nullable_float(validate=validate.Range(min=0, min_inclusive=False))
    blanching = _nullable_bool()
    palpable = _nullable_bool()
    site = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200))

    @validates_schema
    def _type_or_size(self, data: dict, **_: Any) -> None:
        if data.get("type") is None and data.get("size_mm") is None:
            raise ValidationError("Give the lesion's type or its size_mm.")


class SkinSchema(Schema):
    fever = _nullable_bool()
    lesions = fields.List(fields.Nested(LesionSchema), load_default=list)


class MarrowSchema(Schema):
    """Bone marrow biopsy, when one has been done (aplastic anaemia marrow criterion)."""

    cellularity_percent = _nullable_float(validate=validate.Range(min=0, max=100))
    residual_hematopoietic_percent = _nullable_float(validate=validate.Range(min=0, max=100))


class OptionsSchema(Schema):
    ctcae_version = fields.String(validate=validate.OneOf(CTCAE_VERSIONS))


class CBCSchema(Schema):
    """One complete blood count with its context. Only `results` is required."""

    patient = fields.Nested(PatientSchema)
    collected_at = fields.AwareDateTime(
        metadata={"description": "ISO 8601 with a UTC offset, e.g. 2026-11-20T08:30:00Z. Not more than "
                                 "CLOCK_SKEW_SECONDS (5 minutes by default) ahead of the service's clock (422)"})
    results = fields.Nested(ResultsSchema, required=True)
    reticulocyte_method = fields.String(validate=validate.OneOf(RETICULOCYTE_METHODS))
    specimen = fields.Nested(SpecimenSchema)
    skin = fields.Nested(SkinSchema)
    marrow = fields.Nested(MarrowSchema)
    options = fields.Nested(OptionsSchema)

    @validates_schema
    def _birth_date_needs_collection_time(self, data: dict, **_: Any) -> None:
        birth_date = (data.get("patient") or {}).get("birth_date")
        if birth_date is None:
            return
        collected_at = data.get("collected_at")
        if collected_at is None:
            raise ValidationError("patient.birth_date needs collected_at to give an age.",
                                  "collected_at")
        if birth_date > collected_at.date():
            message = "birth_date is after collected_at."
            raise ValidationError({"patient": {"birth_date": [message]}})


# --- answer (documentation) ----------------------------------------------------------------------


TRISTATE_CRITERIA = ("met", "not_met", "not_assessed")
RANGE_ORIGINS = ("laboratory", "laboratory_partial", "fallback", "duffy_null")
URGENCY_REASONS = vocabulary.URGENCY_REASONS


class AnswerRangeSchema(Schema):
    low = fields.Float(allow_none=True)
    high = fields.Float(allow_none=True)
    source = fields.String(metadata={"description": "Where the interval comes from, in words"})
    origin = fields.String(validate=validate.OneOf(RANGE_ORIGINS),
                           metadata={"description": "laboratory (sent with the result), laboratory_partial "
                                                    "(one bound sent), fallback table, or duffy_null table"})


class ReportedSchema(Schema):
    value = fields.Float(metadata={"description": "The value as sent"})
    unit = fields.String(allow_none=True, metadata={"description": "The unit as sent (null: canonical)"})


class AnalyteAnswerSchema(Schema):
    value = fields.Float(metadata={"description": "Value in the canonical unit"})
    unit = fields.String(metadata={"description": "Canonical unit"})
    reference_range = fields.Nested(AnswerRangeSchema, allow_none=True,
                                    metadata={"description": "null: no range for this analyte, age and sex"})
    flag = fields.String(validate=validate.OneOf(FLAGS), allow_none=True,
                         metadata={"description": "null: not assessed (no range in use)"})
    ctcae_grade = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=4))
    derived = fields.Boolean(metadata={"description": "Computed from other results (e.g. WBC x neutrophil %)"})
    critical = fields.Boolean(metadata={"description": "A critical value (flag LL or HH)"})
    reported = fields.Nested(ReportedSchema, metadata={"description": "The value and unit as sent"})


class FindingSchema(Schema):
    code = fields.String(validate=validate.OneOf(FINDING_CODES),
                         metadata={"description": "Each code appears at most once per CBC"})
    title = fields.String()
    detail = fields.String()
    grade = fields.Integer(allow_none=True, metadata={"description": "CTCAE grade where one applies"})
    severity = fields.String(allow_none=True,
                             metadata={"description": "Band label: bleeding risk for thrombocytopenia, "
                                                      "mild/moderate/severe/profound for neutropenia, WHO "
                                                      "severity for anaemia in non-pregnant people from 15 y"})
    evidence = fields.Dict(keys=fields.String(), values=fields.Raw(),
                           metadata={"description": "The values the finding rests on"})
    rule = fields.String(metadata={"description": "The rule that fired, as file:key in reference_ranges/"})
    sources = fields.List(fields.String(), metadata={"description": "Full citations of the rule's sources"})


class NotAssessedSchema(Schema):
    code = fields.String(metadata={"description": "The finding that could not be decided"})
    reason = fields.String()
    needs = fields.List(fields.String(), metadata={"description": "Analytes that would decide it"})


class AplasticAnemiaSchema(Schema):
    assessment = fields.String(validate=validate.OneOf(ASSESSMENTS))
    criteria_met = fields.List(fields.String(validate=validate.OneOf(("neutrophils", "platelets", "reticulocytes"))),
                               metadata={"description": "Camitta blood criteria (a) neutrophils, (b) platelets, "
                                                        "(c) reticulocytes"})
    criteria = fields.Dict(keys=fields.String(), values=fields.String(validate=validate.OneOf(TRISTATE_CRITERIA)))
    reticulocyte_threshold = fields.Float()
    reticulocyte_method = fields.String(validate=validate.OneOf(("automated", "manual", "unknown")))
    marrow_criterion = fields.String(validate=validate.OneOf(MARROW_CRITERIA))
    text = fields.String()
    caveat = fields.String(metadata={"description": "Always present: counts alone cannot diagnose or grade it"})
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
    expected_presentation = fields.String(allow_none=True,
                                          metadata={"description": "What the platelet count predicts on the skin"})
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
    not_assessed = fields.List(fields.Nested(NotAssessedSchema),
                               metadata={"description": "Findings that could not be decided, never read as normal"})
    aplastic_anemia = fields.Nested(AplasticAnemiaSchema)
    skin = fields.Nested(SkinAnswerSchema)
    urgency = fields.String(validate=validate.OneOf(URGENCIES))
    urgency_reasons = fields.List(fields.String(validate=validate.OneOf(URGENCY_REASONS)),
                                  metadata={"description": "The triggers that set the urgency"})
    summary = fields.String()
    delta = fields.Nested("DeltaSchema", metadata={
        "description": "Only when the CBC was stored and the caller has the `read` scope: the comparison with the "
                       "patient's previous CBC"})
    stored = fields.Nested("StoredSchema", metadata={
        "description": "Only when the CBC was stored (it has a patient id and store was not false)"})


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

    kept = fields.Boolean(metadata={"description": "Only without the `read` scope, and then the only field: the "
                                                   "result is held (stored now, or already)"})
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
        keys=fields.String(), values=fields.List(fields.String()),
        metadata={"description": "Field path (e.g. results.platelets.unit, or 3.results.platelets."
                                 "unit for the CBC at index 3 of an array) -> messages",
                  "example": {"results.platelets.unit": ["Unknown unit 'mg' for platelets."]}},
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


#: Built once at import: schema construction is far slower than loading with a built schema.
CBC_SCHEMA = CBCSchema()
CBC_LIST_SCHEMA = CBCSchema(many=True)
