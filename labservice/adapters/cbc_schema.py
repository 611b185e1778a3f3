"""marshmallow 4 schemas of the CBC request, validated strictly: what every input path (the JSON and FHIR
endpoints, HL7 v2 over HTTP and MLLP, CDS Hooks, the seeding benchmark) checks a CBC document with before
`labservice.adapters.json_cbc` turns it into the engine's table.

Request schemas check structure and types; units, plausibility and clinical meaning are the
service's job. Unknown fields are rejected everywhere (marshmallow's default RAISE), numbers must be
JSON numbers (no strings, booleans, NaN or Infinity), booleans must be JSON booleans.
"""

from __future__ import annotations

import math
from typing import Any, cast

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from labservice.core import vocabulary
from labservice.core.table import LESION_TYPES, SCHISTOCYTE_GRADES

#: Result keys of the contract, in its order (absolute counts unless named _percent).
ANALYTE_KEYS = vocabulary.ANALYTES
SEXES = ("female", "male", "unknown")
CTCAE_VERSIONS = vocabulary.CTCAE_VERSIONS
RETICULOCYTE_METHODS = ("automated", "manual")
UNIT_MAX_LENGTH = 64


# --- strict fields -------------------------------------------------------------------------------


class StrictFloat(fields.Float):
    """A JSON number only: marshmallow's Float would also take "45" (and rejects bool, NaN, inf)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if not isinstance(value, int | float):
            raise self.make_error("invalid", input=value)
        if isinstance(value, int):
            try:
                float(value)
            except OverflowError:  # an integer beyond any float (clinical-rules §1 v2: a 422 naming the field)
                raise ValidationError("Number too large.") from None
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
    """The laboratory's own interval for this result, in the result's unit. *v2*: a range that is not
    plausible (low not below high, a bound outside plausibility, no overlap with the fallback range) is
    set aside by the engine with a note, never a 422 (clinical-rules §2)."""

    low = _nullable_float()
    high = _nullable_float()


class ResultSchema(Schema):
    """One analyte result: value in the given unit, optionally with the laboratory's range."""

    value = StrictFloat(required=True)
    unit = fields.String(
        required=True,
        validate=validate.Length(min=1, max=UNIT_MAX_LENGTH),
        metadata={"description": "UCUM or common unit, e.g. 10*9/L, 10*3/uL, g/L"},
    )
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
    if type(raw) not in (int, float) or type(unit) is not str or not 0 < len(unit) <= UNIT_MAX_LENGTH:
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
    return ResultField(
        metadata={
            "description": description,
            "oneOf": [{"type": "number"}, {"$ref": "#/components/schemas/Result"}],
        }
    )


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
    rdw_sd = _result_field(
        "Red cell distribution width as a standard deviation, RDW-SD (canonical fL; clinical-rules §1 v2)"
    )
    lymphocytes_percent = _result_field("Lymphocytes as a percentage of white cells (clinical-rules §1 v2)")
    blasts_percent = _result_field("Blasts per 100 leukocytes (%)")
    promyelocytes_percent = _result_field("Promyelocytes per 100 leukocytes (%)")
    myelocytes_percent = _result_field("Myelocytes per 100 leukocytes (%)")
    metamyelocytes_percent = _result_field("Metamyelocytes per 100 leukocytes (%)")
    bands_percent = _result_field("Band neutrophils per 100 leukocytes (%)")
    nrbc_per_100_wbc = _result_field("Nucleated red cells per 100 leukocytes")

    @validates_schema
    def _at_least_one(self, data: dict, **_: Any) -> None:
        if not data:
            raise ValidationError(f"Give at least one analyte result ({', '.join(ANALYTE_KEYS)}).")


class PatientSchema(Schema):
    """Patient context: sex, age (age_years, or birth_date with collected_at), pregnancy, Duffy."""

    id = fields.String(
        validate=[
            validate.Length(min=1, max=200),
            validate.Regexp(
                r"^[^\x00-\x1f\x7f\ud800-\udfff]*$",  # a lone surrogate (JSON "\ud800") cannot be stored as UTF-8 text
                error="A patient id cannot hold control characters (NUL, tab, line breaks) or lone surrogates.",
            ),
        ]
    )
    sex = fields.String(validate=validate.OneOf(SEXES))
    age_years = StrictFloat(
        validate=validate.Range(min=0, max=130), metadata={"description": "Age in years; fractions for infants"}
    )
    birth_date = fields.Date(metadata={"description": "Needs collected_at to give an age"})
    pregnant = _nullable_bool()
    pregnancy_trimester = StrictInteger(allow_none=True, load_default=None, validate=validate.OneOf((1, 2, 3)))
    duffy_null = _nullable_bool(metadata={"description": "Duffy-null phenotype, if known"})

    @validates_schema
    def _trimester_needs_pregnancy(self, data: dict, **_: Any) -> None:
        if data.get("pregnancy_trimester") is not None and data.get("pregnant") is False:
            raise ValidationError("A trimester was given but pregnant is false.", "pregnancy_trimester")

    @validates_schema
    def _pregnant_needs_female_or_unknown(self, data: dict, **_: Any) -> None:
        if data.get("pregnant") is True and data.get("sex") == "male":
            raise ValidationError("A male patient cannot be marked pregnant (clinical-rules §8).", "pregnant")


class SpecimenSchema(Schema):
    platelet_clumps = _nullable_bool(metadata={"description": "Clumps seen on the film"})


