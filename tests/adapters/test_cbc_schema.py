"""The CBC request schema: strict JSON types and the normalised shape handed to the service."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError

from labservice.adapters.cbc_schema import _RESULT_SCHEMA, CBC_SCHEMA, _fast_result


def test_bare_number_becomes_a_result_without_unit():
    doc = CBC_SCHEMA.load({"results": {"platelets": 45}})
    assert doc["results"] == {"platelets": {"value": 45.0, "unit": None, "reference_range": None}}


def test_result_object_is_normalised():
    doc = CBC_SCHEMA.load(
        {
            "results": {
                "platelets": {"value": 45, "unit": "10*3/uL"},
                "wbc": {"value": 2.1, "unit": "10*9/L", "reference_range": {"low": 4, "high": 11}},
                "neutrophils": {"value": 0.4, "unit": "10*9/L", "reference_range": {"low": 2}},
            }
        }
    )
    assert doc["results"]["platelets"] == {"value": 45.0, "unit": "10*3/uL", "reference_range": None}
    assert doc["results"]["wbc"]["reference_range"] == {"low": 4.0, "high": 11.0}
    assert doc["results"]["neutrophils"]["reference_range"] == {"low": 2.0, "high": None}
    assert all(type(result["value"]) is float for result in doc["results"].values())


def test_context_is_loaded_to_python_types(example_cbc):
    example_cbc["patient"]["birth_date"] = "1992-03-01"
    doc = CBC_SCHEMA.load(example_cbc)
    assert doc["collected_at"] == dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC)
    assert doc["patient"]["birth_date"] == dt.date(1992, 3, 1)
    assert doc["patient"]["age_years"] == 34.0
    assert doc["skin"]["lesions"][0]["type"] == "petechiae"
    assert doc["marrow"] == {"cellularity_percent": 15.0, "residual_hematopoietic_percent": None}


def test_trimester_with_pregnant_false_is_refused():
    with pytest.raises(ValidationError) as caught:
        CBC_SCHEMA.load({"patient": {"pregnant": False, "pregnancy_trimester": 2}, "results": {"platelets": 120}})
    assert "pregnancy_trimester" in caught.value.messages["patient"]


def test_birth_date_after_collection_is_refused():
    with pytest.raises(ValidationError) as caught:
        CBC_SCHEMA.load(
            {
                "patient": {"birth_date": "2030-01-01"},
                "collected_at": "2026-11-20T08:30:00Z",
                "results": {"platelets": 120},
            }
        )
    assert "birth_date" in caught.value.messages["patient"]


@pytest.mark.parametrize("age", [-1, 131])
def test_age_outside_0_to_130_is_refused(age):
    with pytest.raises(ValidationError):
        CBC_SCHEMA.load({"patient": {"age_years": age}, "results": {"platelets": 120}})


@pytest.mark.parametrize("value", [10**400, -(10**400)])
def test_huge_integers_are_refused_not_crashed(value):
    with pytest.raises(ValidationError):
        CBC_SCHEMA.load({"results": {"platelets": value}})
    with pytest.raises(ValidationError):
        CBC_SCHEMA.load({"results": {"platelets": {"value": value, "unit": "10*9/L"}}})


_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**52, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=70),
)


@given(
    st.fixed_dictionaries(
        {"value": _json_scalars, "unit": _json_scalars},
        optional={"reference_range": st.none(), "other": st.integers()},
    )
)
def test_fast_result_path_agrees_with_the_schema(value):
    """The shortcut for {"value", "unit"} accepts only what ResultSchema accepts, identically."""
    fast = _fast_result(value)
    if fast is None:
        return
    assert fast == _RESULT_SCHEMA.load(value)


def test_myelosuppressive_therapy_context_is_a_nullable_boolean():
    # clinical-rules §11 v2 / api-contract.md v2 `context` {`myelosuppressive_therapy`}
    doc = CBC_SCHEMA.load({"context": {"myelosuppressive_therapy": True}, "results": {"platelets": 120}})
    assert doc["context"]["myelosuppressive_therapy"] is True  # beside the other context fields (§12 heparin)
    assert (
        CBC_SCHEMA.load({"context": {"myelosuppressive_therapy": None}, "results": {"platelets": 120}})["context"][
            "myelosuppressive_therapy"
        ]
        is None
    )
    with pytest.raises(ValidationError) as caught:
        CBC_SCHEMA.load({"context": {"myelosuppressive_therapy": "yes"}, "results": {"platelets": 120}})
    assert "myelosuppressive_therapy" in caught.value.messages["context"]