class FilmSchema(Schema):
    """The blood film (clinical-rules §10 v2): schistocytes as a percentage of red cells or graded,
    blasts seen, platelet clumps (the same as specimen.platelet_clumps) and whether the film confirms
    the platelet count."""

    schistocytes_percent = StrictFloat(
        allow_none=True,
        validate=validate.Range(min=0, max=100),
        metadata={"description": "Schistocytes per 100 red cells"},
    )
    schistocytes = fields.String(
        allow_none=True,
        validate=validate.OneOf(SCHISTOCYTE_GRADES),
        metadata={"description": "Graded: none, present (occasional, 1+, few) or many (2+ and above)"},
    )
    blasts_seen = StrictBoolean(allow_none=True)
    platelet_clumps = StrictBoolean(
        allow_none=True, metadata={"description": "Clumps seen on the film (= specimen.platelet_clumps)"}
    )
    platelet_count_confirmed = StrictBoolean(
        allow_none=True,
        metadata={
            "description": "The film shows the platelet count is true (turns off the pseudothrombocytopenia hint)"
        },
    )


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


class ContextSchema(Schema):
    """Clinical context the caller states (clinical-rules §10 v2 PLASMIC items, §11 v2; §12 v2 heparin exposure)."""

    myelosuppressive_therapy = _nullable_bool(
        metadata={
            "description": "Chemotherapy or another marrow-suppressing treatment in the last 6 weeks: "
            "aplastic-anaemia criteria are not applied and a critical low count is a possible expected nadir"
        }
    )
    heparin_started_at = fields.AwareDateTime(
        allow_none=True,
        load_default=None,
        metadata={
            "description": "When heparin was started (ISO 8601 with a UTC offset): the 4Ts fall and timing items "
            "over the patient's stored CBCs since then (clinical-rules §12)"
        },
    )
    heparin_in_previous_30_days = _nullable_bool(
        metadata={"description": "Heparin given in the 30 days before this start (4Ts timing item, §12)"}
    )
    # What the PLASMIC score reads besides the counts (clinical-rules §10 v2), as the caller states it.
    active_cancer = StrictBoolean(allow_none=True)
    transplant = StrictBoolean(allow_none=True, metadata={"description": "Solid-organ or stem-cell transplant"})
    inr = StrictFloat(allow_none=True, validate=validate.Range(min=0, min_inclusive=False, max=100))
    creatinine_mg_dl = StrictFloat(allow_none=True, validate=validate.Range(min=0, max=100))
    indirect_bilirubin_mg_dl = StrictFloat(allow_none=True, validate=validate.Range(min=0, max=100))
    haptoglobin_undetectable = StrictBoolean(allow_none=True)


class OptionsSchema(Schema):
    ctcae_version = fields.String(validate=validate.OneOf(CTCAE_VERSIONS))


class CBCSchema(Schema):
    """One complete blood count with its context. Only `results` is required."""

    patient = fields.Nested(PatientSchema)
    collected_at = fields.AwareDateTime(
        metadata={
            "description": "ISO 8601 with a UTC offset, e.g. 2026-11-20T08:30:00Z. Not more than "
            "CLOCK_SKEW_SECONDS (5 minutes by default) ahead of the service's clock (422)"
        }
    )
    results = fields.Nested(ResultsSchema, required=True)
    reticulocyte_method = fields.String(validate=validate.OneOf(RETICULOCYTE_METHODS))
    specimen = fields.Nested(SpecimenSchema)
    skin = fields.Nested(SkinSchema)
    marrow = fields.Nested(MarrowSchema)
    film = fields.Nested(FilmSchema)
    context = fields.Nested(ContextSchema)
    options = fields.Nested(OptionsSchema)

    @validates_schema
    def _birth_date_needs_collection_time(self, data: dict, **_: Any) -> None:
        birth_date = (data.get("patient") or {}).get("birth_date")
        if birth_date is None:
            return
        collected_at = data.get("collected_at")
        if collected_at is None:
            raise ValidationError("patient.birth_date needs collected_at to give an age.", "collected_at")
        if birth_date > collected_at.date():
            message = "birth_date is after collected_at."
            raise ValidationError({"patient": {"birth_date": [message]}})


#: Built once at import: schema construction is far slower than loading with a built schema.
CBC_SCHEMA = CBCSchema()
CBC_LIST_SCHEMA = CBCSchema(many=True)


#: The top-level key under which the FHIR and HL7 v2 readers hand on the laboratory's critical flags
#: (analyte -> LL, HH or AA; clinical-rules §3 v2). It is not part of the JSON contract (a result there
#: is value, unit and reference_range), so CBC_SCHEMA refuses it from a JSON or CSV client; documents a
#: reader built are validated with `load_read_documents`, which sets it aside and puts it back.
LABORATORY_FLAGS = "laboratory_flags"
LABORATORY_FLAG_CODES = ("LL", "HH", "AA")


def load_read_documents(docs: list[dict]) -> list[dict]:
    """Validate CBC documents a FHIR or HL7 v2 reader built (CBC_LIST_SCHEMA), keeping their laboratory flags."""
    flags = [doc.get(LABORATORY_FLAGS) for doc in docs]
    loaded = CBC_LIST_SCHEMA.load([{k: v for k, v in doc.items() if k != LABORATORY_FLAGS} for doc in docs])
    for doc, sent in zip(loaded, flags, strict=True):
        if sent:
            doc[LABORATORY_FLAGS] = {
                analyte: code
                for analyte, code in sent.items()
                if code in LABORATORY_FLAG_CODES and analyte in doc["results"]
            }
    return loaded
